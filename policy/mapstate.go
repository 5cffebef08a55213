package policy

import (
	"fmt"
	"sort"
)

// MapState is the derived policy of one endpoint in one direction, in the
// shape the datapath looks it up: the peer's own entries if it has any,
// else the wildcard (any identity) entries; within an entry set, the
// protocol's port run, else the first entry, which covers every protocol
// and port. Entry sets are complete covers, so a lookup always finds one.
type MapState struct {
	Direction Direction
	// Wildcard are the entries of identities without entries of their own.
	Wildcard []Entry
	// PerIdentity are the entries of identities whose verdicts differ.
	PerIdentity map[NumericIdentity][]Entry
	// Audit turns denials into audited allows for this endpoint.
	Audit bool
}

// Lookup returns the entry for a flow to or from peer.
func (m *MapState) Lookup(peer NumericIdentity, proto uint8, port uint16) Entry {
	return lookup(m.Wildcard, m.PerIdentity, peer, proto, port)
}

// Len counts the entries.
func (m *MapState) Len() int {
	n := len(m.Wildcard)
	for _, es := range m.PerIdentity {
		n += len(es)
	}
	return n
}

// Flat lists every entry with its identity (IdentityAny for wildcard
// entries), sorted, for writers that diff against a kernel map.
func (m *MapState) Flat() []FlatEntry {
	out := make([]FlatEntry, 0, m.Len())
	for _, e := range m.Wildcard {
		out = append(out, FlatEntry{Identity: IdentityAny, Entry: e})
	}
	for id, es := range m.PerIdentity {
		for _, e := range es {
			out = append(out, FlatEntry{Identity: id, Entry: e})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		return a.Lo < b.Lo
	})
	return out
}

// FlatEntry is an entry with its peer identity.
type FlatEntry struct {
	Identity NumericIdentity
	Entry
}

func (f FlatEntry) String() string {
	id := "*"
	if f.Identity != IdentityAny {
		id = fmt.Sprint(uint32(f.Identity))
	}
	return id + " " + f.Entry.String()
}

// EndpointPolicy is a snapshot of one endpoint's derived policy.
type EndpointPolicy struct {
	Identity *Identity
	// Enforced says whether each direction is default-deny.
	Enforced [2]bool
	State    [2]*MapState
}

// EndpointPolicy returns the derived policy of a local endpoint, or nil if
// the endpoint is unknown. The snapshot does not change afterwards.
func (r *Repository) EndpointPolicy(namespace, name string) *EndpointPolicy {
	r.mu.Lock()
	defer r.mu.Unlock()
	ei := r.endpoints[namespace+"/"+name]
	if ei == nil {
		return nil
	}
	st := r.subjects[ei.id]
	ep := &EndpointPolicy{Identity: r.ids[ei.id].ident}
	audit := r.audit || ei.ep.Audit
	if ns := r.namespaces[namespace]; ns != nil && ns.audit {
		audit = true
	}
	for d, ds := range st.dirs {
		per := make(map[NumericIdentity][]Entry, len(ds.perID))
		for id, es := range ds.perID {
			per[id] = es
		}
		ep.Enforced[d] = ds.enforced || ds.mode == ModeAlways
		ep.State[d] = &MapState{Direction: Direction(d), Wildcard: ds.wildcard, PerIdentity: per, Audit: audit}
	}
	return ep
}

// SelectedBy lists the namespace-tier policies that select a local
// endpoint in direction d (what makes the direction default-deny for it),
// in the engine's order; nil for an unknown endpoint. Flow events name them
// for a default-deny drop, which has no rule of its own.
func (r *Repository) SelectedBy(namespace, name string, d Direction) []PolicyKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	ei := r.endpoints[namespace+"/"+name]
	if ei == nil || d > Egress {
		return nil
	}
	st := r.subjects[ei.id]
	if st == nil || st.dirs[d] == nil {
		return nil
	}
	return append([]PolicyKey(nil), st.dirs[d].selectedBy...)
}
