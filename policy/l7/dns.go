package l7

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// MaxNameLength is the longest matchName or matchPattern accepted, as in
// the CRD.
const MaxNameLength = 255

// NameMatcher matches DNS names against a matchName or a matchPattern.
// It is shared by DNS rules, toFQDNs selectors and TLS server names.
//
// Matching is ASCII case-insensitive and a trailing dot is optional on both
// sides. A queried name matches only when it is well formed: non-empty
// labels of the DNS characters [-a-zA-Z0-9_]. This is what Cilium's
// generated regular expressions accept, and it means a name with any other
// byte (an escaped "\032", a non-ASCII letter) never matches, not even a
// lone "*". Folding is ASCII only on purpose: Unicode folding would let
// "\u212a.com" (KELVIN SIGN) match "k.com".
//
// Pattern semantics (Cilium 1.18):
//   - a lone "*" matches every well-formed name, and the root ".";
//   - "*" inside a label matches any run, possibly empty, of DNS characters
//     within that one label ("api*.example.com" matches "api.example.com"
//     and "api-v2.example.com");
//   - "*" never matches a dot, and "**" is the same as "*": in a DNS rule
//     or a toFQDNs pattern "**.cilium.io" matches "a.cilium.io" but not
//     "a.b.cilium.io" (Cilium 1.18 pkg/fqdn/matchpattern turns each "*"
//     into a run of DNS characters without dots);
//   - only TLS server names (see [CompileServerName]) give a leading "**."
//     its own meaning: one or more whole labels ("**.cilium.io" matches
//     "a.cilium.io" and "a.b.cilium.io" but not "cilium.io").
//
// The zero NameMatcher matches nothing. A NameMatcher never panics.
type NameMatcher struct {
	// src is the name or pattern as written, for String.
	src       string
	isPattern bool
	// all is set for the lone "*".
	all bool
	// multi is set for a leading "**." in a server name.
	multi bool
	// labels are the lower-cased labels to match against the rightmost
	// labels of a name; for a matchName they have no '*'.
	labels []string
}

// CompileFQDN compiles a toFQDNs selector: exactly one of matchName and
// matchPattern. fld is the selector's path.
func CompileFQDN(sel v1alpha1.FQDNSelector, fld *field.Path) (*NameMatcher, field.ErrorList) {
	return compileNameOrPattern(sel.MatchName, sel.MatchPattern, fld)
}

func compileNameOrPattern(name, pattern string, fld *field.Path) (*NameMatcher, field.ErrorList) {
	switch {
	case name != "" && pattern != "":
		return nil, field.ErrorList{field.Invalid(fld, pattern, "exactly one of matchName and matchPattern")}
	case name != "":
		return compileMatchName(name, fld.Child("matchName"))
	case pattern != "":
		return compileMatchPattern(pattern, false, fld.Child("matchPattern"))
	default:
		return nil, field.ErrorList{field.Required(fld, "exactly one of matchName and matchPattern")}
	}
}

func compileMatchName(name string, fld *field.Path) (*NameMatcher, field.ErrorList) {
	labels, detail := splitSpec(name, false)
	if detail != "" {
		return nil, field.ErrorList{field.Invalid(fld, name, detail)}
	}
	return &NameMatcher{src: name, labels: labels}, nil
}

// compileMatchPattern compiles a pattern; multiLabel gives a leading "**."
// the server-name meaning of one or more labels, which DNS patterns do not
// have.
func compileMatchPattern(pattern string, multiLabel bool, fld *field.Path) (*NameMatcher, field.ErrorList) {
	if pattern == "*" || pattern == "*." {
		return &NameMatcher{src: pattern, isPattern: true, all: true}, nil
	}
	m := &NameMatcher{src: pattern, isPattern: true}
	rest := pattern
	if r, ok := strings.CutPrefix(pattern, "**."); ok && multiLabel {
		m.multi, rest = true, r
	}
	labels, detail := splitSpec(rest, true)
	if detail != "" {
		return nil, field.ErrorList{field.Invalid(fld, pattern, detail)}
	}
	m.labels = labels
	return m, nil
}

// splitSpec validates a name or pattern (without a "**." prefix) and
// returns its lower-cased labels, or a reason it is invalid.
func splitSpec(s string, allowStar bool) ([]string, string) {
	if len(s) > MaxNameLength {
		return nil, "must be at most 255 characters"
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return nil, "must name at least one label"
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if l == "" {
			return nil, "must not have empty labels"
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !isDNSChar(c) && !(allowStar && c == '*') {
				if allowStar {
					return nil, "labels may only hold the characters [-a-zA-Z0-9_*]"
				}
				return nil, "labels may only hold the characters [-a-zA-Z0-9_]"
			}
		}
		labels[i] = asciiLower(l)
	}
	return labels, ""
}

// Match reports whether name matches. See [NameMatcher] for the rules.
func (m *NameMatcher) Match(name string) bool {
	if m == nil {
		return false
	}
	if m.all && name == "." {
		return true
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 2*MaxNameLength {
		return false
	}
	// Walk the name's labels right to left against the pattern's labels,
	// without allocating.
	end := len(name)
	i := len(m.labels) - 1
	extra := 0 // labels left of the matched suffix
	for end >= 0 {
		start := strings.LastIndexByte(name[:end], '.') + 1
		label := name[start:end]
		if !isDNSLabel(label) {
			return false
		}
		switch {
		case m.all:
		case i >= 0:
			if !matchLabel(m.labels[i], label) {
				return false
			}
			i--
		default:
			extra++
		}
		end = start - 1
	}
	switch {
	case m.all:
		return true
	case i >= 0:
		return false // the name is shorter than the pattern
	case m.multi:
		return extra >= 1
	default:
		return extra == 0
	}
}

// String returns the matcher as written, prefixed with its kind, e.g.
// "matchPattern:*.cilium.io". It is canonical up to case and trailing dot.
func (m *NameMatcher) String() string {
	if m == nil {
		return "<nil>"
	}
	kind := "matchName:"
	if m.isPattern {
		kind = "matchPattern:"
	}
	return kind + asciiLower(strings.TrimSuffix(m.src, "."))
}

// IsPattern reports whether m was compiled from a matchPattern.
func (m *NameMatcher) IsPattern() bool { return m != nil && m.isPattern }

// matchLabel matches one name label against one lower-cased pattern label
// in which '*' stands for any run of characters. The name label holds only
// DNS characters (checked by the caller) and the pattern's literals are DNS
// characters too, so '*' may match any byte here.
func matchLabel(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == lowerByte(s[si]):
			pi++
			si++
		case star >= 0:
			// Let the last star swallow one more byte and retry.
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func isDNSChar(c byte) bool {
	return c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isDNSLabel(l string) bool {
	if l == "" {
		return false
	}
	for i := 0; i < len(l); i++ {
		if !isDNSChar(l[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// asciiLower lower-cases ASCII letters only; see NameMatcher for why.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerByte(b[j])
			}
			return string(b)
		}
	}
	return s
}

// DNSRule allows DNS lookups of the names its matcher matches.
type DNSRule struct {
	// Origin names the rule, e.g. "default/p: egress[0].toPorts[0].rules.dns[0]".
	Origin string
	m      *NameMatcher
}

// CompileDNS compiles one DNS rule: exactly one of matchName and
// matchPattern. fld is the rule's path, e.g. ...rules.dns[0].
func CompileDNS(r v1alpha1.PortRuleDNS, origin string, fld *field.Path) (*DNSRule, field.ErrorList) {
	m, errs := compileNameOrPattern(r.MatchName, r.MatchPattern, fld)
	if len(errs) > 0 {
		return nil, errs
	}
	return &DNSRule{Origin: origin, m: m}, nil
}

// Matcher returns the rule's name matcher.
func (r *DNSRule) Matcher() *NameMatcher { return r.m }

// Match reports whether the rule allows a lookup of qname.
func (r *DNSRule) Match(qname string) bool { return r != nil && r.m.Match(qname) }

// String describes the rule and its origin.
func (r *DNSRule) String() string { return r.semanticKey() + " origin=" + quote(r.Origin) }

func (r *DNSRule) semanticKey() string { return "dns{" + r.m.String() + "}" }

// matchAllDNS is the DNS rule a rule without L7 rules widens to.
func matchAllDNS(origin string) *DNSRule {
	return &DNSRule{Origin: origin, m: &NameMatcher{src: "*", isPattern: true, all: true}}
}

// DNSRules is a union of DNS rules.
type DNSRules []*DNSRule

// Decide reports whether a lookup of qname is allowed and, if so, by the
// first rule (in order) that allows it. Nil rules are skipped.
func (rs DNSRules) Decide(qname string) (allowed bool, rule *DNSRule) {
	for _, r := range rs {
		if r.Match(qname) {
			return true, r
		}
	}
	return false, nil
}
