package policy_test

import (
	"slices"
	"testing"

	"portcullis.dev/portcullis/policy"
)

func TestSelectedBy(t *testing.T) {
	r := load(t, policy.ModeDefault, "../examples/starwars")
	r.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "deathstar", Labels: map[string]string{"org": "empire", "class": "deathstar"}})
	r.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "xwing", Labels: map[string]string{"org": "alliance", "class": "xwing"}})
	rule1 := policy.PolicyKey{Kind: "TrafficPolicy", Namespace: "default", Name: "rule1"}
	for _, tc := range []struct {
		pod  string
		dir  policy.Direction
		want []policy.PolicyKey
	}{
		{"deathstar", policy.Ingress, []policy.PolicyKey{rule1}},
		{"deathstar", policy.Egress, nil},
		{"xwing", policy.Ingress, nil},
		{"unknown", policy.Ingress, nil},
	} {
		if got := r.SelectedBy("default", tc.pod, tc.dir); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: got %v, want %v", tc.pod, tc.dir, got, tc.want)
		}
	}
}
