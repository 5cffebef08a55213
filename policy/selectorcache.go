package policy

import (
	"net/netip"
	"slices"
	"sort"
)

// cachedSelector is a selector shared by every rule that uses it, with the
// identities it currently selects.
type cachedSelector struct {
	sel       Selector
	refs      int
	universal bool
	selected  map[NumericIdentity]struct{}
	// users are the subject identities whose rules use it as a peer.
	users map[NumericIdentity]struct{}
}

// acquireLocked interns the policy's selectors (and the CIDR identities
// they need) and points its rules at the shared ones.
func (r *Repository) acquireLocked(cp *compiledPolicy) {
	for _, s := range cp.selectors {
		cs := r.selectors[s.Key()]
		if cs == nil {
			cs = r.newSelectorLocked(s)
		}
		cs.refs++
	}
	shared := func(s Selector) *cachedSelector { return r.selectors[s.Key()] }
	swap := func(rules []*rule) {
		for _, ru := range rules {
			ru.cs = make([]*cachedSelector, len(ru.peers))
			for i, s := range ru.peers {
				ru.cs[i] = shared(s)
			}
		}
	}
	if cp.subject != nil {
		cp.subjectCS = shared(cp.subject)
	}
	for d := range 2 {
		swap(cp.ordered[d])
		for _, s := range cp.specs {
			s.subjectCS = shared(s.subject)
			swap(s.allow[d])
			swap(s.deny[d])
		}
	}
	i := sort.Search(len(r.order), func(i int) bool { return !r.order[i].key.less(cp.key) })
	r.order = slices.Insert(r.order, i, cp)
}

func (r *Repository) releaseLocked(cp *compiledPolicy) {
	r.order = slices.DeleteFunc(r.order, func(p *compiledPolicy) bool { return p == cp })
	for _, s := range cp.selectors {
		cs := r.selectors[s.Key()]
		if cs == nil {
			continue
		}
		cs.refs--
		if cs.refs == 0 {
			delete(r.selectors, s.Key())
			if c, ok := s.(*cidrSelector); ok {
				r.releasePrefixLocked(c.prefix)
				for _, e := range c.except {
					r.releasePrefixLocked(e)
				}
			}
			if d, ok := s.(*dynamicSelector); ok {
				for _, p := range r.dynamicPrefixesLocked(d) {
					r.releasePrefixLocked(p)
				}
			}
		}
	}
}

func (r *Repository) newSelectorLocked(s Selector) *cachedSelector {
	cs := &cachedSelector{sel: s, selected: map[NumericIdentity]struct{}{}, users: map[NumericIdentity]struct{}{}}
	_, cs.universal = s.(allSelector)
	r.selectors[s.Key()] = cs
	// CIDR selectors need identities for their prefixes; dynamic ones for
	// the addresses they resolve to.
	switch c := s.(type) {
	case *cidrSelector:
		r.acquirePrefixLocked(c.prefix)
		for _, e := range c.except {
			r.acquirePrefixLocked(e)
		}
	case *dynamicSelector:
		for _, p := range r.dynamicPrefixesLocked(c) {
			r.acquirePrefixLocked(p)
		}
	}
	if !cs.universal {
		for id, e := range r.ids {
			if s.matches(r, e.ident) {
				cs.selected[id] = struct{}{}
			}
		}
	}
	return cs
}

// identityAddedLocked updates selectors and the map state of the subjects
// whose rules select the new identity.
func (r *Repository) identityAddedLocked(ident *Identity) {
	touched := map[NumericIdentity]struct{}{}
	for _, cs := range r.selectors {
		if cs.universal || !cs.sel.matches(r, ident) {
			continue
		}
		cs.selected[ident.ID] = struct{}{}
		for u := range cs.users {
			touched[u] = struct{}{}
		}
	}
	for u := range touched {
		if st := r.subjects[u]; st != nil {
			st.updatePeer(r, ident.ID)
		}
	}
}

func (r *Repository) identityRemovedLocked(id NumericIdentity) {
	touched := map[NumericIdentity]struct{}{}
	for _, cs := range r.selectors {
		if _, ok := cs.selected[id]; !ok {
			continue
		}
		delete(cs.selected, id)
		for u := range cs.users {
			touched[u] = struct{}{}
		}
	}
	for u := range touched {
		if st := r.subjects[u]; st != nil {
			st.updatePeer(r, id)
		}
	}
}

// dynamicPrefixesLocked returns the /32 or /128 prefixes a dynamic selector
// needs CIDR identities for: addresses that are not local endpoints.
func (r *Repository) dynamicPrefixesLocked(d *dynamicSelector) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range r.dynamicAddrsLocked(d) {
		if _, ok := r.byIP[a]; !ok {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func (r *Repository) dynamicAddrsLocked(d *dynamicSelector) []netip.Addr {
	var out []netip.Addr
	switch {
	case d.fqdn != nil:
		names := make([]string, 0, len(r.fqdn))
		for n := range r.fqdn {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if d.fqdn.Match(n) {
				out = append(out, r.fqdn[n]...)
			}
		}
	case d.service != nil:
		for _, svc := range r.services {
			if d.service.selects(svc) {
				out = append(out, svc.Backends...)
			}
		}
	}
	return out
}

// dynamicSelectsLocked reports whether a dynamic selector selects an
// identity: a CIDR identity of one of its addresses, or the identity of a
// local endpoint at one of them.
func (r *Repository) dynamicSelectsLocked(d *dynamicSelector, id *Identity) bool {
	for _, a := range r.dynamicAddrsLocked(d) {
		if epID, ok := r.byIP[a]; ok {
			if epID == id.ID {
				return true
			}
			continue
		}
		for _, p := range id.Prefixes {
			if p.Bits() == a.BitLen() && p.Addr() == a {
				return true
			}
		}
	}
	return false
}

// refreshDynamicLocked re-resolves the dynamic selectors that want.
func (r *Repository) refreshDynamicLocked(want func(*dynamicSelector) bool) {
	for _, cs := range r.selectors {
		d, ok := cs.sel.(*dynamicSelector)
		if !ok || !want(d) {
			continue
		}
		// Make sure every address has an identity, then diff selections.
		for _, p := range r.dynamicPrefixesLocked(d) {
			if _, ok := r.byPrefix[p]; !ok {
				r.acquirePrefixLocked(p)
			}
		}
		next := map[NumericIdentity]struct{}{}
		for id, e := range r.ids {
			if r.dynamicSelectsLocked(d, e.ident) {
				next[id] = struct{}{}
			}
		}
		var changed []NumericIdentity
		for id := range next {
			if _, ok := cs.selected[id]; !ok {
				changed = append(changed, id)
			}
		}
		for id := range cs.selected {
			if _, ok := next[id]; !ok {
				changed = append(changed, id)
			}
		}
		cs.selected = next
		for u := range cs.users {
			if st := r.subjects[u]; st != nil {
				for _, id := range changed {
					st.updatePeer(r, id)
				}
			}
		}
	}
}
