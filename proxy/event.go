package proxy

import (
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// MonitorEndpoint describes a peer for a flow event.
func (p Peer) MonitorEndpoint() monitor.Endpoint {
	e := monitor.Endpoint{IP: p.Addr.Addr().Unmap().String(), Port: p.Addr.Port()}
	if p.Identity != nil {
		e.Identity = uint32(p.Identity.ID)
		for _, l := range p.Identity.Labels.Sorted() {
			if l.Source == policy.SourceK8s {
				e.Labels = append(e.Labels, l.Key+"="+l.Value)
			} else {
				e.Labels = append(e.Labels, l.String())
			}
		}
	}
	if p.Endpoint != nil {
		e.Namespace, e.Pod = p.Endpoint.Namespace, p.Endpoint.Name
	}
	return e
}

// Event is an L7 event about the connection: source, destination,
// protocol TCP and the given verdict and reason. Side, when set, gives the
// direction and the policies that decided. l7proto goes to L7.Protocol.
func (cp *ConnPolicy) Event(verdict, reason, l7proto string, side *Side) monitor.Event {
	e := monitor.Event{
		Time:        time.Now(),
		Type:        monitor.TypeL7,
		Verdict:     verdict,
		Reason:      reason,
		Protocol:    "TCP",
		Source:      cp.Source.MonitorEndpoint(),
		Destination: cp.Destination.MonitorEndpoint(),
		L7:          &monitor.L7{Protocol: l7proto},
	}
	if side != nil && side.Endpoint != nil {
		e.Direction = side.Direction.String()
		if side.Decision.Rule.Policy.Name != "" || len(side.Decision.Rules) > 0 {
			e.Policy = side.Policies()
		}
	}
	return e
}
