package l7

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

func TestNameMatcher(t *testing.T) {
	tests := []struct {
		sel   v1alpha1.FQDNSelector
		match []string
		miss  []string
	}{
		{v1alpha1.FQDNSelector{MatchName: "cilium.io"},
			[]string{"cilium.io", "cilium.io.", "CILIUM.IO", "Cilium.Io."},
			[]string{"sub.cilium.io", "cilium.io..", "ciliumio", "cilium.i", "", ".", "xcilium.io"}},
		{v1alpha1.FQDNSelector{MatchName: "cilium.io."},
			[]string{"cilium.io", "cilium.io."}, []string{"cilium.org"}},
		{v1alpha1.FQDNSelector{MatchPattern: "*.cilium.io"},
			[]string{"sub.cilium.io", "SUB.cilium.io.", "a-b_c.cilium.io"},
			[]string{"cilium.io", "sub.sub.cilium.io", ".cilium.io", "sub.cilium.io.evil.com", "sub..cilium.io", "s b.cilium.io", "su\u212ab.cilium.io"}},
		// Cilium 1.18 pkg/fqdn/matchpattern: "*" never matches a dot and
		// "**" is just two "*", so "**." is exactly one label in DNS
		// patterns (matchpattern_test.go's "**.cilium.io" cases).
		{v1alpha1.FQDNSelector{MatchPattern: "**.cilium.io"},
			[]string{"a.cilium.io", "A.cilium.io."},
			[]string{"a.b.cilium.io", "A.B.C.cilium.io.", "cilium.io", "cilium.io.", "acilium.io", "a..cilium.io", ".cilium.io"}},
		{v1alpha1.FQDNSelector{MatchPattern: "api*.example.com"},
			[]string{"api.example.com", "api-v2.example.com", "API2.example.com."},
			[]string{"ap.example.com", "v2api.example.com", "api.v2.example.com", "api.example.com.x"}},
		{v1alpha1.FQDNSelector{MatchPattern: "*"},
			[]string{"anything.at.all", "localhost", "x.", ".", "A_B-C.d"},
			[]string{"", "a..b", "with space.com", "..", "caf\u00e9.com"}},
		{v1alpha1.FQDNSelector{MatchPattern: "*."},
			[]string{"anything.at.all"}, []string{""}},
		{v1alpha1.FQDNSelector{MatchPattern: "a*b*c.io"},
			[]string{"abc.io", "axxbyyc.io", "abbbc.io", "aXbXc.io"},
			[]string{"ab.io", "acb.io", "abcd.io"}},
		{v1alpha1.FQDNSelector{MatchPattern: "**.*.cilium.io"},
			[]string{"a.b.cilium.io"}, []string{"a.b.c.cilium.io", "b.cilium.io", "cilium.io"}},
		{v1alpha1.FQDNSelector{MatchPattern: "sub.**.io"}, // "**" not leading is one-label "*"
			[]string{"sub.cilium.io"}, []string{"sub.a.b.io"}},
	}
	for _, tt := range tests {
		m, errs := CompileFQDN(tt.sel, field.NewPath("toFQDNs").Index(0))
		if errs != nil {
			t.Fatalf("CompileFQDN(%+v): %v", tt.sel, errs)
		}
		for _, n := range tt.match {
			if !m.Match(n) {
				t.Errorf("%s: Match(%q) = false, want true", m, n)
			}
		}
		for _, n := range tt.miss {
			if m.Match(n) {
				t.Errorf("%s: Match(%q) = true, want false", m, n)
			}
		}
	}
}

func TestCompileFQDNErrors(t *testing.T) {
	fld := field.NewPath("spec", "egress").Index(0).Child("toFQDNs").Index(1)
	tests := []struct {
		sel   v1alpha1.FQDNSelector
		field string
	}{
		{v1alpha1.FQDNSelector{}, fld.String()},
		{v1alpha1.FQDNSelector{MatchName: "a.io", MatchPattern: "*.io"}, fld.String()},
		{v1alpha1.FQDNSelector{MatchName: "*.io"}, fld.Child("matchName").String()},
		{v1alpha1.FQDNSelector{MatchName: "a..io"}, fld.Child("matchName").String()},
		{v1alpha1.FQDNSelector{MatchName: "."}, fld.Child("matchName").String()},
		{v1alpha1.FQDNSelector{MatchName: strings.Repeat("a.", 128)}, fld.Child("matchName").String()},
		{v1alpha1.FQDNSelector{MatchPattern: "**."}, ""},       // valid: one label, as "*." would be in a label
		{v1alpha1.FQDNSelector{MatchPattern: "a.**.**.b"}, ""}, // valid: non-leading ** is a label glob
		{v1alpha1.FQDNSelector{MatchPattern: "a/b"}, fld.Child("matchPattern").String()},
	}
	for _, tt := range tests {
		m, errs := CompileFQDN(tt.sel, fld)
		if tt.field == "" {
			if errs != nil {
				t.Errorf("CompileFQDN(%+v): %v", tt.sel, errs)
			}
			continue
		}
		if m != nil || len(errs) == 0 {
			t.Errorf("CompileFQDN(%+v) = %v, want an error", tt.sel, m)
			continue
		}
		if errs[0].Field != tt.field {
			t.Errorf("CompileFQDN(%+v) error field %q, want %q", tt.sel, errs[0].Field, tt.field)
		}
	}
}

func TestDNSRulesDecide(t *testing.T) {
	fld := field.NewPath("rules", "dns")
	var rs DNSRules
	for i, r := range []v1alpha1.PortRuleDNS{{MatchName: "kube-dns.kube-system.svc.cluster.local"}, {MatchPattern: "*.cilium.io"}} {
		dr, errs := CompileDNS(r, "dns", fld.Index(i))
		if errs != nil {
			t.Fatal(errs)
		}
		rs = append(rs, dr)
	}
	rs = append(rs, nil)
	if ok, r := rs.Decide("docs.cilium.io."); !ok || r != rs[1] {
		t.Errorf("Decide(docs.cilium.io.) = %v, %v", ok, r)
	}
	if ok, r := rs.Decide("example.com"); ok || r != nil {
		t.Errorf("Decide(example.com) = %v, %v", ok, r)
	}
	if _, errs := CompileDNS(v1alpha1.PortRuleDNS{}, "dns", fld.Index(9)); len(errs) == 0 {
		t.Error("empty DNS rule compiled")
	}
	var nilRule *DNSRule
	if nilRule.Match("x") || (*NameMatcher)(nil).Match("x") || (&NameMatcher{}).Match("x") {
		t.Error("nil or zero matcher matched")
	}
}
