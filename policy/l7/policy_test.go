package l7

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

var portPath = field.NewPath("spec", "ingress").Index(0).Child("toPorts").Index(0)

func mustPort(t *testing.T, origin string, pr v1alpha1.PortRule) *Policy {
	t.Helper()
	p, errs := CompilePortRule(pr, origin, "default", mapSecrets{"default/tok": "v"}, portPath)
	if errs != nil {
		t.Fatalf("CompilePortRule(%+v): %v", pr, errs.ToAggregate())
	}
	return p
}

func tlsCtx(name string) *v1alpha1.TLSContext {
	return &v1alpha1.TLSContext{Secret: &v1alpha1.Secret{Name: name}, Certificate: "tls.crt", PrivateKey: "tls.key"}
}

func TestParserString(t *testing.T) {
	for p, want := range map[Parser]string{ParserNone: "none", ParserHTTP: "http", ParserKafka: "kafka", ParserDNS: "dns", 9: "parser(9)"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", p, got, want)
		}
	}
}

func TestCompilePortRule(t *testing.T) {
	if p := mustPort(t, "o", v1alpha1.PortRule{Ports: []v1alpha1.PortProtocol{{Port: "80"}}}); p != nil {
		t.Errorf("L4-only port rule = %v, want nil", p)
	}
	p := mustPort(t, "default/p: ingress[0].toPorts[0]", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET"}, {Method: "POST"}}}})
	if p.Parser != ParserHTTP || len(p.HTTP) != 2 || !p.NeedsProxy() {
		t.Fatalf("policy = %v", p)
	}
	origins := p.HTTP[0].Origin + "|" + p.HTTP[1].Origin
	if origins != "default/p: ingress[0].toPorts[0].rules.http[0]|default/p: ingress[0].toPorts[0].rules.http[1]" {
		t.Errorf("origins = %s", origins)
	}
	p = mustPort(t, "o", v1alpha1.PortRule{
		ServerNames:    []string{"*.example.com"},
		TerminatingTLS: tlsCtx("cert"),
		OriginatingTLS: &v1alpha1.TLSContext{Secret: &v1alpha1.Secret{Namespace: "portcullis-secrets", Name: "ca"}, TrustedCA: "ca.crt"},
		Rules:          &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X", Secret: &v1alpha1.Secret{Name: "tok"}}}}}},
	})
	if p.TerminatingTLS.Namespace != "default" || p.OriginatingTLS.Namespace != "portcullis-secrets" {
		t.Errorf("TLS contexts %v / %v", p.TerminatingTLS, p.OriginatingTLS)
	}
	if p.HTTP[0].ServerNames.String() != "[*.example.com]" {
		t.Errorf("serverNames not attached: %v", p.HTTP[0])
	}
	if !p.AllowsServerName("a.example.com") || p.AllowsServerName("other.com") || p.AllowsServerName("") {
		t.Error("AllowsServerName wrong")
	}
	// SNI-only rule: passthrough, decided per connection.
	p = mustPort(t, "o", v1alpha1.PortRule{ServerNames: []string{"api.example.com"}})
	if p.Parser != ParserNone || !p.NeedsProxy() {
		t.Fatalf("SNI-only policy = %v", p)
	}
	if ok, r := p.DecideConn("api.example.com"); !ok || r.Origin != "o" {
		t.Errorf("DecideConn(api) = %v, %v", ok, r)
	}
	if ok, _ := p.DecideConn("evil.com"); ok {
		t.Error("DecideConn(evil.com) allowed")
	}
	if ok, _ := (*Policy)(nil).DecideConn("x"); !ok {
		t.Error("nil policy refused a connection")
	}
}

func TestCompilePortRuleErrors(t *testing.T) {
	tests := []struct {
		name  string
		pr    v1alpha1.PortRule
		field string
	}{
		{"two protocols", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{}}, DNS: []v1alpha1.PortRuleDNS{{MatchPattern: "*"}}}}, portPath.Child("rules").String()},
		{"SNI with HTTP needs termination", v1alpha1.PortRule{ServerNames: []string{"a.com"}, Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{}}}}, portPath.Child("terminatingTLS").String()},
		{"SNI with DNS", v1alpha1.PortRule{ServerNames: []string{"a.com"}, Rules: &v1alpha1.L7Rules{DNS: []v1alpha1.PortRuleDNS{{MatchPattern: "*"}}}}, portPath.Child("serverNames").String()},
		{"TLS with DNS", v1alpha1.PortRule{TerminatingTLS: tlsCtx("c"), Rules: &v1alpha1.L7Rules{DNS: []v1alpha1.PortRuleDNS{{MatchPattern: "*"}}}}, portPath.Child("rules", "dns").String()},
		{"TLS without secret", v1alpha1.PortRule{TerminatingTLS: &v1alpha1.TLSContext{}}, portPath.Child("terminatingTLS", "secret", "name").String()},
		{"bad server name", v1alpha1.PortRule{ServerNames: []string{"a.*"}}, portPath.Child("serverNames").Index(0).String()},
		{"bad http rule", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{}, {Path: "("}}}}, portPath.Child("rules", "http").Index(1).Child("path").String()},
		{"bad kafka rule", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{Kafka: []v1alpha1.PortRuleKafka{{APIKey: "nope"}}}}, portPath.Child("rules", "kafka").Index(0).Child("apiKey").String()},
		{"bad dns rule", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{DNS: []v1alpha1.PortRuleDNS{{MatchName: "a b"}}}}, portPath.Child("rules", "dns").Index(0).Child("matchName").String()},
		{"secret in other namespace missing", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X", Secret: &v1alpha1.Secret{Namespace: "other", Name: "tok"}}}}}}},
			portPath.Child("rules", "http").Index(0).Child("headerMatches").Index(0).Child("secret").String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := CompilePortRule(tt.pr, "o", "default", mapSecrets{"default/tok": "v"}, portPath)
			if p != nil || len(errs) == 0 {
				t.Fatalf("CompilePortRule = %v, %v; want an error", p, errs)
			}
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			if !strings.Contains(strings.Join(fields, " "), tt.field) {
				t.Errorf("errors %v do not name %s", errs, tt.field)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	getA := mustPort(t, "a", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET", Path: "/a"}}}})
	getB := mustPort(t, "b", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET", Path: "/b"}}}})
	kafka := mustPort(t, "k", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{Kafka: []v1alpha1.PortRuleKafka{{Role: "produce"}}}})
	dns := mustPort(t, "d", v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{DNS: []v1alpha1.PortRuleDNS{{MatchName: "a.io"}}}})

	t.Run("union", func(t *testing.T) {
		m, err := Merge(getA, getB)
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]bool{"/a": true, "/b": true, "/c": false} {
			if got := m.HTTP.Decide(HTTPRequest{Method: "GET", Path: path}).Allowed; got != want {
				t.Errorf("GET %s allowed = %v, want %v", path, got, want)
			}
		}
		m2, _ := Merge(getB, getA)
		if m.Key() != m2.Key() || !Equal(m, m2) {
			t.Errorf("Merge is not symmetric:\n%s\n%s", m.Key(), m2.Key())
		}
		m3, _ := Merge(m, getA)
		if m3.Key() != m.Key() {
			t.Errorf("Merge is not idempotent:\n%s\n%s", m3.Key(), m.Key())
		}
		if len(getA.HTTP) != 1 {
			t.Error("Merge changed its argument")
		}
	})
	t.Run("parser conflict", func(t *testing.T) {
		if _, err := Merge(getA, kafka); !errors.Is(err, ErrParserConflict) {
			t.Errorf("Merge(http, kafka) error = %v", err)
		}
		if _, err := Merge(dns, getA); !errors.Is(err, ErrParserConflict) {
			t.Errorf("Merge(dns, http) error = %v", err)
		}
	})
	t.Run("L4-only widens", func(t *testing.T) {
		for _, l4 := range []*Policy{nil, AllowAll("l4")} {
			m, err := Merge(getA, l4)
			if err != nil {
				t.Fatal(err)
			}
			if m.Parser != ParserHTTP || !m.HTTP.Decide(HTTPRequest{Method: "DELETE", Path: "/z"}).Allowed {
				t.Errorf("Merge(http, %v) = %v, want HTTP allowing everything", l4, m)
			}
			mk, _ := Merge(l4, kafka)
			if !mk.Kafka.Decide(KafkaRequest{APIKey: 1, Topics: []string{"t"}}).Allowed {
				t.Errorf("Merge(%v, kafka) does not allow fetch", l4)
			}
			md, _ := Merge(dns, l4)
			if ok, _ := md.DNS.Decide("anything.example"); !ok {
				t.Errorf("Merge(dns, %v) does not allow every name", l4)
			}
		}
		if m, _ := Merge(nil, nil); m != nil {
			t.Errorf("Merge(nil, nil) = %v", m)
		}
		if m, _ := Merge(AllowAll("x"), nil); m.NeedsProxy() {
			t.Error("L4-only merge needs a proxy")
		}
	})
	t.Run("serverNames stay with their rules", func(t *testing.T) {
		sniX := mustPort(t, "sni", v1alpha1.PortRule{ServerNames: []string{"a.com"}, TerminatingTLS: tlsCtx("cert"),
			Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Path: "/x"}}}})
		m, err := Merge(sniX, getB)
		if err != nil {
			t.Fatal(err)
		}
		if m.TerminatingTLS == nil || m.TerminatingTLS.Name != "cert" {
			t.Errorf("TerminatingTLS = %v", m.TerminatingTLS)
		}
		tests := []struct {
			sni, method, path string
			want              bool
		}{
			{"a.com", "GET", "/x", true},
			{"b.com", "GET", "/x", false}, // Cilium would allow this
			{"", "GET", "/b", true},       // Cilium would refuse this
			{"b.com", "GET", "/b", true},
			{"a.com", "GET", "/b", true},
		}
		for _, tt := range tests {
			if got := m.HTTP.Decide(HTTPRequest{Method: tt.method, Path: tt.path, ServerName: tt.sni}).Allowed; got != tt.want {
				t.Errorf("%s %s on %q: allowed = %v, want %v", tt.method, tt.path, tt.sni, got, tt.want)
			}
		}
		if !m.AllowsServerName("b.com") || !m.AllowsServerName("") {
			t.Error("connection gate should admit any SNI (getB has no serverNames)")
		}
		if !sniX.AllowsServerName("a.com") || sniX.AllowsServerName("b.com") {
			t.Error("connection gate of the SNI rule alone is wrong")
		}
	})
	t.Run("SNI passthrough with L7 rules needs termination", func(t *testing.T) {
		sniOnly := mustPort(t, "sni", v1alpha1.PortRule{ServerNames: []string{"a.com"}})
		if _, err := Merge(sniOnly, getA); !errors.Is(err, ErrServerNamesNeedTermination) {
			t.Errorf("error = %v", err)
		}
		both, err := Merge(sniOnly, mustPort(t, "sni2", v1alpha1.PortRule{ServerNames: []string{"b.com"}}))
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := both.DecideConn("b.com"); !ok || both.AllowsServerName("c.com") {
			t.Error("SNI-only union is wrong")
		}
	})
	t.Run("TLS conflicts", func(t *testing.T) {
		a := mustPort(t, "a", v1alpha1.PortRule{TerminatingTLS: tlsCtx("one")})
		b := mustPort(t, "b", v1alpha1.PortRule{TerminatingTLS: tlsCtx("two")})
		if _, err := Merge(a, b); !errors.Is(err, ErrTLSConflict) {
			t.Errorf("error = %v", err)
		}
		if m, err := Merge(a, a); err != nil || m.TerminatingTLS.Name != "one" {
			t.Errorf("Merge(a, a) = %v, %v", m, err)
		}
		if _, err := Merge(a, dns); !errors.Is(err, ErrDNSWithTLS) {
			t.Errorf("Merge(tls, dns) error = %v", err)
		}
	})
}

func TestKey(t *testing.T) {
	mk := func(origin string, hs ...v1alpha1.PortRuleHTTP) *Policy {
		return mustPort(t, origin, v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: hs}})
	}
	a := mk("o", v1alpha1.PortRuleHTTP{Path: "/a"}, v1alpha1.PortRuleHTTP{Path: "/b"})
	b := mk("o", v1alpha1.PortRuleHTTP{Path: "/a"}, v1alpha1.PortRuleHTTP{Path: "/b"})
	if a.Key() != b.Key() || a.String() != a.Key() {
		t.Errorf("equal policies have different keys:\n%s\n%s", a.Key(), b.Key())
	}
	for _, other := range []*Policy{
		mk("o", v1alpha1.PortRuleHTTP{Path: "/a"}),
		mk("other", v1alpha1.PortRuleHTTP{Path: "/a"}, v1alpha1.PortRuleHTTP{Path: "/b"}),
		mk("o", v1alpha1.PortRuleHTTP{Path: "/a", Method: "GET"}, v1alpha1.PortRuleHTTP{Path: "/b"}),
		mk("o", v1alpha1.PortRuleHTTP{Path: "/a", Headers: []string{"X: 1"}}, v1alpha1.PortRuleHTTP{Path: "/b"}),
		nil,
	} {
		if a.Key() == other.Key() {
			t.Errorf("different policies share the key %s", a.Key())
		}
	}
	// Header order inside a rule does not matter.
	h1 := mk("o", v1alpha1.PortRuleHTTP{Headers: []string{"A", "B: 1"}})
	h2 := mk("o", v1alpha1.PortRuleHTTP{Headers: []string{"B: 1", "A"}})
	if h1.Key() != h2.Key() {
		t.Errorf("header order changes the key:\n%s\n%s", h1.Key(), h2.Key())
	}
	// Secret values never appear in keys, but changes to them do.
	s := func(v string) *Policy {
		p, errs := CompilePortRule(v1alpha1.PortRule{Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X", Secret: &v1alpha1.Secret{Name: "tok"}}}}}}},
			"o", "ns", mapSecrets{"ns/tok": v}, portPath)
		if errs != nil {
			t.Fatal(errs)
		}
		return p
	}
	if k := s("topsecret").Key(); strings.Contains(k, "topsecret") {
		t.Errorf("key leaks the secret: %s", k)
	}
	if s("one").Key() == s("two").Key() {
		t.Error("a changed secret value does not change the key")
	}
	// A hand-built, unsorted policy still has a canonical key.
	r1, r2 := a.HTTP[0], a.HTTP[1]
	if (&Policy{Parser: ParserHTTP, HTTP: HTTPRules{r2, r1}}).Key() != (&Policy{Parser: ParserHTTP, HTTP: HTTPRules{r1, r2}}).Key() {
		t.Error("rule order changes the key")
	}
}
