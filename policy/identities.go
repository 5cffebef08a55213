package policy

import (
	"net/netip"
	"sort"
)

// identityEntry is an allocated identity with the counts that keep it
// alive: it is freed when both drop to zero.
type identityEntry struct {
	ident *Identity
	// endpoints counts local endpoints with this identity; >0 makes it a
	// subject with map state.
	endpoints int
	// refs counts CIDR/FQDN/service users of a CIDR identity.
	refs int
}

// endpointIdentityLocked returns the identity of a pod's labels,
// allocating the next endpoint number if no endpoint has them yet.
func (r *Repository) endpointIdentityLocked(ls Labels) NumericIdentity {
	key := ls.Key()
	if id, ok := r.byLabels[key]; ok {
		return id
	}
	id := r.nextID
	r.nextID++
	ident := &Identity{ID: id, Labels: ls}
	r.ids[id] = &identityEntry{ident: ident}
	r.byLabels[key] = id
	r.identityAddedLocked(ident)
	return id
}

// releaseEndpointIdentityLocked frees an endpoint identity that neither a
// local endpoint nor a CIDR user holds any more.
func (r *Repository) releaseEndpointIdentityLocked(id NumericIdentity) {
	delete(r.byLabels, r.ids[id].ident.Labels.Key())
	r.identityRemovedLocked(id)
	delete(r.ids, id)
}

// acquirePrefixLocked makes sure a CIDR identity exists for the prefix.
func (r *Repository) acquirePrefixLocked(p netip.Prefix) {
	if id, ok := r.byPrefix[p]; ok {
		r.ids[id].refs++
		return
	}
	id := r.nextCIDR
	r.nextCIDR++
	ident := cidrIdentity(id, p)
	r.ids[id] = &identityEntry{ident: ident, refs: 1}
	r.byPrefix[p] = id
	r.identityAddedLocked(ident)
}

func (r *Repository) releasePrefixLocked(p netip.Prefix) {
	id, ok := r.byPrefix[p]
	if !ok {
		return
	}
	e := r.ids[id]
	e.refs--
	if e.refs > 0 {
		return
	}
	delete(r.byPrefix, p)
	r.identityRemovedLocked(id)
	delete(r.ids, id)
}

// IdentityOfIP returns the identity the datapath would give an address:
// a local endpoint's, else a node's (host or remote-node), else the
// longest matching CIDR identity, else world.
func (r *Repository) IdentityOfIP(a netip.Addr) *Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.identityOfIPLocked(a)
}

func (r *Repository) identityOfIPLocked(a netip.Addr) *Identity {
	a = a.Unmap()
	if id, ok := r.byIP[a]; ok {
		return r.ids[id].ident
	}
	if id, ok := r.byNodeIP[a]; ok {
		return r.ids[id].ident
	}
	best, bestBits := IdentityWorld, -1
	for p, id := range r.byPrefix {
		if p.Contains(a) && p.Bits() > bestBits {
			best, bestBits = id, p.Bits()
		}
	}
	return r.ids[best].ident
}

// Identity returns an identity by number, or nil.
func (r *Repository) Identity(id NumericIdentity) *Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.ids[id]; e != nil {
		return e.ident
	}
	return nil
}

// IdentityCount returns how many identities exist.
func (r *Repository) IdentityCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// Identities lists every identity, sorted by number.
func (r *Repository) Identities() []*Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Identity, 0, len(r.ids))
	for _, e := range r.ids {
		out = append(out, e.ident)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
