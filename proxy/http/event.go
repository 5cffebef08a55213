package http

import (
	"net/netip"
	"sync/atomic"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/proxy"
)

// access is what the proxy knows of one request when it records it.
type access struct {
	cp                  *proxy.ConnPolicy
	proto               string
	method, path, host  string
	status              int
	grpcStatus          int
	isGRPC              bool
	verdict             string
	policy, reason, dir string
	start               time.Time
	// peers caches the connection's source and destination for events.
	peers *[2]peerCache
	// latency, when set, is the time to the response's head.
	latency time.Duration
	// refused classifies a refusal of the proxy's own (monitor.L7.Refused).
	refused string
	// sni is the TLS server name of an intercepted connection.
	sni string
}

// The classes of refusals of the proxy's own (monitor.L7.Refused).
const (
	reasonHeaderTimeout = "header-timeout"
	reasonBodyTimeout   = "body-timeout"
	reasonHeaderSize    = "header-too-large"
	reasonTLS           = "tls-on-plain-port"
	reasonH2Abuse       = "h2-abuse"
	reasonBadRequest    = "bad-request"
)

// verdictOf fills a's verdict, policy, reason and direction from a
// decision.
func (a *access) verdictOf(d *proxy.HTTPDecision) {
	switch {
	case !d.Allowed:
		a.verdict = monitor.VerdictDenied
	case d.Audited:
		a.verdict = monitor.VerdictAudited
	default:
		a.verdict = monitor.VerdictForwarded
		a.policy = d.Rule
		if s := d.RuleSide; s != nil && s.Endpoint != nil {
			a.dir = s.Direction.String()
		}
	}
	if s := d.DeniedBy; s != nil {
		a.policy = s.Policies()
		switch {
		case s.Decision.Verdict == policy.Redirect:
			// The side's HTTP rules: none matched the request.
			a.reason = "no-l7-rule-matched"
		case s.Decision.Reason != "":
			a.reason = s.Decision.Reason
		default:
			a.reason = "policy"
		}
		if s.Endpoint != nil {
			a.dir = s.Direction.String()
		}
	}
}

func (s *Server) record(a *access) {
	if s.o.Record == nil {
		return
	}
	if a.latency == 0 {
		a.latency = time.Since(a.start)
	}
	e := monitor.Event{
		Time:      a.start,
		Node:      s.o.Node,
		Type:      monitor.TypeL7,
		Verdict:   a.verdict,
		Reason:    a.reason,
		Direction: a.dir,
		Protocol:  "TCP",
		Policy:    a.policy,
		L7: &monitor.L7{
			Protocol: a.proto,
			Method:   a.method,
			Path:     a.path,
			Host:     a.host,
			Status:   a.status,
			Latency:  a.latency,
			Refused:  a.refused,

			ServerName: a.sni,
		},
	}
	if a.isGRPC {
		g := a.grpcStatus
		e.L7.GRPCStatus = &g
	}
	if a.cp != nil && a.peers != nil {
		e.Source = a.peers[0].endpoint(a.cp.Source)
		e.Destination = a.peers[1].endpoint(a.cp.Destination)
	} else if a.cp != nil {
		var pc [2]peerCache
		e.Source = pc[0].endpoint(a.cp.Source)
		e.Destination = pc[1].endpoint(a.cp.Destination)
	}
	s.o.Record(e)
}

// peerCache remembers how the last event of a connection showed one of
// its peers: the address is the connection's and the identity changes
// only with the policy, so most events reuse the strings.
type peerCache struct {
	last atomic.Pointer[peerEntry]
}

type peerEntry struct {
	addr  netip.AddrPort
	ident *policy.Identity
	ep    *proxy.Endpoint
	e     monitor.Endpoint
}

func (c *peerCache) endpoint(p proxy.Peer) monitor.Endpoint {
	if l := c.last.Load(); l != nil && l.addr == p.Addr && l.ident == p.Identity && l.ep == p.Endpoint {
		return l.e
	}
	e := monitor.Endpoint{IP: p.Addr.Addr().Unmap().String(), Port: p.Addr.Port()}
	if p.Endpoint != nil {
		e.Namespace, e.Pod = p.Endpoint.Namespace, p.Endpoint.Name
	}
	if p.Identity != nil {
		e.Identity = uint32(p.Identity.ID)
		e.Labels = monitor.Labels(p.Identity.Labels)
	}
	c.last.Store(&peerEntry{addr: p.Addr, ident: p.Identity, ep: p.Endpoint, e: e})
	return e
}
