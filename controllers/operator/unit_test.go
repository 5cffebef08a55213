package operator

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

func TestSecretCopyName(t *testing.T) {
	long := strings.Repeat("n", 253)
	tests := []struct {
		ns, name, want string
	}{
		{"team-a", "web-tls", "team-a.web-tls"},
		{"a", "b.c", "a.b.c"},
	}
	for _, tt := range tests {
		if got := v1alpha1.SecretCopyName(tt.ns, tt.name); got != tt.want {
			t.Errorf("v1alpha1.SecretCopyName(%q, %q) = %q, want %q", tt.ns, tt.name, got, tt.want)
		}
	}
	a, b := v1alpha1.SecretCopyName("team-a", long), v1alpha1.SecretCopyName("team-a", long[:252]+"m")
	for _, n := range []string{a, b} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("%q: %v", n, errs)
		}
	}
	if a == b {
		t.Errorf("long names collide: %q", a)
	}
}

func TestPolicyRefs(t *testing.T) {
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "p"}, Spec: tlsRule("", "a"),
		Specs: []v1alpha1.Rule{*tlsRule("certs", "b"), *tlsRule("app", "a")}}
	refs, errs := PolicyRefs(p)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, r := range refs {
		got = append(got, r.Key()+"@"+r.Path.String())
	}
	want := []string{"app/a@spec.ingress[0].toPorts[0].terminatingTLS.secret", "certs/b@specs[0].ingress[0].toPorts[0].terminatingTLS.secret"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestGrantAllows(t *testing.T) {
	tests := []struct {
		name         string
		kind, fromNS string
		secret       string
		want         bool
	}{
		{name: "any secret", kind: "TrafficPolicy", fromNS: "app", secret: "x", want: true},
		{name: "other kind", kind: "ClusterTrafficPolicy", fromNS: "app", secret: "x"},
		{name: "other namespace", kind: "TrafficPolicy", fromNS: "other", secret: "x"},
	}
	spec := grantSpec("TrafficPolicy", "app", nil)
	for _, tt := range tests {
		if got := grantAllows(&spec, tt.kind, tt.fromNS, tt.secret); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	named := grantSpec("TrafficPolicy", "app", ptr.To("only"))
	if !grantAllows(&named, "TrafficPolicy", "app", "only") || grantAllows(&named, "TrafficPolicy", "app", "other") {
		t.Error("a grant naming a secret must allow that secret only")
	}
	named.To[0].Kind = "ConfigMap"
	if grantAllows(&named, "TrafficPolicy", "app", "only") {
		t.Error("a grant to ConfigMaps must not allow a secret")
	}
}

func TestProgrammedCondition(t *testing.T) {
	st := &v1alpha1.PolicyStatus{Nodes: []v1alpha1.PolicyNodeStatus{
		{Name: "a", ObservedGeneration: 3}, {Name: "b", ObservedGeneration: 2}, {Name: "gone", ObservedGeneration: 1},
	}}
	tests := []struct {
		name     string
		accepted bool
		live     []string
		status   metav1.ConditionStatus
		reason   string
		message  string
	}{
		{"invalid", false, []string{"a"}, metav1.ConditionFalse, v1alpha1.ReasonInvalid, "not accepted"},
		{"no agents", true, nil, metav1.ConditionFalse, v1alpha1.ReasonPending, "no agent has reported"},
		{"all current", true, []string{"a"}, metav1.ConditionTrue, v1alpha1.ReasonProgrammed, "on all 1 live agents"},
		{"one behind", true, []string{"a", "b"}, metav1.ConditionFalse, v1alpha1.ReasonPending, "1 of 2 live agents have generation 3 in force; waiting for b"},
		{"many waiting", true, []string{"a", "c1", "c2", "c3", "c4", "c5", "c6"}, metav1.ConditionFalse, v1alpha1.ReasonPending, "waiting for c1, c2, c3, c4, c5 and 1 more"},
	}
	for _, tt := range tests {
		c := programmedCondition(3, tt.accepted, tt.live, st)
		if c.Status != tt.status || c.Reason != tt.reason || !strings.Contains(c.Message, tt.message) {
			t.Errorf("%s: got %s/%s %q, want %s/%s containing %q", tt.name, c.Status, c.Reason, c.Message, tt.status, tt.reason, tt.message)
		}
	}
}
