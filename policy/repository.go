package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Mode is the agent's enforcement mode.
type Mode string

// The enforcement modes, as in Cilium.
const (
	// ModeDefault enforces a direction once a policy selects the endpoint
	// in it, and allows what no tier decides.
	ModeDefault Mode = "default"
	// ModeAlways denies what no tier allows, selected or not.
	ModeAlways Mode = "always"
	// ModeNever enforces nothing.
	ModeNever Mode = "never"
)

// ParseMode parses an enforcement mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeDefault, ModeAlways, ModeNever:
		return m, nil
	case "":
		return ModeDefault, nil
	}
	return "", fmt.Errorf("unknown enforcement mode %q (want default, always or never)", s)
}

// NamedPort is a container port with a name.
type NamedPort struct {
	Name  string
	Port  uint16
	Proto uint8
}

// Endpoint is a local pod as the engine needs it.
type Endpoint struct {
	Namespace      string
	Name           string
	Labels         map[string]string
	ServiceAccount string
	IPs            []netip.Addr
	NamedPorts     []NamedPort
	// Audit turns this endpoint's denials into audited allows.
	Audit bool
}

// Key is "namespace/name".
func (e *Endpoint) Key() string { return e.Namespace + "/" + e.Name }

// Service is a Kubernetes Service as toServices needs it.
type Service struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// Backends are the addresses of its endpoints.
	Backends []netip.Addr
}

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

type identityEntry struct {
	ident *Identity
	// endpoints counts local endpoints with this identity; >0 makes it a
	// subject with map state.
	endpoints int
	// refs counts CIDR/FQDN/service users of a CIDR identity.
	refs int
}

// Repository holds everything the engine knows and the map state it
// derived. It is safe for concurrent use. Changes recompute only what they
// touch: a policy change recomputes the endpoints it selects (before and
// after); a new identity adds its own map state and one entry set to each
// endpoint whose rules select it as a peer.
type Repository struct {
	mu       sync.Mutex
	opts     Options
	mode     Mode
	audit    bool
	revision uint64

	policies map[PolicyKey]*compiledPolicy
	// order holds the policies sorted by key, for deterministic tiers.
	order      []*compiledPolicy
	namespaces map[string]*namespaceInfo
	endpoints  map[string]*endpointInfo
	services   map[string]*Service
	fqdn       map[string][]netip.Addr

	ids      map[NumericIdentity]*identityEntry
	byLabels map[string]NumericIdentity
	byPrefix map[netip.Prefix]NumericIdentity
	byIP     map[netip.Addr]NumericIdentity
	// nodes holds each node's addresses and reserved identity (host for
	// the agent's own node, remote-node for the others).
	nodes    map[string]nodeInfo
	byNodeIP map[netip.Addr]NumericIdentity
	nextID   NumericIdentity
	nextCIDR NumericIdentity

	selectors  map[string]*cachedSelector
	subjects   map[NumericIdentity]*subjectState
	namedPorts map[string]map[portRange]int
}

type nodeInfo struct {
	ips []netip.Addr
	id  NumericIdentity
}

type namespaceInfo struct {
	labels map[string]string
	audit  bool
}

type endpointInfo struct {
	ep *Endpoint
	id NumericIdentity
}

// NewRepository returns an empty repository with the reserved identities.
func NewRepository(opts Options) *Repository {
	r := &Repository{
		opts:       opts,
		mode:       ModeDefault,
		policies:   map[PolicyKey]*compiledPolicy{},
		namespaces: map[string]*namespaceInfo{},
		endpoints:  map[string]*endpointInfo{},
		services:   map[string]*Service{},
		fqdn:       map[string][]netip.Addr{},
		ids:        map[NumericIdentity]*identityEntry{},
		byLabels:   map[string]NumericIdentity{},
		byPrefix:   map[netip.Prefix]NumericIdentity{},
		byIP:       map[netip.Addr]NumericIdentity{},
		nodes:      map[string]nodeInfo{},
		byNodeIP:   map[netip.Addr]NumericIdentity{},
		nextID:     firstEndpointIdentity,
		nextCIDR:   firstCIDRIdentity,
		selectors:  map[string]*cachedSelector{},
		subjects:   map[NumericIdentity]*subjectState{},
		namedPorts: map[string]map[portRange]int{},
	}
	for id := range reservedNames {
		ident := reservedIdentity(id)
		r.ids[id] = &identityEntry{ident: ident}
		r.byLabels[ident.Labels.Key()] = id
	}
	return r
}

// Revision counts changes; it grows with every change that may alter map
// state.
func (r *Repository) Revision() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revision
}

// SetMode sets the enforcement mode and global audit, recomputing all.
func (r *Repository) SetMode(m Mode, audit bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode, r.audit = m, audit
	r.revision++
	for id := range r.subjects {
		r.recomputeSubjectLocked(id)
	}
}

// Mode returns the enforcement mode and global audit setting.
func (r *Repository) Mode() (Mode, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode, r.audit
}

// UpsertPolicy adds or replaces a TrafficPolicy, ClusterTrafficPolicy or
// AdminTrafficPolicy. On error nothing changes.
func (r *Repository) UpsertPolicy(obj any) (PolicyKey, field.ErrorList) {
	var cp *compiledPolicy
	var errs field.ErrorList
	switch p := obj.(type) {
	case *v1alpha1.TrafficPolicy:
		cp, errs = CompileTrafficPolicy(p, r.opts)
	case *v1alpha1.ClusterTrafficPolicy:
		cp, errs = CompileClusterTrafficPolicy(p, r.opts)
	case *v1alpha1.AdminTrafficPolicy:
		cp, errs = CompileAdminTrafficPolicy(p, r.opts)
	default:
		return PolicyKey{}, field.ErrorList{field.InternalError(nil, fmt.Errorf("not a policy: %T", obj))}
	}
	if len(errs) > 0 {
		return PolicyKey{}, errs
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	affected := map[NumericIdentity]struct{}{}
	if old := r.policies[cp.key]; old != nil {
		r.subjectsOfLocked(old, affected)
		r.releaseLocked(old)
	}
	r.policies[cp.key] = cp
	r.acquireLocked(cp)
	r.subjectsOfLocked(cp, affected)
	for id := range affected {
		r.recomputeSubjectLocked(id)
	}
	return cp.key, nil
}

// DeletePolicy removes a policy; unknown keys are ignored.
func (r *Repository) DeletePolicy(key PolicyKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.policies[key]
	if old == nil {
		return
	}
	r.revision++
	affected := map[NumericIdentity]struct{}{}
	r.subjectsOfLocked(old, affected)
	delete(r.policies, key)
	r.releaseLocked(old)
	for id := range affected {
		r.recomputeSubjectLocked(id)
	}
}

// subjectsOfLocked adds the endpoint identities a policy applies to.
func (r *Repository) subjectsOfLocked(cp *compiledPolicy, into map[NumericIdentity]struct{}) {
	add := func(cs *cachedSelector) {
		for id := range cs.selected {
			if r.ids[id].endpoints > 0 {
				into[id] = struct{}{}
			}
		}
	}
	if cp.subjectCS != nil {
		add(cp.subjectCS)
	}
	for _, s := range cp.specs {
		add(s.subjectCS)
	}
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

// UpsertNamespace sets a namespace's labels. The audit flag comes from the
// namespace's policy.portcullis.dev/audit-mode annotation.
func (r *Repository) UpsertNamespace(name string, labels map[string]string, audit bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	ls := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		ls[k] = v
	}
	// The apiserver labels every namespace with its name; admin policies
	// select namespaces by it, so supply it when a file does not.
	ls[namespaceNameLabel] = name
	r.namespaces[name] = &namespaceInfo{labels: ls, audit: audit}
	for _, ei := range r.endpoints {
		if ei.ep.Namespace == name {
			r.reidentifyLocked(ei)
		}
	}
}

func (r *Repository) namespaceLabelsLocked(ns string) map[string]string {
	if n := r.namespaces[ns]; n != nil {
		return n.labels
	}
	return map[string]string{namespaceNameLabel: ns}
}

// EndpointLabels returns the identity labels a pod would have.
func (r *Repository) EndpointLabels(ep *Endpoint) Labels {
	r.mu.Lock()
	defer r.mu.Unlock()
	return PodLabels(ep.Namespace, ep.Labels, r.namespaceLabelsLocked(ep.Namespace), ep.ServiceAccount)
}

// UpsertEndpoint adds or updates a local endpoint and returns its identity.
func (r *Repository) UpsertEndpoint(ep *Endpoint) NumericIdentity {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	old := r.endpoints[ep.Key()]
	ei := &endpointInfo{ep: ep}
	r.endpoints[ep.Key()] = ei
	r.replaceEndpointLocked(old, ei)
	return ei.id
}

// replaceEndpointLocked attaches ei and then drops old (nil for none). In
// this order an endpoint whose labels did not change keeps its identity
// even when it is the identity's only endpoint: dropping first would free
// the number and the attach would allocate a new one, and a datapath that
// writes a new identity's entries before its ipcache entry would drop the
// pod's traffic for a moment on every update.
func (r *Repository) replaceEndpointLocked(old, ei *endpointInfo) {
	r.attachEndpointLocked(ei)
	if old == nil {
		return
	}
	r.dropEndpointLocked(old)
	// The drop forgot the addresses old had under the same identity.
	for _, ip := range ei.ep.IPs {
		r.byIP[ip] = ei.id
	}
}

// DeleteEndpoint removes a local endpoint.
func (r *Repository) DeleteEndpoint(namespace, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ei := r.endpoints[namespace+"/"+name]
	if ei == nil {
		return
	}
	r.revision++
	r.dropEndpointLocked(ei)
	delete(r.endpoints, namespace+"/"+name)
}

func (r *Repository) reidentifyLocked(ei *endpointInfo) {
	old := *ei
	r.replaceEndpointLocked(&old, ei)
}

func (r *Repository) attachEndpointLocked(ei *endpointInfo) {
	ls := PodLabels(ei.ep.Namespace, ei.ep.Labels, r.namespaceLabelsLocked(ei.ep.Namespace), ei.ep.ServiceAccount)
	key := ls.Key()
	id, ok := r.byLabels[key]
	if !ok {
		id = r.nextID
		r.nextID++
		ident := &Identity{ID: id, Labels: ls}
		r.ids[id] = &identityEntry{ident: ident}
		r.byLabels[key] = id
		r.identityAddedLocked(ident)
	}
	ei.id = id
	e := r.ids[id]
	e.endpoints++
	for _, ip := range ei.ep.IPs {
		r.byIP[ip] = id
	}
	if r.addNamedPortsLocked(ei.ep.NamedPorts) {
		r.recomputeNamedPortUsersLocked()
	}
	if e.endpoints == 1 {
		r.recomputeSubjectLocked(id)
	}
}

func (r *Repository) dropEndpointLocked(ei *endpointInfo) {
	e := r.ids[ei.id]
	if e == nil {
		return
	}
	for _, ip := range ei.ep.IPs {
		if r.byIP[ip] == ei.id {
			delete(r.byIP, ip)
		}
	}
	if r.removeNamedPortsLocked(ei.ep.NamedPorts) {
		r.recomputeNamedPortUsersLocked()
	}
	e.endpoints--
	if e.endpoints > 0 {
		return
	}
	delete(r.subjects, ei.id)
	for _, cs := range r.selectors {
		delete(cs.users, ei.id)
	}
	if e.refs == 0 {
		delete(r.byLabels, e.ident.Labels.Key())
		r.identityRemovedLocked(ei.id)
		delete(r.ids, ei.id)
	}
}

// addNamedPortsLocked records container port names; it reports whether the
// set of (name, port) pairs changed.
func (r *Repository) addNamedPortsLocked(ports []NamedPort) bool {
	changed := false
	for _, np := range ports {
		m := r.namedPorts[np.Name]
		if m == nil {
			m = map[portRange]int{}
			r.namedPorts[np.Name] = m
		}
		pr := portRange{proto: np.Proto, lo: np.Port, hi: np.Port}
		if m[pr] == 0 {
			changed = true
		}
		m[pr]++
	}
	return changed
}

func (r *Repository) removeNamedPortsLocked(ports []NamedPort) bool {
	changed := false
	for _, np := range ports {
		m := r.namedPorts[np.Name]
		pr := portRange{proto: np.Proto, lo: np.Port, hi: np.Port}
		if m[pr] == 0 {
			continue
		}
		m[pr]--
		if m[pr] == 0 {
			delete(m, pr)
			changed = true
		}
	}
	return changed
}

func (r *Repository) recomputeNamedPortUsersLocked() {
	for id, st := range r.subjects {
		if st.namedPorts {
			r.recomputeSubjectLocked(id)
		}
	}
}

// UpsertService sets a Service's backends, for toServices.
func (r *Repository) UpsertService(svc *Service) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	r.services[svc.Namespace+"/"+svc.Name] = svc
	r.refreshDynamicLocked(func(d *dynamicSelector) bool { return d.service != nil })
}

// DeleteService removes a Service.
func (r *Repository) DeleteService(namespace, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	delete(r.services, namespace+"/"+name)
	r.refreshDynamicLocked(func(d *dynamicSelector) bool { return d.service != nil })
}

// ObserveDNS records the addresses a DNS answer gave for a name, for
// toFQDNs selectors. An empty list forgets the name.
func (r *Repository) ObserveDNS(name string, ips []netip.Addr) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	if len(ips) == 0 {
		delete(r.fqdn, name)
	} else {
		r.fqdn[name] = append([]netip.Addr(nil), ips...)
	}
	r.refreshDynamicLocked(func(d *dynamicSelector) bool { return d.fqdn != nil && d.fqdn.Match(name) })
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

// dynamicSelects reports whether a dynamic selector selects an identity:
// a CIDR identity of one of its addresses, or the identity of a local
// endpoint at one of them.
func (r *Repository) dynamicSelects(d *dynamicSelector, id *Identity) bool {
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
			if r.dynamicSelects(d, e.ident) {
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

// UpsertNode records a node's addresses. The agent's own node (local)
// gets the reserved identity host, every other node remote-node, as in
// Cilium, so that the entities host and remote-node (and cluster, which
// includes both) select traffic from them. A pod's address wins over a
// node's; nothing else changes, since the reserved identities and their
// entries always exist.
func (r *Repository) UpsertNode(name string, ips []netip.Addr, local bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	r.deleteNodeLocked(name)
	id := IdentityRemoteNode
	if local {
		id = IdentityHost
	}
	n := nodeInfo{id: id}
	for _, ip := range ips {
		ip = ip.Unmap()
		n.ips = append(n.ips, ip)
		r.byNodeIP[ip] = id
	}
	r.nodes[name] = n
}

// DeleteNode forgets a node's addresses.
func (r *Repository) DeleteNode(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	r.deleteNodeLocked(name)
}

func (r *Repository) deleteNodeLocked(name string) {
	n, ok := r.nodes[name]
	if !ok {
		return
	}
	delete(r.nodes, name)
	for _, ip := range n.ips {
		delete(r.byNodeIP, ip)
	}
	// Another node may share an address (a misconfiguration); keep its.
	for _, o := range r.nodes {
		for _, ip := range o.ips {
			r.byNodeIP[ip] = o.id
		}
	}
}

// NodeAddrs returns every known node address with its identity (host or
// remote-node), for the datapath's ipcache.
func (r *Repository) NodeAddrs() map[netip.Addr]NumericIdentity {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netip.Addr]NumericIdentity, len(r.byNodeIP))
	for ip, id := range r.byNodeIP {
		out[ip] = id
	}
	return out
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
