package operator

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// AgentTracker knows the set of live node agents: those whose Lease
// "portcullis-agent-<node>" in the system namespace was renewed within its
// leaseDurationSeconds. Lease expiry is not an API event, so it polls its
// cache every Interval and tells subscribers when the set changed; the
// policy reconcilers then recompute Programmed.
type AgentTracker struct {
	Reader    client.Reader
	Namespace string
	// Interval is the polling period; zero means 2s.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu          sync.Mutex
	last        []string
	subscribers []chan event.GenericEvent
}

var (
	_ manager.Runnable               = (*AgentTracker)(nil)
	_ manager.LeaderElectionRunnable = (*AgentTracker)(nil)
)

// Subscribe returns a channel that receives an event whenever the set of
// live agents changes. Call it before the manager starts.
func (t *AgentTracker) Subscribe() <-chan event.GenericEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan event.GenericEvent, 1)
	t.subscribers = append(t.subscribers, ch)
	return ch
}

// Live returns the node names of the live agents, sorted.
func (t *AgentTracker) Live(ctx context.Context) ([]string, error) {
	var leases coordinationv1.LeaseList
	if err := t.Reader.List(ctx, &leases, client.InNamespace(t.Namespace)); err != nil {
		return nil, fmt.Errorf("listing agent leases in %s: %w", t.Namespace, err)
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	var live []string
	for i := range leases.Items {
		l := &leases.Items[i]
		node, ok := strings.CutPrefix(l.Name, v1alpha1.AgentLeasePrefix)
		if ok && node != "" && leaseAlive(l, now()) {
			live = append(live, node)
		}
	}
	sort.Strings(live)
	return live, nil
}

// leaseAlive: renewed (or acquired) less than leaseDurationSeconds ago.
func leaseAlive(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	var last *metav1.MicroTime
	switch {
	case l.Spec.RenewTime != nil:
		last = l.Spec.RenewTime
	case l.Spec.AcquireTime != nil:
		last = l.Spec.AcquireTime
	default:
		return false
	}
	return now.Before(last.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// Start polls until ctx ends.
func (t *AgentTracker) Start(ctx context.Context) error {
	interval := t.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		live, err := t.Live(ctx)
		if err != nil {
			log.FromContext(ctx).Error(err, "agent tracker")
			continue
		}
		t.mu.Lock()
		changed := !slices.Equal(live, t.last)
		t.last = live
		subs := t.subscribers
		t.mu.Unlock()
		if !changed {
			continue
		}
		for _, ch := range subs {
			select {
			case ch <- event.GenericEvent{Object: &coordinationv1.Lease{}}:
			default: // one pending notification is enough
			}
		}
	}
}

// NeedLeaderElection: only the leader reconciles, so only it needs to know.
func (t *AgentTracker) NeedLeaderElection() bool { return true }

// maxListedNodes bounds the node names quoted in a condition message.
const maxListedNodes = 5

// programmedCondition derives Programmed from the live agents and the
// agents' reports in status.nodes. A report counts when its
// observedGeneration is the policy's generation (or newer, which a stale
// cache can show). Reports of agents that are not live are ignored.
func programmedCondition(gen int64, accepted bool, live []string, st *v1alpha1.PolicyStatus) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionProgrammed, ObservedGeneration: gen, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonPending}
	if !accepted {
		c.Reason = v1alpha1.ReasonInvalid
		c.Message = "the policy is not accepted, so no agent programs it"
		return c
	}
	if len(live) == 0 {
		c.Message = "no agent has reported: no live node agent (Lease " + v1alpha1.AgentLeasePrefix + "<node>)"
		return c
	}
	reports := make(map[string]*v1alpha1.PolicyNodeStatus, len(st.Nodes))
	for i := range st.Nodes {
		reports[st.Nodes[i].Name] = &st.Nodes[i]
	}
	var waiting, failed []string
	done := 0
	for _, n := range live {
		r := reports[n]
		switch {
		case r != nil && r.ObservedGeneration >= gen:
			done++
		case r != nil && r.Message != "":
			failed = append(failed, n+": "+r.Message)
		default:
			waiting = append(waiting, n)
		}
	}
	if done == len(live) {
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonProgrammed
		c.Message = fmt.Sprintf("generation %d is in force on all %d live agents", gen, len(live))
		return c
	}
	var b strings.Builder
	if done == 0 {
		fmt.Fprintf(&b, "no agent has reported generation %d yet (%d live agents)", gen, len(live))
	} else {
		fmt.Fprintf(&b, "%d of %d live agents have generation %d in force", done, len(live), gen)
	}
	if len(waiting) > 0 {
		fmt.Fprintf(&b, "; waiting for %s", listNames(waiting))
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "; failed on %s", listNames(failed))
	}
	c.Message = b.String()
	return c
}

func listNames(names []string) string {
	if len(names) <= maxListedNodes {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListedNodes], ", "), len(names)-maxListedNodes)
}
