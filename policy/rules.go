package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy/l7"
)

// Direction is ingress or egress, from the selected endpoint's view.
type Direction uint8

// The directions.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Tier is the evaluation tier of a rule.
type Tier uint8

// The tiers, in evaluation order. TierNone is the zero value: no tier
// decided (a side of a trace that is not a local endpoint).
const (
	TierNone Tier = iota
	TierAdmin
	TierNamespace
	TierBaseline
	// TierDefault is the enforcement mode's decision.
	TierDefault
)

func (t Tier) String() string {
	switch t {
	case TierAdmin:
		return "admin"
	case TierNamespace:
		return "namespace"
	case TierBaseline:
		return "baseline"
	case TierNone:
		return "none"
	}
	return "default"
}

// Action is what a matching rule does.
type Action uint8

// The rule actions.
const (
	ActionAllow Action = iota
	ActionDeny
	ActionPass
)

func (a Action) String() string {
	switch a {
	case ActionDeny:
		return "Deny"
	case ActionPass:
		return "Pass"
	}
	return "Allow"
}

// PolicyKey names a policy object.
type PolicyKey struct {
	Kind      string
	Namespace string
	Name      string
}

func (k PolicyKey) less(o PolicyKey) bool {
	if k.Kind != o.Kind {
		return k.Kind < o.Kind
	}
	if k.Namespace != o.Namespace {
		return k.Namespace < o.Namespace
	}
	return k.Name < o.Name
}

func (k PolicyKey) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// RuleRef names one rule of a policy, for traces, flow events and denials.
type RuleRef struct {
	Policy PolicyKey
	// Path is the rule's field path, such as "spec.ingress[0]".
	Path string
}

func (r RuleRef) String() string {
	if r.Path == "" {
		return r.Policy.String()
	}
	return r.Policy.String() + " " + r.Path
}

// rule is one compiled allow, deny or pass rule of one direction.
type rule struct {
	ref    RuleRef
	action Action
	// peers selects the peers; nil means every peer.
	peers []Selector
	// cs are the repository's shared selectors for peers, set when the
	// policy enters a repository.
	cs []*cachedSelector
	// ports restricts the rule; nil means every protocol and port.
	ports []portSpec
	// l7 is set on allow rules with L7 rules or server names.
	l7 *l7.Policy
}

// spec is one compiled rule of a namespace-tier policy: its subject, its
// default-deny switches and its rules per direction.
type spec struct {
	subject   *labelSelector
	subjectCS *cachedSelector
	// selects[d] is true when the spec has rules (allow or deny) in d.
	selects [2]bool
	// defaultDeny[d] is true unless enableDefaultDeny says false.
	defaultDeny [2]bool
	allow       [2][]*rule
	deny        [2][]*rule
}

// compiledPolicy is a policy of any kind, compiled.
type compiledPolicy struct {
	key  PolicyKey
	tier Tier
	// specs is set in the namespace tier.
	specs []*spec
	// admin fields: subject, priority and ordered rules per direction.
	subject   Selector
	subjectCS *cachedSelector
	priority  int32
	ordered   [2][]*rule
	// selectors lists every selector the policy uses, for reference
	// counting in the selector cache.
	selectors []Selector
}

// Options configure compilation.
type Options struct {
	// Secrets resolves header-match secrets; nil refuses them.
	Secrets l7.SecretResolver
}

type compiler struct {
	opts    Options
	key     PolicyKey
	ns      string
	selUsed []Selector
	errs    field.ErrorList
}

func (c *compiler) use(s Selector) Selector {
	c.selUsed = append(c.selUsed, s)
	return s
}

// Validate compiles a policy of any kind and returns what is wrong with it,
// each error naming its field; nil means the policy is accepted.
func Validate(p v1alpha1.Policy, opts Options) field.ErrorList {
	_, errs := compilePolicy(p, opts)
	return errs
}

// compilePolicy compiles a policy of any kind.
func compilePolicy(p v1alpha1.Policy, opts Options) (*compiledPolicy, field.ErrorList) {
	switch p := p.(type) {
	case *v1alpha1.TrafficPolicy:
		return CompileTrafficPolicy(p, opts)
	case *v1alpha1.ClusterTrafficPolicy:
		return CompileClusterTrafficPolicy(p, opts)
	case *v1alpha1.AdminTrafficPolicy:
		return CompileAdminTrafficPolicy(p, opts)
	}
	return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("not a policy kind the engine knows: %T", p))}
}

// CompileTrafficPolicy compiles a TrafficPolicy; errors name the fields.
func CompileTrafficPolicy(p *v1alpha1.TrafficPolicy, opts Options) (*compiledPolicy, field.ErrorList) {
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	return compileRules(PolicyKey{v1alpha1.TrafficPolicyKind, ns, p.Name}, ns, p.Spec, p.Specs, opts)
}

// CompileClusterTrafficPolicy compiles a ClusterTrafficPolicy.
func CompileClusterTrafficPolicy(p *v1alpha1.ClusterTrafficPolicy, opts Options) (*compiledPolicy, field.ErrorList) {
	return compileRules(PolicyKey{v1alpha1.ClusterTrafficPolicyKind, "", p.Name}, "", p.Spec, p.Specs, opts)
}

func compileRules(key PolicyKey, ns string, one *v1alpha1.Rule, many []v1alpha1.Rule, opts Options) (*compiledPolicy, field.ErrorList) {
	c := &compiler{opts: opts, key: key, ns: ns}
	cp := &compiledPolicy{key: key, tier: TierNamespace}
	if one == nil && len(many) == 0 {
		c.errs = append(c.errs, field.Required(field.NewPath("spec"), "a policy needs spec or specs"))
	}
	if one != nil {
		cp.specs = append(cp.specs, c.spec(one, field.NewPath("spec")))
	}
	for i := range many {
		cp.specs = append(cp.specs, c.spec(&many[i], field.NewPath("specs").Index(i)))
	}
	cp.selectors = c.selUsed
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return cp, nil
}

func (c *compiler) spec(r *v1alpha1.Rule, fld *field.Path) *spec {
	s := &spec{defaultDeny: [2]bool{true, true}}
	switch {
	case r.NodeSelector != nil && c.ns != "":
		c.errs = append(c.errs, field.Forbidden(fld.Child("nodeSelector"), "nodeSelector is only valid in a ClusterTrafficPolicy"))
	case r.NodeSelector != nil && r.EndpointSelector != nil:
		c.errs = append(c.errs, field.Invalid(fld.Child("nodeSelector"), "", "endpointSelector and nodeSelector are mutually exclusive"))
	case r.NodeSelector != nil:
		// Host policies need host endpoints, which the datapath does not
		// have yet: refuse rather than accept a policy that does nothing.
		c.errs = append(c.errs, field.Forbidden(fld.Child("nodeSelector"), "host policies (nodeSelector) are not supported yet"))
	case r.EndpointSelector == nil:
		c.errs = append(c.errs, field.Required(fld.Child("endpointSelector"), "a rule needs an endpointSelector"))
	}
	subj, errs := subjectSelector(r.EndpointSelector, c.ns, fld.Child("endpointSelector"))
	c.errs = append(c.errs, errs...)
	s.subject = subj
	c.use(subj)
	if d := r.EnableDefaultDeny; d != nil {
		if d.Ingress != nil {
			s.defaultDeny[Ingress] = *d.Ingress
		}
		if d.Egress != nil {
			s.defaultDeny[Egress] = *d.Egress
		}
	}
	s.selects[Ingress] = len(r.Ingress) > 0 || len(r.IngressDeny) > 0
	s.selects[Egress] = len(r.Egress) > 0 || len(r.EgressDeny) > 0
	for i := range r.Ingress {
		ir := &r.Ingress[i]
		p := fld.Child("ingress").Index(i)
		peers := c.ingressPeers(&ir.IngressCommonRule, p)
		s.allow[Ingress] = append(s.allow[Ingress], c.portRules(ActionAllow, peers, ir.ToPorts, ir.ICMPs, p)...)
	}
	for i := range r.IngressDeny {
		ir := &r.IngressDeny[i]
		p := fld.Child("ingressDeny").Index(i)
		peers := c.ingressPeers(&ir.IngressCommonRule, p)
		s.deny[Ingress] = append(s.deny[Ingress], c.denyRules(peers, ir.ToPorts, ir.ICMPs, p)...)
	}
	for i := range r.Egress {
		er := &r.Egress[i]
		p := fld.Child("egress").Index(i)
		peers := c.egressPeers(&er.EgressCommonRule, er.ToFQDNs, p)
		s.allow[Egress] = append(s.allow[Egress], c.portRules(ActionAllow, peers, er.ToPorts, er.ICMPs, p)...)
	}
	for i := range r.EgressDeny {
		er := &r.EgressDeny[i]
		p := fld.Child("egressDeny").Index(i)
		peers := c.egressPeers(&er.EgressCommonRule, nil, p)
		s.deny[Egress] = append(s.deny[Egress], c.denyRules(peers, er.ToPorts, er.ICMPs, p)...)
	}
	return s
}

// peerSet is the compiled peer part of a rule: selectors, or "every peer"
// when the rule names none, or "no peer" for an empty rule.
type peerSet struct {
	sels []Selector
	// named is true when the rule had any peer field at all.
	named bool
	// empty is true when some peer list is present but has no element
	// (fromEndpoints: []): the rule then selects no peer at all, whatever
	// its other lists say, as in Cilium.
	empty bool
}

// noteEmpty records a peer list that is present but empty. A nil slice is
// an absent field; decoding keeps `[]` as a non-nil empty slice.
func (ps *peerSet) noteEmpty(present bool, n int) {
	if present && n == 0 {
		ps.empty, ps.named = true, true
	}
}

func (c *compiler) endpointPeers(sels []v1alpha1.EndpointSelector, fld *field.Path, ps *peerSet) {
	ps.noteEmpty(sels != nil, len(sels))
	for i := range sels {
		s, errs := peerSelector(&sels[i], c.ns, fld.Index(i))
		c.errs = append(c.errs, errs...)
		ps.sels = append(ps.sels, c.use(s))
		ps.named = true
	}
}

func (c *compiler) cidrPeers(cidrs []v1alpha1.CIDR, sets []v1alpha1.CIDRRule, cidrFld, setFld *field.Path, ps *peerSet) {
	ps.noteEmpty(cidrs != nil, len(cidrs))
	ps.noteEmpty(sets != nil, len(sets))
	for i, cidr := range cidrs {
		s, errs := newCIDRSelector(cidr, nil, cidrFld.Index(i))
		if len(errs) > 0 {
			// Re-point "cidr" errors at the list element itself.
			for _, e := range errs {
				e.Field = cidrFld.Index(i).String()
			}
			c.errs = append(c.errs, errs...)
			continue
		}
		ps.sels = append(ps.sels, c.use(s))
		ps.named = true
	}
	for i, set := range sets {
		s, errs := newCIDRSelector(set.Cidr, set.ExceptCIDRs, setFld.Index(i))
		c.errs = append(c.errs, errs...)
		if s != nil {
			ps.sels = append(ps.sels, c.use(s))
		}
		ps.named = true
	}
}

func (c *compiler) entityPeers(ents []v1alpha1.Entity, fld *field.Path, ps *peerSet) {
	ps.noteEmpty(ents != nil, len(ents))
	for i, e := range ents {
		switch e {
		case v1alpha1.EntityAll, v1alpha1.EntityWorld, v1alpha1.EntityCluster, v1alpha1.EntityHost,
			v1alpha1.EntityRemoteNode, v1alpha1.EntityKubeAPIServer, v1alpha1.EntityInit,
			v1alpha1.EntityHealth, v1alpha1.EntityUnmanaged, v1alpha1.EntityIngress:
		default:
			c.errs = append(c.errs, field.NotSupported(fld.Index(i), e, []string{"all", "world", "cluster", "host", "remote-node", "kube-apiserver", "init", "health", "unmanaged", "ingress"}))
			continue
		}
		for _, s := range entitySelectors(e) {
			ps.sels = append(ps.sels, c.use(s))
		}
		ps.named = true
	}
}

func (c *compiler) ingressPeers(r *v1alpha1.IngressCommonRule, fld *field.Path) peerSet {
	var ps peerSet
	c.endpointPeers(r.FromEndpoints, fld.Child("fromEndpoints"), &ps)
	c.cidrPeers(r.FromCIDR, r.FromCIDRSet, fld.Child("fromCIDR"), fld.Child("fromCIDRSet"), &ps)
	c.entityPeers(r.FromEntities, fld.Child("fromEntities"), &ps)
	return ps
}

func (c *compiler) egressPeers(r *v1alpha1.EgressCommonRule, fqdns []v1alpha1.FQDNSelector, fld *field.Path) peerSet {
	var ps peerSet
	c.endpointPeers(r.ToEndpoints, fld.Child("toEndpoints"), &ps)
	c.cidrPeers(r.ToCIDR, r.ToCIDRSet, fld.Child("toCIDR"), fld.Child("toCIDRSet"), &ps)
	c.entityPeers(r.ToEntities, fld.Child("toEntities"), &ps)
	ps.noteEmpty(r.ToServices != nil, len(r.ToServices))
	for i, svc := range r.ToServices {
		p := fld.Child("toServices").Index(i)
		ref, errs := compileServiceRef(svc, c.ns, p)
		c.errs = append(c.errs, errs...)
		if ref != nil {
			ps.sels = append(ps.sels, c.use(&dynamicSelector{key: "service{" + ref.String() + "}", service: ref}))
		}
		ps.named = true
	}
	if len(fqdns) > 0 && ps.named {
		c.errs = append(c.errs, field.Invalid(fld.Child("toFQDNs"), "", "toFQDNs cannot be combined with other L3 selectors (toEndpoints, toCIDR, toCIDRSet, toEntities, toServices) in one rule"))
	}
	ps.noteEmpty(fqdns != nil, len(fqdns))
	for i, f := range fqdns {
		p := fld.Child("toFQDNs").Index(i)
		m, key, errs := compileFQDN(f, p)
		c.errs = append(c.errs, errs...)
		if m != nil {
			ps.sels = append(ps.sels, c.use(&dynamicSelector{key: "fqdn{" + key + "}", fqdn: m}))
		}
		ps.named = true
	}
	return ps
}

// rulePeers checks the parts common to allow and deny rules and returns
// the peers' selectors (nil for every peer); ok is false when the rule
// selects nothing: an empty rule ({}), which selects the endpoint (default
// deny) and allows nothing, as in Cilium; one with a present but empty
// peer list (toEndpoints: []), which is not a ports-only wildcard but
// selects no peer, as in Cilium; or one whose peers all failed to compile
// (the errors are recorded).
func (c *compiler) rulePeers(peers peerSet, hasPorts, hasICMPs bool, fld *field.Path) (sels []Selector, ok bool) {
	if hasPorts && hasICMPs {
		c.errs = append(c.errs, field.Invalid(fld.Child("icmps"), "", "toPorts and icmps cannot be combined in one rule"))
		return nil, false
	}
	if peers.empty {
		return nil, false
	}
	if !peers.named {
		return nil, hasPorts || hasICMPs // ports without peers: every peer
	}
	return peers.sels, len(peers.sels) > 0
}

// portRules compiles the allow rules of one ingress/egress rule.
func (c *compiler) portRules(act Action, peers peerSet, toPorts []v1alpha1.PortRule, icmps []v1alpha1.ICMPRule, fld *field.Path) []*rule {
	ref := RuleRef{Policy: c.key, Path: fld.String()}
	sels, ok := c.rulePeers(peers, len(toPorts) > 0, len(icmps) > 0, fld)
	if !ok {
		return nil
	}
	if len(icmps) > 0 {
		ports, errs := compileICMPs(icmps, fld.Child("icmps"))
		c.errs = append(c.errs, errs...)
		return []*rule{{ref: ref, action: act, peers: sels, ports: ports}}
	}
	if len(toPorts) == 0 {
		return []*rule{{ref: ref, action: act, peers: sels}}
	}
	var out []*rule
	for i := range toPorts {
		pr := &toPorts[i]
		p := fld.Child("toPorts").Index(i)
		ports, errs := compilePorts(pr.Ports, p.Child("ports"))
		c.errs = append(c.errs, errs...)
		pol, errs := compileL7(pr, RuleRef{Policy: c.key, Path: p.String()}, c.ns, c.opts, p)
		c.errs = append(c.errs, errs...)
		if pol != nil {
			c.errs = append(c.errs, portlessL7(pr.Ports, p.Child("ports"))...)
		}
		if len(pr.Ports) == 0 {
			if pol != nil {
				c.errs = append(c.errs, field.Required(p.Child("ports"), "L7 rules, serverNames and TLS need ports"))
				continue
			}
			ports = []portSpec{{proto: ProtoTCP, hi: 65535}, {proto: ProtoUDP, hi: 65535}, {proto: ProtoSCTP, hi: 65535}}
		}
		if pol != nil && pol.Parser == l7.ParserDNS {
			for j, pp := range pr.Ports {
				if pp.EndPort != 0 && fmt.Sprint(pp.EndPort) != pp.Port {
					c.errs = append(c.errs, field.Invalid(p.Child("ports").Index(j).Child("endPort"), pp.EndPort, "DNS rules cannot be used with port ranges"))
				}
			}
		}
		out = append(out, &rule{ref: RuleRef{Policy: c.key, Path: p.String()}, action: act, peers: sels, ports: ports, l7: pol})
	}
	return out
}

// denyRules compiles one ingressDeny/egressDeny rule.
func (c *compiler) denyRules(peers peerSet, toPorts []v1alpha1.PortDenyRule, icmps []v1alpha1.ICMPRule, fld *field.Path) []*rule {
	ref := RuleRef{Policy: c.key, Path: fld.String()}
	sels, ok := c.rulePeers(peers, len(toPorts) > 0, len(icmps) > 0, fld)
	if !ok {
		return nil
	}
	r := &rule{ref: ref, action: ActionDeny, peers: sels}
	if len(icmps) > 0 {
		ports, errs := compileICMPs(icmps, fld.Child("icmps"))
		c.errs = append(c.errs, errs...)
		r.ports = ports
	}
	for i, pr := range toPorts {
		p := fld.Child("toPorts").Index(i)
		if len(pr.Ports) == 0 {
			r.ports = append(r.ports, portSpec{proto: ProtoTCP, hi: 65535}, portSpec{proto: ProtoUDP, hi: 65535}, portSpec{proto: ProtoSCTP, hi: 65535})
			continue
		}
		ports, errs := compilePorts(pr.Ports, p.Child("ports"))
		c.errs = append(c.errs, errs...)
		r.ports = append(r.ports, ports...)
	}
	return []*rule{r}
}

// compileL7 compiles the L7 part of a port rule (nil for an L4-only one).
func compileL7(pr *v1alpha1.PortRule, ref RuleRef, namespace string, opts Options, fld *field.Path) (*l7.Policy, field.ErrorList) {
	return l7.CompilePortRule(*pr, ref.String(), namespace, opts.Secrets, fld)
}
