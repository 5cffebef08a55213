package l7

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestServerNameMatcher(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"api.example.com", []string{"api.example.com", "API.Example.com", "api.example.com."}, []string{"example.com", "x.api.example.com", ""}},
		{"*.example.com", []string{"a.example.com", "A.example.com"}, []string{"example.com", "a.b.example.com", "", "a.example.org"}},
		{"**.example.com", []string{"a.example.com", "a.b.example.com"}, []string{"example.com", "aexample.com"}},
	}
	for _, tt := range tests {
		m, errs := CompileServerName(tt.pattern, field.NewPath("serverNames").Index(0))
		if errs != nil {
			t.Fatalf("CompileServerName(%q): %v", tt.pattern, errs)
		}
		for _, s := range tt.match {
			if !m.Match(s) {
				t.Errorf("%s: Match(%q) = false, want true", m, s)
			}
		}
		for _, s := range tt.miss {
			if m.Match(s) {
				t.Errorf("%s: Match(%q) = true, want false", m, s)
			}
		}
	}
}

func TestCompileServerNameErrors(t *testing.T) {
	for _, p := range []string{"", "*", "*.", "**.", "a.*.com", "api*.example.com", "***.a.com", "a b.com", "*.*.a.com"} {
		if m, errs := CompileServerName(p, field.NewPath("serverNames").Index(3)); m != nil || len(errs) == 0 {
			t.Errorf("CompileServerName(%q) = %v, want an error", p, m)
		} else if errs[0].Field != "serverNames[3]" {
			t.Errorf("CompileServerName(%q) error field %q", p, errs[0].Field)
		}
	}
}

func TestServerNamesSet(t *testing.T) {
	s, errs := CompileServerNames([]string{"b.com", "*.a.com", "B.com.", "b.com"}, field.NewPath("serverNames"))
	if errs != nil {
		t.Fatal(errs)
	}
	if got := s.String(); got != "[*.a.com,b.com]" {
		t.Errorf("String() = %q", got)
	}
	if !s.Match("x.a.com") || !s.Match("b.com") || s.Match("a.com") {
		t.Error("set Match is wrong")
	}
	if (ServerNames{}).Match("b.com") {
		t.Error("empty set matched")
	}
	if _, errs := CompileServerNames([]string{"ok.com", "*"}, field.NewPath("serverNames")); len(errs) != 1 || errs[0].Field != "serverNames[1]" {
		t.Errorf("errors = %v", errs)
	}
}
