package proxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
)

// Endpoint is a local endpoint in a Snapshot.
type Endpoint struct {
	Namespace, Name string
	IP              netip.Addr
	// Policy is the endpoint's policy as written to the datapath. Nil
	// means it is not known (not written yet, or the write failed): every
	// connection from or to the endpoint is refused.
	Policy *policy.EndpointPolicy
}

// Snapshot is an immutable view of the node's policy: the local endpoints'
// derived policies and the ipcache (address → identity). The agent builds
// one after every sync that wrote everything and swaps it into a Store;
// a request is judged under the snapshot current when it starts.
type Snapshot struct {
	// Revision orders snapshots (the engine's revision at build time).
	Revision uint64
	// Endpoints are the local endpoints by address.
	Endpoints map[netip.Addr]*Endpoint
	// Identities maps an address to its identity. It must be safe for
	// concurrent use and must not change for this snapshot's lifetime;
	// an address it does not know is world.
	Identities func(netip.Addr) *policy.Identity
}

// Store holds the current Snapshot. The zero Store has none: every
// connection is refused until the first Set (fail closed).
type Store struct{ p atomic.Pointer[Snapshot] }

// Set makes s current.
func (st *Store) Set(s *Snapshot) { st.p.Store(s) }

// Load returns the current snapshot, nil before the first Set.
func (st *Store) Load() *Snapshot { return st.p.Load() }

// Resolve resolves a flow against the current snapshot.
func (st *Store) Resolve(src, dst netip.AddrPort, proto uint8) *ConnPolicy {
	return st.Load().Resolve(src, dst, proto)
}

// Resolver resolves flows; a *Store is one.
type Resolver interface {
	Resolve(src, dst netip.AddrPort, proto uint8) *ConnPolicy
}

// Peer is one side of a flow.
type Peer struct {
	Addr     netip.AddrPort
	Identity *policy.Identity
	// Endpoint is set when the peer is a local endpoint.
	Endpoint *Endpoint
}

// Name is "namespace/pod" for endpoints, else the identity, else the address.
func (p Peer) Name() string {
	if p.Endpoint != nil {
		return p.Endpoint.Namespace + "/" + p.Endpoint.Name
	}
	if p.Identity != nil {
		return p.Identity.String()
	}
	return p.Addr.Addr().String()
}

// Side is the policy of one direction that applies to a flow: the source's
// egress or the destination's ingress, when that side is a local endpoint.
type Side struct {
	Direction policy.Direction
	// Endpoint is the local endpoint whose policy this is.
	Endpoint *Endpoint
	Decision policy.Decision
	// Audit turns this side's denials into audited allows.
	Audit bool
}

// Policies names the policies that decided this side, for denial messages
// and events: "TrafficPolicy default/p, ClusterTrafficPolicy q", or the
// reason of a default verdict.
func (s *Side) Policies() string {
	seen := map[string]bool{}
	var names []string
	add := func(r policy.RuleRef) {
		if r.Policy.Name == "" {
			return
		}
		n := r.Policy.String()
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	add(s.Decision.Rule)
	for _, r := range s.Decision.Rules {
		add(r)
	}
	if len(names) == 0 {
		if s.Decision.Reason != "" {
			return s.Decision.Reason
		}
		return "default " + s.Decision.Verdict.String()
	}
	sort.Strings(names[1:])
	return strings.Join(names, ", ")
}

// ConnPolicy is what governs one redirected connection under one snapshot.
type ConnPolicy struct {
	// Revision of the snapshot it was resolved under; 0 without one.
	Revision            uint64
	Source, Destination Peer
	// Sides are the directions whose verdict is Redirect: each one's L7
	// rules must allow a request. Sides whose verdict is Allow are not
	// listed (they allow every request).
	Sides []Side
	// Denied is set when a side denies the flow at L4 (the policy changed
	// after the kernel redirected it), or when there is no snapshot or no
	// local endpoint on either side: the connection must be refused.
	Denied *Side
	// Err says why Denied was set without a policy (no snapshot, ...).
	Err error
}

// Resolve computes the ConnPolicy of a flow from src to dst. A nil
// snapshot refuses everything.
func (s *Snapshot) Resolve(src, dst netip.AddrPort, proto uint8) *ConnPolicy {
	cp := &ConnPolicy{Source: Peer{Addr: src}, Destination: Peer{Addr: dst}}
	if s == nil {
		cp.Err = fmt.Errorf("no policy snapshot yet")
		cp.Denied = &Side{Decision: policy.Decision{Verdict: policy.Deny, Reason: "no policy snapshot"}}
		return cp
	}
	cp.Revision = s.Revision
	ident := func(a netip.Addr) *policy.Identity {
		if s.Identities == nil {
			return nil
		}
		return s.Identities(a.Unmap())
	}
	cp.Source.Identity = ident(src.Addr())
	cp.Destination.Identity = ident(dst.Addr())
	cp.Source.Endpoint = s.Endpoints[src.Addr().Unmap()]
	cp.Destination.Endpoint = s.Endpoints[dst.Addr().Unmap()]
	if cp.Source.Endpoint == nil && cp.Destination.Endpoint == nil {
		cp.Err = fmt.Errorf("neither %s nor %s is a local endpoint", src, dst)
		cp.Denied = &Side{Decision: policy.Decision{Verdict: policy.Deny, Reason: "no local endpoint"}}
		return cp
	}
	for _, ep := range []*Endpoint{cp.Source.Endpoint, cp.Destination.Endpoint} {
		if ep != nil && ep.Policy == nil {
			cp.Err = fmt.Errorf("the policy of the local endpoint %s/%s is not written yet", ep.Namespace, ep.Name)
			cp.Denied = &Side{Endpoint: ep, Decision: policy.Decision{Verdict: policy.Deny, Reason: "endpoint policy not written"}}
			return cp
		}
	}
	idOf := func(p Peer) policy.NumericIdentity {
		if p.Identity == nil {
			return policy.IdentityWorld
		}
		return p.Identity.ID
	}
	check := func(ep *Endpoint, d policy.Direction, peer policy.NumericIdentity) {
		if ep == nil || ep.Policy.State[d] == nil {
			return
		}
		ms := ep.Policy.State[d]
		e := ms.Lookup(peer, proto, dst.Port())
		side := Side{Direction: d, Endpoint: ep, Decision: e.Decision, Audit: ms.Audit}
		switch e.Decision.Verdict {
		case policy.Redirect:
			cp.Sides = append(cp.Sides, side)
		case policy.Deny:
			if !ms.Audit && cp.Denied == nil {
				cp.Denied = &side
			}
		}
	}
	check(cp.Source.Endpoint, policy.Egress, idOf(cp.Destination))
	check(cp.Destination.Endpoint, policy.Ingress, idOf(cp.Source))
	return cp
}

// Parser is the L7 parser the connection needs: that of its redirected
// sides. Sides that need different parsers are an error (the engine
// refuses such policies on one side; across the two sides it cannot).
func (cp *ConnPolicy) Parser() (l7.Parser, error) {
	p := l7.ParserNone
	for i, s := range cp.Sides {
		sp := l7.ParserNone
		if s.Decision.L7 != nil {
			sp = s.Decision.L7.Parser
		}
		if i == 0 {
			p = sp
			continue
		}
		if sp != p {
			return l7.ParserNone, fmt.Errorf("the %s policy of %s needs %s but the %s policy of %s needs %s",
				cp.Sides[0].Direction, cp.Sides[0].Endpoint.Name, p, s.Direction, s.Endpoint.Name, sp)
		}
	}
	return p, nil
}

// sideVerdict is one side's verdict on a request, as walkSides needs it:
// v is the protocol's own verdict.
type sideVerdict[V any] struct {
	v       V
	allowed bool
	// rule is the origin of the rule that allowed, when hasRule.
	rule    string
	hasRule bool
}

// sideWalk is a request's verdict across the redirected sides.
type sideWalk[V any] struct {
	allowed, audited bool
	// deniedBy is the side that denied (the first, under audit mode), and
	// denial its verdict.
	deniedBy *Side
	denial   V
	// passed are the verdicts of the sides that allowed, in order; nil
	// when the request is denied.
	passed []V
	// rule and ruleSide are the allowing rule of the last side checked.
	rule     string
	ruleSide *Side
}

// walkSides judges a request on every redirected side in order (the
// source's egress first). A side that denies ends the walk with a denial,
// unless it is in audit mode: then the first such side is remembered, the
// request is marked audited and the walk goes on. A connection with
// Denied set denies every request.
func walkSides[V any](cp *ConnPolicy, judge func(*Side) sideVerdict[V]) sideWalk[V] {
	if cp.Denied != nil {
		return sideWalk[V]{deniedBy: cp.Denied}
	}
	w := sideWalk[V]{allowed: true}
	for i := range cp.Sides {
		s := &cp.Sides[i]
		v := judge(s)
		if !v.allowed {
			if !s.Audit {
				return sideWalk[V]{deniedBy: s, denial: v.v}
			}
			if w.deniedBy == nil {
				w.deniedBy, w.denial = s, v.v
			}
			w.audited = true
			continue
		}
		w.passed = append(w.passed, v.v)
		if v.hasRule {
			w.rule, w.ruleSide = v.rule, s
		}
	}
	return w
}

// HTTPDecision is the verdict on one HTTP request across both sides.
type HTTPDecision struct {
	// Allowed: forward the request (possibly only because of audit mode).
	Allowed bool
	// Audited: some side denied it and audit mode let it through.
	Audited bool
	// Actions are the header actions of the matching rules, in order:
	// the source's egress side first, then the destination's ingress.
	Actions []l7.HeaderAction
	// DeniedBy is the side that denied (nil when allowed without audit).
	DeniedBy *Side
	// Rule names the rule that allowed the request on the last side
	// checked, for access logs ("" when denied); RuleSide is that side.
	Rule     string
	RuleSide *Side
}

// DecideHTTP judges one HTTP (or gRPC) request (see walkSides).
func (cp *ConnPolicy) DecideHTTP(req l7.HTTPRequest) HTTPDecision {
	w := walkSides(cp, func(s *Side) sideVerdict[l7.HTTPVerdict] {
		var v l7.HTTPVerdict
		if s.Decision.L7 != nil {
			v = s.Decision.L7.HTTP.Decide(req)
		}
		sv := sideVerdict[l7.HTTPVerdict]{v: v, allowed: v.Allowed}
		if v.Rule != nil {
			sv.rule, sv.hasRule = v.Rule.Origin, true
		}
		return sv
	})
	d := HTTPDecision{Allowed: w.allowed, Audited: w.audited, DeniedBy: w.deniedBy, Rule: w.rule, RuleSide: w.ruleSide}
	for _, v := range w.passed {
		d.Actions = append(d.Actions, v.Actions...)
	}
	return d
}

// KafkaDecision is the verdict on one Kafka request across both sides.
type KafkaDecision struct {
	// Allowed: forward the request (possibly only because of audit mode).
	Allowed bool
	// Audited: some side denied it and audit mode let it through.
	Audited bool
	// DeniedBy is the side that denied (nil when allowed without audit).
	DeniedBy *Side
	// DeniedTopics are the request's topics that the denying side allows
	// under no rule, sorted; empty when the API key itself is refused.
	DeniedTopics []string
	// Rule names the rule that allowed the request on the last side
	// checked ("" when denied); RuleSide is that side.
	Rule     string
	RuleSide *Side
}

// DecideKafka judges one Kafka request with Cilium's semantics on every
// redirected side (see l7.KafkaRules.Decide and walkSides).
func (cp *ConnPolicy) DecideKafka(req l7.KafkaRequest) KafkaDecision {
	w := walkSides(cp, func(s *Side) sideVerdict[l7.KafkaVerdict] {
		var v l7.KafkaVerdict
		if s.Decision.L7 != nil {
			v = s.Decision.L7.Kafka.Decide(req)
		}
		sv := sideVerdict[l7.KafkaVerdict]{v: v, allowed: v.Allowed}
		if v.Rule != nil {
			sv.rule, sv.hasRule = v.Rule.Origin, true
		}
		return sv
	})
	return KafkaDecision{Allowed: w.allowed, Audited: w.audited, DeniedBy: w.deniedBy, DeniedTopics: w.denial.DeniedTopics, Rule: w.rule, RuleSide: w.ruleSide}
}

// DNSDecision is the verdict on one DNS query across both sides.
type DNSDecision struct {
	// Allowed: forward the query (possibly only because of audit mode).
	Allowed bool
	// Audited: some side denied it and audit mode let it through.
	Audited bool
	// DeniedBy is the side that denied (nil when allowed without audit).
	DeniedBy *Side
	// Rule names the rule that allowed the query on the last side checked
	// ("" when denied or when no side redirects); RuleSide is that side.
	Rule     string
	RuleSide *Side
}

// DecideDNS judges a lookup of qname with Cilium's semantics on every
// redirected side (see l7.DNSRules.Decide and walkSides).
func (cp *ConnPolicy) DecideDNS(qname string) DNSDecision {
	w := walkSides(cp, func(s *Side) sideVerdict[struct{}] {
		var sv sideVerdict[struct{}]
		if s.Decision.L7 == nil {
			return sv
		}
		ok, rule := s.Decision.L7.DNS.Decide(qname)
		sv.allowed = ok
		if rule != nil {
			sv.rule, sv.hasRule = rule.Origin, true
		}
		return sv
	})
	return DNSDecision{Allowed: w.allowed, Audited: w.audited, DeniedBy: w.deniedBy, Rule: w.rule, RuleSide: w.ruleSide}
}

// ServerNameDecision is the verdict on a TLS connection's server name
// across both sides.
type ServerNameDecision struct {
	// Allowed: the connection may proceed (possibly only because of audit
	// mode).
	Allowed bool
	// Audited: some side refused the name and audit mode let it through.
	Audited bool
	// DeniedBy is the side that refused (nil when allowed without audit).
	DeniedBy *Side
	// Rule names the rule that allowed the name on the last side checked
	// ("" when denied, or when the side's rules are L7 rules); RuleSide is
	// that side.
	Rule     string
	RuleSide *Side
}

// DecideServerName judges a TLS connection by its server name sni ("" when
// the client sent none) on every redirected side: a side allows it when
// some rule of its L7 policy applies to that name (l7.Policy.
// AllowsServerName); on a side without L7 rules (a ParserNone policy) the
// allowing connection rule is named.
func (cp *ConnPolicy) DecideServerName(sni string) ServerNameDecision {
	w := walkSides(cp, func(s *Side) sideVerdict[struct{}] {
		var sv sideVerdict[struct{}]
		pol := s.Decision.L7
		if pol == nil {
			sv.allowed = true
			return sv
		}
		if pol.Parser == l7.ParserNone {
			ok, r := pol.DecideConn(sni)
			sv.allowed = ok
			if r != nil {
				sv.rule, sv.hasRule = r.Origin, true
			}
			return sv
		}
		sv.allowed = pol.AllowsServerName(sni)
		return sv
	})
	return ServerNameDecision{Allowed: w.allowed, Audited: w.audited, DeniedBy: w.deniedBy, Rule: w.rule, RuleSide: w.ruleSide}
}

// TLSContexts returns the terminatingTLS and originatingTLS of the
// connection's redirected sides. Two sides naming different contexts are
// an error: one handshake cannot present two certificates.
func (cp *ConnPolicy) TLSContexts() (term, orig *l7.TLSContextRef, err error) {
	for i := range cp.Sides {
		pol := cp.Sides[i].Decision.L7
		if pol == nil {
			continue
		}
		for _, c := range []struct {
			dst  **l7.TLSContextRef
			ref  *l7.TLSContextRef
			what string
		}{{&term, pol.TerminatingTLS, "terminatingTLS"}, {&orig, pol.OriginatingTLS, "originatingTLS"}} {
			if c.ref == nil {
				continue
			}
			if *c.dst != nil && **c.dst != *c.ref {
				return nil, nil, fmt.Errorf("the two sides of the connection name different %s: %s and %s", c.what, *c.dst, c.ref)
			}
			*c.dst = c.ref
		}
	}
	return term, orig, nil
}

// NeedsTLS reports whether the connection must be handled at the TLS
// layer: a side terminates or originates TLS, or a side without L7 rules
// admits connections only by server name.
func (cp *ConnPolicy) NeedsTLS() bool {
	for i := range cp.Sides {
		pol := cp.Sides[i].Decision.L7
		if pol == nil {
			continue
		}
		if pol.TerminatingTLS != nil || pol.OriginatingTLS != nil {
			return true
		}
		if pol.Parser == l7.ParserNone && !allowsAnyConn(pol) {
			return true
		}
	}
	return false
}
