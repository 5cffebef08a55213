package policy

import (
	"fmt"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Locking. A Repository has one lock, mu, and it guards every field and
// everything reachable from them: the store in this file (policies and
// their order, namespaces, endpoints and their named ports, and the
// services, DNS answers and nodes of services.go, fqdn.go and nodes.go),
// the identity allocator of identities.go (ids, byLabels, byPrefix, byIP,
// byNodeIP, nextID, nextCIDR), the selector cache of selectorcache.go
// (selectors, with each one's selected and users sets) and the derived
// map state of subject.go (subjects).
//
// Being the only lock, mu has no order among the engine's own locks to get
// wrong. Callers' locks come first: while holding mu the Repository calls
// nothing outside the package (no callbacks, no secret lookups: compiling a
// policy, which may resolve secrets, happens before mu is taken), so a
// caller may hold its own lock when it calls in, never the other way round.
// Exported methods take mu once, at their start, and do not call another
// exported method while holding it. Repository methods whose names end in
// Locked, and the methods of cachedSelector, subjectState, dirState and the
// selectors that take the Repository, require mu held and never take it.

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

// Repository holds everything the engine knows and the map state it
// derived. It is safe for concurrent use. Changes recompute only what they
// touch: a policy change recomputes the endpoints it selects (before and
// after); a new identity adds its own map state and one entry set to each
// endpoint whose rules select it as a peer.
type Repository struct {
	// mu guards everything below; see the locking comment at the top.
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

	// The identity allocator (identities.go).
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

	// The selector cache (selectorcache.go), the derived map state
	// (subject.go) and the named ports of the local endpoints.
	selectors  map[string]*cachedSelector
	subjects   map[NumericIdentity]*subjectState
	namedPorts map[string]map[portRange]int
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
func (r *Repository) UpsertPolicy(p v1alpha1.Policy) (PolicyKey, field.ErrorList) {
	cp, errs := compilePolicy(p, r.opts)
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

// ApplyObject adds an object as decoded by the policy loader: a Namespace's
// labels and audit annotation, or a policy compiled. A policy that does not
// compile leaves the repository as it was.
func (r *Repository) ApplyObject(obj runtime.Object) field.ErrorList {
	switch o := obj.(type) {
	case *corev1.Namespace:
		r.UpsertNamespace(o.Name, o.Labels, o.Annotations[v1alpha1.AuditAnnotation] == "true")
		return nil
	case v1alpha1.Policy:
		_, errs := r.UpsertPolicy(o)
		return errs
	}
	return field.ErrorList{field.InternalError(nil, fmt.Errorf("not a Namespace or a policy: %T", obj))}
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
	id := r.endpointIdentityLocked(ls)
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
		r.releaseEndpointIdentityLocked(ei.id)
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
