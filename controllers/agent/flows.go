package agent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	ctrl "sigs.k8s.io/controller-runtime"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// ruleTable numbers the rules that policy entries name, so that a datapath
// event (which carries a 32-bit rule id) can name its policy and rule.
// Ids start at 1 (0 is a default verdict: no rule) and are never reused
// while the agent runs; they are not kept across restarts (the first sync
// rewrites every entry with the new numbers).
type ruleTable struct {
	mu   sync.RWMutex
	ids  map[policy.RuleRef]uint32
	refs []policy.RuleRef // refs[id-1]
}

// id returns the rule's number, assigning the next one to a new rule.
func (t *ruleTable) id(r policy.RuleRef) uint32 {
	if r == (policy.RuleRef{}) {
		return 0
	}
	t.mu.RLock()
	id, ok := t.ids[r]
	t.mu.RUnlock()
	if ok {
		return id
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.ids[r]; ok {
		return id
	}
	if t.ids == nil {
		t.ids = map[policy.RuleRef]uint32{}
	}
	t.refs = append(t.refs, r)
	id = uint32(len(t.refs))
	t.ids[r] = id
	return id
}

// ref returns the rule numbered id; ok is false for 0 and unknown ids.
func (t *ruleTable) ref(id uint32) (policy.RuleRef, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if id == 0 || int(id) > len(t.refs) {
		return policy.RuleRef{}, false
	}
	return t.refs[id-1], true
}

// monotonicToWall converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall time.
func monotonicToWall(t time.Duration) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return now
	}
	return now.Add(t - time.Duration(ts.Nano()))
}

// podAt names the pod with address a, if the agent knows one.
func (a *Agent) podAt(ip netip.Addr) (namespace, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.podAtLocked(ip)
}

func (a *Agent) podAtLocked(ip netip.Addr) (namespace, name string) {
	namespace, name, _ = strings.Cut(a.podsByIP[ip], "/")
	return namespace, name
}

// flowEvent turns a datapath event into a flow event for followers: both
// sides with their pods and identity labels, and the rule that decided.
// For ICMP the destination's port is the ICMP type, as the datapath
// reports it.
func (a *Agent) flowEvent(ev bpf.Event) monitor.Event {
	side := func(ap netip.AddrPort, id policy.NumericIdentity) monitor.Endpoint {
		e := monitor.Endpoint{IP: ap.Addr().String(), Port: ap.Port(), Identity: uint32(id)}
		e.Namespace, e.Pod = a.podAt(ap.Addr())
		if ident := a.repo.Identity(id); ident != nil {
			e.Labels = monitor.Labels(ident.Labels)
		}
		return e
	}
	out := monitor.Event{
		Time:        monotonicToWall(ev.Time),
		Node:        a.cfg.NodeName,
		Type:        monitor.TypePolicyVerdict,
		Verdict:     ev.Verdict.String(),
		Reason:      ev.Reason.String(),
		Direction:   ev.Direction.String(),
		Protocol:    policy.ProtoName(ev.Proto),
		Source:      side(ev.Src, ev.SrcIdentity),
		Destination: side(ev.Dst, ev.DstIdentity),
	}
	if ev.Service.IsValid() {
		out.Service = a.serviceName(ev.Service, ev.Proto)
	}
	if r, ok := a.rules.ref(ev.RuleID); ok {
		out.Policy = r.String()
	} else if ev.Verdict == bpf.EventDrop && ev.Reason == bpf.ReasonPolicy {
		out.Policy = a.defaultDenyBy(ev.EndpointID, ev.Direction)
	}
	return out
}

// defaultDenyBy names what made a direction of an endpoint default-deny:
// a drop by a default deny has no rule of its own, but the policies that
// select the endpoint caused it. "" when none does (enforcement mode
// always).
func (a *Agent) defaultDenyBy(epID uint32, d policy.Direction) string {
	a.mu.Lock()
	var ns, name string
	for _, e := range a.endpoints {
		if e.ID == epID {
			ns, name = e.Namespace, e.Name
			break
		}
	}
	a.mu.Unlock()
	if name == "" {
		return ""
	}
	keys := a.repo.SelectedBy(ns, name, d)
	if len(keys) == 0 {
		return ""
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.String()
	}
	return strings.Join(names, ", ") + " (default deny)"
}

// eventReader counts the datapath's events, passes them to Config.OnEvent
// and publishes them, with names and labels, on the agent's monitor hub.
type eventReader struct{ a *Agent }

func (e *eventReader) Start(ctx context.Context) error {
	r, err := e.a.dp.Events()
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		r.SetDeadline(time.Now().Add(500 * time.Millisecond))
		ev, err := r.Read()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			ctrl.Log.WithName("agent").Error(err, "reading datapath events")
			continue
		}
		Verdicts.WithLabelValues(ev.Direction.String(), policy.ProtoName(ev.Proto), ev.Verdict.String()).Inc()
		if e.a.cfg.OnEvent != nil {
			e.a.cfg.OnEvent(ev)
		}
		if e.a.hub.Subscribers() > 0 {
			e.a.hub.Publish(e.a.flowEvent(ev))
		}
	}
}
