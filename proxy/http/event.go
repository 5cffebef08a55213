package http

import (
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
	// latency, when set, is the time to the response's head.
	latency time.Duration
}

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
	}
	if s := d.DeniedBy; s != nil {
		a.policy = s.Policies()
		a.reason = s.Decision.Reason
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
		},
	}
	if a.isGRPC {
		g := a.grpcStatus
		e.L7.GRPCStatus = &g
	}
	if a.cp != nil {
		e.Source = endpointOf(a.cp.Source)
		e.Destination = endpointOf(a.cp.Destination)
	}
	s.o.Record(e)
}

func endpointOf(p proxy.Peer) monitor.Endpoint {
	e := monitor.Endpoint{IP: p.Addr.Addr().Unmap().String(), Port: p.Addr.Port()}
	if p.Endpoint != nil {
		e.Namespace, e.Pod = p.Endpoint.Namespace, p.Endpoint.Name
	}
	if p.Identity != nil {
		e.Identity = uint32(p.Identity.ID)
		e.Labels = labelStrings(p.Identity.Labels)
	}
	return e
}

func labelStrings(ls policy.Labels) []string {
	sorted := ls.Sorted()
	out := make([]string, len(sorted))
	for i, l := range sorted {
		out[i] = l.String()
	}
	return out
}
