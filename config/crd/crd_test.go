package crd

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestCRDs(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs() = %v", err)
	}
	var got []string
	for _, c := range crds {
		got = append(got, c.Name)
	}
	want := []string{
		"admintrafficpolicies.policy.portcullis.dev",
		"clustertrafficpolicies.policy.portcullis.dev",
		"trafficpolicies.policy.portcullis.dev",
	}
	if len(got) != len(want) {
		t.Fatalf("CRDs() names = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("CRDs()[%d].Name = %q, want %q", i, got[i], want[i])
		}
	}

	// Callers get copies.
	crds[0].Spec.Group = "changed"
	again, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs() = %v", err)
	}
	if again[0].Spec.Group != "policy.portcullis.dev" {
		t.Errorf("a caller's change leaked into later CRDs() results: group %q", again[0].Spec.Group)
	}
}

func TestForGroupKind(t *testing.T) {
	tests := []struct {
		kind     string
		wantName string
		wantErr  error
	}{
		{"TrafficPolicy", "trafficpolicies.policy.portcullis.dev", nil},
		{"ClusterTrafficPolicy", "clustertrafficpolicies.policy.portcullis.dev", nil},
		{"AdminTrafficPolicy", "admintrafficpolicies.policy.portcullis.dev", nil},
		{"NetworkPolicy", "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			c, err := ForGroupKind(schema.GroupKind{Group: "policy.portcullis.dev", Kind: tt.kind})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ForGroupKind(%s) error = %v, want %v", tt.kind, err, tt.wantErr)
			}
			if err == nil && c.Name != tt.wantName {
				t.Errorf("ForGroupKind(%s).Name = %q, want %q", tt.kind, c.Name, tt.wantName)
			}
		})
	}
}
