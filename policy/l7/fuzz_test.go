package l7

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// ciliumPatternRegex translates a matchPattern the way Cilium does (a
// regular expression over a lower-cased FQDN with a trailing dot); it is
// the reference FuzzDNSPattern checks NameMatcher against.
func ciliumPatternRegex(pattern string) *regexp.Regexp {
	const label = `[-a-z0-9_]`
	if pattern == "*" || pattern == "*." {
		return regexp.MustCompile(`^((` + label + `+\.)+|\.)$`)
	}
	p := asciiLower(strings.TrimSuffix(pattern, "."))
	var b strings.Builder
	b.WriteString("^")
	for _, c := range p {
		switch c {
		case '*':
			b.WriteString(label + `*`)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`\.$`)
	return regexp.MustCompile(b.String())
}

// hasEmptyLabel reports whether a name has an empty label, which
// NameMatcher rejects but a "*" label in Cilium's regex accepts (it is
// [-a-z0-9_]*, which also lets "****" match the root "."). The root counts
// as empty-labelled except for the lone "*", which matches it on purpose.
func hasEmptyLabel(pattern, name string) bool {
	if name == "" {
		return true // not a name at all; the root is "."
	}
	if name == "." {
		return pattern != "*" && pattern != "*."
	}
	return slices.Contains(strings.Split(strings.TrimSuffix(name, "."), "."), "")
}

// instantiate returns a name that pattern must match.
func instantiate(pattern string) string {
	return strings.ReplaceAll(pattern, "*", "Q")
}

func FuzzDNSPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"*.cilium.io", "sub.cilium.io"}, {"*.cilium.io", "SUB.cilium.io."}, {"*.cilium.io", "sub.sub.cilium.io"},
		{"**.cilium.io", "a.b.cilium.io"}, {"**.cilium.io", "cilium.io"}, {"api*.example.com", "api-v1.example.com"},
		{"*", "anything.at.all"}, {"*", "."}, {"a*b*c", "aXbYc"}, {"*.io", ".io"}, {"*.io", "k\u212a.io"}, {"x", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		m, errs := CompileFQDN(v1alpha1.FQDNSelector{MatchPattern: pattern}, field.NewPath("p"))
		if errs != nil {
			return
		}
		got := m.Match(name)
		if got != m.Match(strings.ToUpper(name)) && isASCII(name) {
			t.Errorf("%q: case changes the verdict on %q", pattern, name)
		}
		if hasEmptyLabel(pattern, name) {
			if got {
				t.Errorf("%q matched %q, which has an empty label", pattern, name)
			}
		} else if want := ciliumPatternRegex(pattern).MatchString(withDot(asciiLower(name))); got != want {
			t.Errorf("%q.Match(%q) = %v, Cilium's regex says %v", pattern, name, got, want)
		}
		if n := strings.TrimSuffix(instantiate(pattern), "."); !m.Match(n) || !m.Match(n+".") {
			t.Errorf("%q does not match its own instance %q", pattern, n)
		}
		if !strings.Contains(pattern, "*") {
			nm, errs := CompileFQDN(v1alpha1.FQDNSelector{MatchName: pattern}, field.NewPath("n"))
			if errs != nil || nm.Match(name) != got {
				t.Errorf("matchName %q and matchPattern disagree on %q", pattern, name)
			}
		}
	})
}

func withDot(s string) string {
	if strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func FuzzServerName(f *testing.F) {
	for _, s := range [][2]string{{"*.example.com", "a.example.com"}, {"**.example.com", "a.b.example.com"}, {"api.example.com", "API.example.com"}, {"*.a", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, sni string) {
		m, errs := CompileServerName(pattern, field.NewPath("serverNames").Index(0))
		if errs != nil {
			return
		}
		_ = m.Match(sni)
		if m.Match("") {
			t.Errorf("%q matched an empty SNI", pattern)
		}
		base := strings.TrimPrefix(strings.TrimPrefix(pattern, "**."), "*.")
		switch {
		case strings.HasPrefix(pattern, "**."):
			if !m.Match("a."+base) || !m.Match("a.b."+base) || m.Match(base) {
				t.Errorf("%q: wrong on %q and its subdomains", pattern, base)
			}
		case strings.HasPrefix(pattern, "*."):
			if !m.Match("a."+base) || m.Match("a.b."+base) || m.Match(base) {
				t.Errorf("%q: wrong on %q and its subdomains", pattern, base)
			}
		default:
			if !m.Match(pattern) || !m.Match(strings.ToUpper(pattern)) || m.Match("a."+pattern) {
				t.Errorf("%q: exact name wrong", pattern)
			}
		}
	})
}

func FuzzHTTPRegexMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"/v1/request-landing", "/v1/request-landing"}, {"/public|/admin", "/public/x"}, {`/a(\?.*)?`, "/a?b"},
		{`\Q/a)|(.*`, "/b"}, {"(?i)get", "GET"}, {"[", "["}, {"a{1000}", "a"}, {"", "x"}, {`.*`, "\n"},
	} {
		f.Add(s[0], s[1])
	}
	fld := field.NewPath("path")
	f.Fuzz(func(t *testing.T, expr, value string) {
		rx, ferr := compileRegex(expr, fld)
		if ferr != nil {
			if ferr.Field != "path" {
				t.Errorf("error names %q, want path", ferr.Field)
			}
			return
		}
		got := rx == nil || rx.MatchString(value)
		// A headerMatches regex is the same dialect and anchoring.
		if expr != "" {
			r, errs := CompileHTTP(v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: expr}}}, "o", nil, fld)
			if errs != nil {
				t.Fatalf("path regex %q compiles but the header regex does not: %v", expr, errs)
			}
			if h := r.Match(HTTPRequest{Header: http.Header{"X-Token": {value}}}); h != got {
				t.Errorf("%q on header %q: %v, as a path %v", expr, value, h, got)
			}
		}
		// Where naive string anchoring is sound, it must agree ("" means
		// "match all" here, not "match the empty string").
		if ref, err := regexp.Compile("^(?:" + expr + ")$"); err == nil && expr != "" && !strings.Contains(expr, `\Q`) {
			if want := ref.MatchString(value); got != want {
				t.Errorf("%q on %q: got %v, anchored reference %v", expr, value, got, want)
			}
		}
		// A literal matches itself and nothing longer.
		lit, ferr := compileRegex(regexp.QuoteMeta(value), fld)
		if ferr != nil || value == "" {
			return
		}
		if !lit.MatchString(value) || lit.MatchString(value+"x") || lit.MatchString("x"+value) || lit.MatchString(value+"\n") {
			t.Errorf("literal %q is not anchored", value)
		}
	})
}

func FuzzKafkaDecide(f *testing.F) {
	f.Add(int16(0), "empire-announce", int16(1), "", int16(0), int16(0), "empire-announce", "deathstar-plans", "")
	f.Add(int16(-1), "", int16(18), "x", int16(12), int16(3), "", "", "client")
	f.Fuzz(func(t *testing.T, k1 int16, topic1 string, k2 int16, topic2 string, reqKey, reqVersion int16, t1, t2, client string) {
		rule := func(k int16, topic string) *KafkaRule {
			spec := v1alpha1.PortRuleKafka{Topic: topic}
			if k >= 0 {
				spec.APIKey = KafkaAPIKeyName(k)
			}
			if k%7 == 3 {
				spec.ClientID = "client"
			}
			r, errs := CompileKafka(spec, "r", field.NewPath("kafka"))
			if errs != nil {
				return nil
			}
			return r
		}
		rs := KafkaRules{rule(k1, topic1), rule(k2, topic2)}
		var topics []string
		for _, tp := range []string{t1, t2} {
			if tp != "" {
				topics = append(topics, tp)
			}
		}
		req := KafkaRequest{APIKey: reqKey, APIVersion: reqVersion, ClientID: client, Topics: topics}
		v := rs.Decide(req)

		// Reference: the definition, evaluated naively.
		headerOK := func(r *KafkaRule) bool { return r != nil && r.matchesHeader(&req) }
		want := slices.ContainsFunc(rs, func(r *KafkaRule) bool { return headerOK(r) && (r.topic == "" || len(topics) == 0) })
		if !want && len(topics) > 0 {
			want = true
			for _, tp := range topics {
				if !slices.ContainsFunc(rs, func(r *KafkaRule) bool { return headerOK(r) && r.topic == tp }) {
					want = false
				}
			}
		}
		if v.Allowed != want {
			t.Fatalf("Decide(%+v) = %+v, want allowed %v", req, v, want)
		}
		if v.Allowed != (v.Rule != nil) || (v.Allowed && v.DeniedTopics != nil) {
			t.Errorf("inconsistent verdict %+v", v)
		}
		for _, d := range v.DeniedTopics {
			if !slices.Contains(topics, d) {
				t.Errorf("denied topic %q is not in the request", d)
			}
		}
		// Adding a rule never takes an allow away.
		if rs[:1].Decide(req).Allowed && !v.Allowed {
			t.Error("adding a rule turned an allow into a deny")
		}
	})
}
