package main

import (
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestHasCondition(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  map[string]any
		want bool
	}{
		{"no status", map[string]any{}, false},
		{"other condition", map[string]any{"status": map[string]any{"conditions": []any{map[string]any{"type": "Programmed"}}}}, false},
		{"accepted false counts", map[string]any{"status": map[string]any{"conditions": []any{map[string]any{"type": "Accepted", "status": "False"}}}}, true},
		{"malformed condition", map[string]any{"status": map[string]any{"conditions": []any{"Accepted"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hasCondition(unstructured.Unstructured{Object: tc.obj}, "Accepted"); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDemoPodsMatchExamples keeps the pod list and the example directories
// in step: every directory exists and pod names are unique per namespace.
func TestDemoPodsMatchExamples(t *testing.T) {
	for _, dir := range exampleDirs {
		if _, err := os.Stat("../../" + dir); err != nil {
			t.Errorf("example directory: %v", err)
		}
	}
	seen := map[string]bool{}
	for _, p := range demoPods {
		key := p.Namespace + "/" + p.Name
		if seen[key] {
			t.Errorf("pod %s listed twice", key)
		}
		seen[key] = true
		if len(p.Labels) == 0 {
			t.Errorf("pod %s has no labels: no policy can select it", key)
		}
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		got, want string
		ok        bool
	}{
		{"200 Ship landed", "200 Ship landed", true},
		{"403 Access denied", "200 Ship landed", false},
		{`200 {"name":"Death Star","mo... (connection #1)`, `200 {"name":"Death Star",... (connection #1)`, true},
		{`200 {"name":"Death Star","mo... (connection #2)`, `200 {"name":"Death Star",... (connection #1)`, false},
		{"200 {", `200 {"name":...`, false},
	} {
		if got := matches(tc.got, tc.want); got != tc.ok {
			t.Errorf("matches(%q, %q) = %v, want %v", tc.got, tc.want, got, tc.ok)
		}
	}
}
