package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"portcullis.dev/portcullis/policy/l7"
)

// TracePeer is one side of a traced flow: a pod given by its labels, an
// address, or an entity. Exactly one field is set.
type TracePeer struct {
	// Labels are the pod's labels; io.kubernetes.pod.namespace puts it in
	// a namespace (default "default") and
	// io.cilium.k8s.policy.serviceaccount gives its service account.
	Labels Labels
	IP     netip.Addr
	Entity string
}

// TraceRequest is a flow to trace, with an optional L7 request.
type TraceRequest struct {
	Src, Dst TracePeer
	Proto    uint8
	Port     uint16
	HTTP     *l7.HTTPRequest
	Kafka    *l7.KafkaRequest
	DNS      string
	SNI      string
}

// Final verdicts of a trace.
const (
	VerdictAllowed = "ALLOWED"
	VerdictDenied  = "DENIED"
	VerdictAudited = "AUDITED"
	// VerdictSkipped is a side that is not a local endpoint.
	VerdictSkipped = "SKIPPED"
)

// TraceSide is the verdict of one side: the source's egress or the
// destination's ingress.
type TraceSide struct {
	Direction Direction
	// Endpoint describes the local endpoint whose policy applies.
	Endpoint string
	// Applies is false when the side is not a local endpoint.
	Applies bool
	// Enforced says whether the direction is default-deny for it.
	Enforced bool
	// SelectedBy are the namespace-tier policies selecting it.
	SelectedBy []PolicyKey
	Decision   Decision
	// L7 is the request's verdict under a Redirect, if a request was given.
	L7      *L7Verdict
	Audit   bool
	Verdict string
}

// L7Verdict is the verdict of an L7 request.
type L7Verdict struct {
	Parser  string
	Allowed bool
	// Rule is the origin of the rule that allowed the request.
	Rule   string
	Reason string
	// Actions are header actions (headerMatches mismatches) to apply.
	Actions []string
}

// TraceResult is a whole trace.
type TraceResult struct {
	Src, Dst *Identity
	Egress   TraceSide
	Ingress  TraceSide
	Verdict  string
}

// Trace answers whether a flow is allowed, side by side. Pods given by
// labels are added to the repository as endpoints named trace-src and
// trace-dst.
func (r *Repository) Trace(req TraceRequest) (*TraceResult, error) {
	src, srcKey, err := r.tracePeer(req.Src, "trace-src")
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	dst, dstKey, err := r.tracePeer(req.Dst, "trace-dst")
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &TraceResult{Src: src, Dst: dst}
	res.Egress = r.traceSideLocked(Egress, src, srcKey, dst, req)
	res.Ingress = r.traceSideLocked(Ingress, dst, dstKey, src, req)
	res.Verdict = VerdictAllowed
	for _, s := range []*TraceSide{&res.Egress, &res.Ingress} {
		switch s.Verdict {
		case VerdictDenied:
			res.Verdict = VerdictDenied
		case VerdictAudited:
			if res.Verdict != VerdictDenied {
				res.Verdict = VerdictAudited
			}
		}
	}
	return res, nil
}

// tracePeer resolves a peer to an identity, registering pods given by
// labels; key is the endpoint key of a local endpoint, else "".
func (r *Repository) tracePeer(p TracePeer, name string) (*Identity, string, error) {
	switch {
	case p.Labels != nil:
		ep := &Endpoint{Name: name, Namespace: "default", Labels: map[string]string{}}
		for _, l := range p.Labels {
			switch {
			case l.Source == SourceReserved:
				return nil, "", fmt.Errorf("reserved label %s: use an entity instead", l)
			case l.Key == LabelNamespace:
				ep.Namespace = l.Value
			case l.Key == LabelServiceAccount:
				ep.ServiceAccount = l.Value
			case l.Key == LabelCluster:
			default:
				ep.Labels[l.Key] = l.Value
			}
		}
		id := r.UpsertEndpoint(ep)
		return r.Identity(id), ep.Key(), nil
	case p.IP.IsValid():
		r.mu.Lock()
		defer r.mu.Unlock()
		ident := r.identityOfIPLocked(p.IP)
		for k, ei := range r.endpoints {
			for _, a := range ei.ep.IPs {
				if a == p.IP.Unmap() {
					return ident, k, nil
				}
			}
		}
		// Not a local endpoint: the longest policy prefix holding the
		// address, as the ipcache would give, else world.
		return ident, "", nil
	case p.Entity != "":
		id, ok := ReservedIdentityByName(p.Entity)
		if !ok {
			return nil, "", fmt.Errorf("unknown entity %q (want one of host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress)", p.Entity)
		}
		return r.Identity(id), "", nil
	}
	return nil, "", fmt.Errorf("no labels, address or entity given")
}

func (r *Repository) traceSideLocked(d Direction, subject *Identity, key string, peer *Identity, req TraceRequest) TraceSide {
	side := TraceSide{Direction: d, Verdict: VerdictSkipped}
	if key == "" {
		return side
	}
	ei := r.endpoints[key]
	st := r.subjects[ei.id]
	ds := st.dirs[d]
	side.Applies = true
	side.Endpoint = subject.Labels.String()
	side.Enforced = ds.enforced || ds.mode == ModeAlways
	side.SelectedBy = ds.selectedBy
	side.Audit = r.audit || ei.ep.Audit
	if ns := r.namespaces[ei.ep.Namespace]; ns != nil && ns.audit {
		side.Audit = true
	}
	pr := ds.forPeer(r.selectsLocked(peer.ID))
	side.Decision = ds.decide(pr, req.Proto, req.Port)
	allowed := side.Decision.Verdict != Deny
	if side.Decision.Verdict == Redirect {
		side.L7 = evalL7(side.Decision.L7, req)
		if side.L7 != nil && !side.L7.Allowed {
			allowed = false
		}
	}
	switch {
	case allowed:
		side.Verdict = VerdictAllowed
	case side.Audit:
		side.Verdict = VerdictAudited
	default:
		side.Verdict = VerdictDenied
	}
	return side
}

// evalL7 decides an L7 request under a redirect's policy. An empty SNI
// is a connection without one: refused where every rule requires a server
// name. Otherwise, without a request of any kind it returns nil: the
// connection is allowed and each request will be judged by the proxy.
func evalL7(p *l7.Policy, req TraceRequest) *L7Verdict {
	given := req.HTTP != nil || req.Kafka != nil || req.DNS != "" || req.SNI != ""
	if !given && p.AllowsServerName("") {
		return nil
	}
	v := &L7Verdict{Parser: p.Parser.String()}
	if p.Parser == l7.ParserNone {
		v.Parser = "tls"
	}
	if !p.AllowsServerName(req.SNI) {
		v.Reason = fmt.Sprintf("TLS server name %q is not allowed", req.SNI)
		if req.SNI == "" {
			v.Reason = "the rule requires a TLS server name (serverNames); a connection without SNI is refused"
		}
		return v
	}
	kind := ""
	switch {
	case req.HTTP != nil:
		kind = "http"
	case req.Kafka != nil:
		kind = "kafka"
	case req.DNS != "":
		kind = "dns"
	}
	switch p.Parser {
	case l7.ParserHTTP:
		if req.HTTP == nil {
			v.Reason = mismatch(kind, p.Parser)
			return v
		}
		hv := p.HTTP.Decide(*req.HTTP)
		v.Allowed = hv.Allowed
		if hv.Rule != nil {
			v.Rule = hv.Rule.Origin
		}
		for _, a := range hv.Actions {
			v.Actions = append(v.Actions, a.String())
		}
	case l7.ParserKafka:
		if req.Kafka == nil {
			v.Reason = mismatch(kind, p.Parser)
			return v
		}
		kv := p.Kafka.Decide(*req.Kafka)
		v.Allowed = kv.Allowed
		if kv.Rule != nil {
			v.Rule = kv.Rule.Origin
		}
	case l7.ParserDNS:
		if req.DNS == "" {
			v.Reason = mismatch(kind, p.Parser)
			return v
		}
		ok, rule := p.DNS.Decide(req.DNS)
		v.Allowed = ok
		if rule != nil {
			v.Rule = rule.Origin
		}
	default:
		ok, rule := p.DecideConn(req.SNI)
		v.Allowed = ok
		if rule != nil {
			v.Rule = rule.Origin
		}
		if kind != "" {
			v.Parser = "tls"
		}
	}
	if v.Reason == "" {
		if v.Allowed {
			v.Reason = "request matches " + v.Rule
		} else {
			v.Reason = "no L7 rule matches the request"
		}
	}
	return v
}

func mismatch(kind string, p l7.Parser) string {
	if kind == "" {
		kind = "TLS"
	}
	return fmt.Sprintf("the port is redirected to the %s parser; a %s request is refused", p, strings.ToUpper(kind))
}

// Decide returns the decision for one direction of a flow of a local
// endpoint with a peer identity, with every contributing rule. It is the
// function the map state encodes; ok is false for an unknown endpoint or
// identity.
func (r *Repository) Decide(namespace, name string, d Direction, peer NumericIdentity, proto uint8, port uint16) (dec Decision, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ei := r.endpoints[namespace+"/"+name]
	if ei == nil || r.ids[peer] == nil {
		return Decision{}, false
	}
	ds := r.subjects[ei.id].dirs[d]
	pr := ds.forPeer(r.selectsLocked(peer))
	return ds.decide(pr, proto, port), true
}
