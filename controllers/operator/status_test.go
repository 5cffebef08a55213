package operator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

func httpRule(path string) *v1alpha1.Rule {
	return &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Ingress: []v1alpha1.IngressRule{{
			ToPorts: []v1alpha1.PortRule{{
				Ports: []v1alpha1.PortProtocol{{Port: "80", Protocol: v1alpha1.ProtoTCP}},
				Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET", Path: path}}},
			}},
		}},
	}
}

// TestAccepted: the engine's checks decide Accepted, with the field errors
// as the message; observedGeneration follows the spec; Events only on
// transitions.
func TestAccepted(t *testing.T) {
	createNamespace(t, "accepted")
	tests := []struct {
		name    string
		obj     client.Object
		reason  string
		message string // substring
	}{
		{
			name:   "valid TrafficPolicy",
			obj:    &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "accepted", Name: "valid"}, Spec: httpRule("/public/.*")},
			reason: v1alpha1.ReasonAccepted,
		},
		{
			name:    "bad regex in a TrafficPolicy",
			obj:     &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "accepted", Name: "bad-regex"}, Spec: httpRule("/(")},
			reason:  v1alpha1.ReasonInvalid,
			message: "spec.ingress[0].toPorts[0].rules.http[0].path",
		},
		{
			// The apiserver cannot check a headerMatches regex (see
			// v1alpha1.HeaderMatch); Accepted is where the user sees it.
			name: "header regex with a value in a TrafficPolicy",
			obj: func() client.Object {
				spec := httpRule("/")
				spec.Ingress[0].ToPorts[0].Rules.HTTP[0].HeaderMatches = []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]+", Value: "1"}}
				return &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "accepted", Name: "header-regex-value"}, Spec: spec}
			}(),
			reason:  v1alpha1.ReasonInvalid,
			message: "spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].regex: Invalid value: \"[0-9]+\": regex is mutually exclusive with value and secret",
		},
		{
			name: "CIDR except outside its cidr",
			obj: &v1alpha1.ClusterTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "accepted-bad-except"}, Spec: &v1alpha1.Rule{
				EndpointSelector: &v1alpha1.EndpointSelector{},
				Egress: []v1alpha1.EgressRule{{EgressCommonRule: v1alpha1.EgressCommonRule{
					ToCIDRSet: []v1alpha1.CIDRRule{{Cidr: "10.0.0.0/8", ExceptCIDRs: []v1alpha1.CIDR{"192.168.0.0/16"}}},
				}}},
			}},
			reason:  v1alpha1.ReasonInvalid,
			message: "spec.egress[0].toCIDRSet[0].except[0]",
		},
		{
			name: "cluster-scoped secret reference without namespace",
			obj: &v1alpha1.ClusterTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "accepted-secret-no-ns"}, Spec: &v1alpha1.Rule{
				EndpointSelector: &v1alpha1.EndpointSelector{},
				Egress: []v1alpha1.EgressRule{{ToPorts: []v1alpha1.PortRule{{
					Ports:          []v1alpha1.PortProtocol{{Port: "443", Protocol: v1alpha1.ProtoTCP}},
					OriginatingTLS: &v1alpha1.TLSContext{Secret: &v1alpha1.Secret{Name: "ca"}},
				}}}},
			}},
			reason:  v1alpha1.ReasonInvalid,
			message: "spec.egress[0].toPorts[0].originatingTLS.secret.namespace: Required value",
		},
		{
			name: "valid AdminTrafficPolicy",
			obj: &v1alpha1.AdminTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "accepted-admin"}, Spec: v1alpha1.AdminTrafficPolicySpec{
				Priority: 10,
				Subject:  v1alpha1.AdminSubject{Namespaces: &metav1.LabelSelector{}},
				Ingress:  []v1alpha1.AdminIngressRule{{Name: "deny-all", Action: v1alpha1.ActionDeny, From: []v1alpha1.AdminPeer{{Namespaces: &metav1.LabelSelector{}}}}},
			}},
			reason: v1alpha1.ReasonAccepted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := k8s.Create(testCtx, tt.obj); err != nil {
				t.Fatal(err)
			}
			status := metav1.ConditionTrue
			evType := corev1.EventTypeNormal
			if tt.reason != v1alpha1.ReasonAccepted {
				status, evType = metav1.ConditionFalse, corev1.EventTypeWarning
			}
			c := waitCondition(t, tt.obj, v1alpha1.ConditionAccepted, status, tt.reason)
			if !strings.Contains(c.Message, tt.message) {
				t.Errorf("message %q does not contain %q", c.Message, tt.message)
			}
			waitEvent(t, tt.obj, evType, tt.reason)
			// Not accepted: Programmed says so rather than waiting.
			if tt.reason == v1alpha1.ReasonInvalid {
				waitCondition(t, tt.obj, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
			}
		})
	}
}

// TestAcceptedTransitions: fixing a policy moves Accepted to True for the
// new generation with one Normal event; reconciling again (a label change
// does not bump the generation) emits nothing more.
func TestAcceptedTransitions(t *testing.T) {
	createNamespace(t, "transitions")
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "transitions", Name: "p"}, Spec: httpRule("/[")}
	if err := k8s.Create(testCtx, p); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, p, v1alpha1.ConditionAccepted, metav1.ConditionFalse, v1alpha1.ReasonInvalid)
	if p.Generation != 1 {
		t.Fatalf("generation %d, want 1", p.Generation)
	}
	waitEvent(t, p, corev1.EventTypeWarning, v1alpha1.ReasonInvalid)

	p.Spec = httpRule("/ok")
	if err := k8s.Update(testCtx, p); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, p, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	if c.ObservedGeneration != 2 {
		t.Errorf("observedGeneration %d, want 2", c.ObservedGeneration)
	}
	waitEvent(t, p, corev1.EventTypeNormal, v1alpha1.ReasonAccepted)

	p.Labels = map[string]string{"touched": "yes"}
	if err := k8s.Update(testCtx, p); err != nil {
		t.Fatal(err)
	}
	consistently(t, "no more events", time.Second, func() error {
		for _, reason := range []string{v1alpha1.ReasonInvalid, v1alpha1.ReasonAccepted} {
			evs := eventsFor(t, p, reason)
			if len(evs) != 1 || evs[0].Series != nil {
				return fmt.Errorf("%s: %d events (series %v), want one", reason, len(evs), len(evs) > 0 && evs[0].Series != nil)
			}
		}
		return nil
	})
}

func agentLease(node string, renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: v1alpha1.DefaultSystemNamespace, Name: v1alpha1.AgentLeaseName(node)},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(node),
			LeaseDurationSeconds: ptr.To[int32](40),
			RenewTime:            &metav1.MicroTime{Time: renewed},
		},
	}
}

// agentReport is what a node agent does: server-side apply of its own
// entry in status.nodes, with its own field manager.
func agentReport(t *testing.T, p client.Object, kind, node string, generation int64, message string) {
	t.Helper()
	entry := map[string]any{"name": node, "observedGeneration": generation}
	if message != "" {
		entry["message"] = message
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": p.GetName(), "namespace": p.GetNamespace()},
		"status":     map[string]any{"nodes": []any{entry}},
	}}
	if err := k8s.Status().Apply(testCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(v1alpha1.AgentFieldManager(node)), client.ForceOwnership); err != nil {
		t.Fatalf("agent %s reporting: %v", node, err)
	}
}

// TestProgrammed exercises the agents' reporting contract: Leases say who
// is alive, status.nodes says what each has in force. It is the only test
// that creates agent Leases, so it owns the set of live agents.
func TestProgrammed(t *testing.T) {
	createNamespace(t, "programmed")
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "programmed", Name: "p"}, Spec: httpRule("/")}
	if err := k8s.Create(testCtx, p); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonPending)
	if !strings.Contains(c.Message, "no agent has reported") {
		t.Errorf("message %q, want it to say no agent has reported", c.Message)
	}

	// A live agent that has not reported yet.
	for _, n := range []string{"node-a", "node-b"} {
		if err := k8s.Create(testCtx, agentLease(n, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{"node-a", "node-b", "node-dead"} {
			_ = k8s.Delete(testCtx, agentLease(n, time.Now()))
		}
	})
	// An agent whose Lease expired long ago does not count.
	if err := k8s.Create(testCtx, agentLease("node-dead", time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "waiting for two live agents", func() error {
		c := waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonPending)
		if !strings.Contains(c.Message, "no agent has reported generation 1 yet (2 live agents); waiting for node-a, node-b") {
			return fmt.Errorf("message %q", c.Message)
		}
		return nil
	})

	agentReport(t, p, "TrafficPolicy", "node-a", 1, "")
	eventually(t, "one of two", func() error {
		c := waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonPending)
		if !strings.Contains(c.Message, "1 of 2 live agents have generation 1 in force; waiting for node-b") {
			return fmt.Errorf("message %q", c.Message)
		}
		return nil
	})
	agentReport(t, p, "TrafficPolicy", "node-b", 1, "")
	waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, v1alpha1.ReasonProgrammed)
	waitEvent(t, p, corev1.EventTypeNormal, v1alpha1.ReasonProgrammed)

	// Both agents' entries survive the operator's status patches, each
	// owned by its agent's field manager.
	if err := k8s.Get(testCtx, client.ObjectKeyFromObject(p), p); err != nil {
		t.Fatal(err)
	}
	if len(p.Status.Nodes) != 2 {
		t.Fatalf("status.nodes = %+v, want node-a and node-b", p.Status.Nodes)
	}
	managers := map[string]bool{}
	for _, mf := range p.ManagedFields {
		if mf.Subresource == "status" {
			managers[mf.Manager] = true
		}
	}
	for _, m := range []string{v1alpha1.AgentFieldManager("node-a"), v1alpha1.AgentFieldManager("node-b"), v1alpha1.OperatorFieldManager} {
		if !managers[m] {
			t.Errorf("status field manager %s missing; have %v", m, managers)
		}
	}

	// A new generation is pending until the agents report it; an agent's
	// failure message shows.
	p.Spec = httpRule("/v2/.*")
	if err := k8s.Update(testCtx, p); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonPending)
	agentReport(t, p, "TrafficPolicy", "node-a", 2, "")
	agentReport(t, p, "TrafficPolicy", "node-b", 1, "secret portcullis-secrets/x not found")
	eventually(t, "failure reported", func() error {
		c := waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonPending)
		if !strings.Contains(c.Message, "failed on node-b: secret portcullis-secrets/x not found") {
			return fmt.Errorf("message %q", c.Message)
		}
		return nil
	})
	agentReport(t, p, "TrafficPolicy", "node-b", 2, "")
	waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, v1alpha1.ReasonProgrammed)

	// An agent going away (its Lease deleted) does not hold the policy
	// back; a new agent that has not reported does.
	if err := k8s.Delete(testCtx, agentLease("node-b", time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(testCtx, agentLease("node-c", time.Now())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(testCtx, agentLease("node-c", time.Now())) })
	eventually(t, "node-c pending", func() error {
		c := waitCondition(t, p, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, v1alpha1.ReasonPending)
		if !strings.Contains(c.Message, "waiting for node-c") {
			return fmt.Errorf("message %q", c.Message)
		}
		return nil
	})
}
