package l7

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

var httpPath = field.NewPath("spec", "ingress").Index(0).Child("toPorts").Index(0).Child("rules", "http").Index(1)

func mustHTTP(t *testing.T, r v1alpha1.PortRuleHTTP, secrets SecretResolver) *HTTPRule {
	t.Helper()
	rule, errs := CompileHTTP(r, "default/p: rules.http[0]", secrets, httpPath)
	if len(errs) > 0 {
		t.Fatalf("CompileHTTP(%+v): %v", r, errs.ToAggregate())
	}
	return rule
}

type mapSecrets map[string]string

func (m mapSecrets) Resolve(ns, name string) (string, error) {
	v, ok := m[ns+"/"+name]
	if !ok {
		return "", errors.New("not found")
	}
	return v, nil
}

func TestHTTPMatch(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name string
		rule v1alpha1.PortRuleHTTP
		req  HTTPRequest
		want bool
	}{
		// Cilium's Star Wars demo.
		{"starwars landing", v1alpha1.PortRuleHTTP{Method: "POST", Path: "/v1/request-landing"}, HTTPRequest{Method: "POST", Path: "/v1/request-landing"}, true},
		{"starwars exhaust port", v1alpha1.PortRuleHTTP{Method: "POST", Path: "/v1/request-landing"}, HTTPRequest{Method: "PUT", Path: "/v1/exhaust-port"}, false},
		{"starwars GET landing", v1alpha1.PortRuleHTTP{Method: "POST", Path: "/v1/request-landing"}, HTTPRequest{Method: "GET", Path: "/v1/request-landing"}, false},
		// gRPC is HTTP/2 POST to /package.Service/Method.
		{"grpc GetName", v1alpha1.PortRuleHTTP{Method: "POST", Path: "/cilium.examples.doormanager.DoorManager/GetName"},
			HTTPRequest{Method: "POST", Path: "/cilium.examples.doormanager.DoorManager/GetName", Header: hdr("Content-Type", "application/grpc")}, true},
		{"grpc SetAccessCode", v1alpha1.PortRuleHTTP{Method: "POST", Path: "/cilium.examples.doormanager.DoorManager/GetName"},
			HTTPRequest{Method: "POST", Path: "/cilium.examples.doormanager.DoorManager/SetAccessCode"}, false},
		// Whole-value anchoring.
		{"empty rule matches all", v1alpha1.PortRuleHTTP{}, HTTPRequest{Method: "DELETE", Path: "/x"}, true},
		{"path prefix is not enough", v1alpha1.PortRuleHTTP{Path: "/public"}, HTTPRequest{Path: "/public/secret"}, false},
		{"path suffix is not enough", v1alpha1.PortRuleHTTP{Path: "/public"}, HTTPRequest{Path: "/x/public"}, false},
		{"regex", v1alpha1.PortRuleHTTP{Path: "/public/.*"}, HTTPRequest{Path: "/public/a/b"}, true},
		{"alternation anchored as a whole", v1alpha1.PortRuleHTTP{Path: "/public|/admin"}, HTTPRequest{Path: "/public/x"}, false},
		{"alternation second arm", v1alpha1.PortRuleHTTP{Path: "/public|/admin"}, HTTPRequest{Path: "/admin"}, true},
		{"method regex", v1alpha1.PortRuleHTTP{Method: "GET|HEAD"}, HTTPRequest{Method: "HEAD"}, true},
		{"method case-sensitive", v1alpha1.PortRuleHTTP{Method: "GET"}, HTTPRequest{Method: "get"}, false},
		{"method not a substring", v1alpha1.PortRuleHTTP{Method: "GET"}, HTTPRequest{Method: "GETX"}, false},
		// The query string is part of the path, as with Cilium's :path matcher.
		{"query is matched", v1alpha1.PortRuleHTTP{Path: "/v1/items"}, HTTPRequest{Path: "/v1/items?id=3"}, false},
		{"query allowed explicitly", v1alpha1.PortRuleHTTP{Path: `/v1/items(\?.*)?`}, HTTPRequest{Path: "/v1/items?id=3"}, true},
		{"query allowed explicitly, none sent", v1alpha1.PortRuleHTTP{Path: `/v1/items(\?.*)?`}, HTTPRequest{Path: "/v1/items"}, true},
		{"host", v1alpha1.PortRuleHTTP{Host: `api\.example\.com`}, HTTPRequest{Host: "api.example.com"}, true},
		{"host with port differs", v1alpha1.PortRuleHTTP{Host: `api\.example\.com`}, HTTPRequest{Host: "api.example.com:8080"}, false},
		// headers.
		{"header presence", v1alpha1.PortRuleHTTP{Headers: []string{"X-My-Header"}}, HTTPRequest{Header: hdr("X-My-Header", "")}, true},
		{"header presence missing", v1alpha1.PortRuleHTTP{Headers: []string{"X-My-Header"}}, HTTPRequest{Header: hdr("X-Other", "1")}, false},
		{"header value", v1alpha1.PortRuleHTTP{Headers: []string{"X-My-Header: true"}}, HTTPRequest{Header: hdr("x-my-header", "true")}, true},
		{"header value wrong", v1alpha1.PortRuleHTTP{Headers: []string{"X-My-Header: true"}}, HTTPRequest{Header: hdr("X-My-Header", "false")}, false},
		{"header value is literal", v1alpha1.PortRuleHTTP{Headers: []string{"X-Ver: 1.*"}}, HTTPRequest{Header: hdr("X-Ver", "1.2")}, false},
		{"header name non-canonical map key", v1alpha1.PortRuleHTTP{Headers: []string{"x-token: a"}}, HTTPRequest{Header: http.Header{"x-token": {"a"}}}, true},
		{"header several values joined", v1alpha1.PortRuleHTTP{Headers: []string{"X-A: 1,2"}}, HTTPRequest{Header: hdr("X-A", "1", "X-A", "2")}, true},
		{"header value with spaces", v1alpha1.PortRuleHTTP{Headers: []string{"X-A: a b"}}, HTTPRequest{Header: hdr("X-A", "a b")}, true},
		{"nil header map", v1alpha1.PortRuleHTTP{Headers: []string{"X-A"}}, HTTPRequest{}, false},
		// headerMatches without an action must match.
		{"headerMatch ok", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Value: "s3"}}}, HTTPRequest{Header: hdr("X-Token", "s3")}, true},
		{"headerMatch wrong", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Value: "s3"}}}, HTTPRequest{Header: hdr("X-Token", "s4")}, false},
		{"headerMatch presence", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token"}}}, HTTPRequest{Header: hdr("X-Token", "x")}, true},
		{"headerMatch LOG still matches", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Value: "s3", Mismatch: v1alpha1.MismatchLog}}}, HTTPRequest{}, true},
		// headerMatches regex (a Portcullis extension): whole-value, like path.
		{"headerMatch regex matches", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]+"}}}, HTTPRequest{Header: hdr("X-Token", "123")}, true},
		{"headerMatch regex mismatch", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]+"}}}, HTTPRequest{Header: hdr("X-Token", "12a")}, false},
		{"headerMatch regex is anchored", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]+"}}}, HTTPRequest{Header: hdr("X-Token", "a123b")}, false},
		{"headerMatch regex absent header", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]*"}}}, HTTPRequest{Header: hdr("X-Other", "1")}, false},
		{"headerMatch regex empty value", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]*"}}}, HTTPRequest{Header: hdr("X-Token", "")}, true},
		{"headerMatch regex case-insensitive name", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "x-token", Regex: "[0-9]+"}}}, HTTPRequest{Header: http.Header{"x-TOKEN": {"7"}}}, true},
		{"headerMatch regex on joined values", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]+"}}}, HTTPRequest{Header: hdr("X-Token", "1", "X-Token", "2")}, false},
		{"headerMatch regex on joined values, written for it", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Token", Regex: "[0-9]+(,[0-9]+)*"}}}, HTTPRequest{Header: hdr("X-Token", "1", "X-Token", "2")}, true},
		{"headers value stays literal beside a regex", v1alpha1.PortRuleHTTP{Headers: []string{"X-Token: [0-9]+"}}, HTTPRequest{Header: hdr("X-Token", "123")}, false},
		// serverNames.
		{"serverNames plaintext", v1alpha1.PortRuleHTTP{}, HTTPRequest{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustHTTP(t, tt.rule, nil)
			if got := r.Match(tt.req); got != tt.want {
				t.Errorf("Match(%+v) = %v, want %v", tt.req, got, tt.want)
			}
			v := HTTPRules{r}.Decide(tt.req)
			if v.Allowed != tt.want || (v.Rule == r) != tt.want {
				t.Errorf("Decide = %+v, want allowed %v", v, tt.want)
			}
		})
	}
}

func TestHTTPServerNames(t *testing.T) {
	r := mustHTTP(t, v1alpha1.PortRuleHTTP{Path: "/x"}, nil)
	sn, errs := CompileServerNames([]string{"*.example.com"}, field.NewPath("serverNames"))
	if errs != nil {
		t.Fatal(errs)
	}
	r.ServerNames = sn
	for sni, want := range map[string]bool{"a.example.com": true, "": false, "example.com": false, "a.other.com": false} {
		if got := r.Match(HTTPRequest{Path: "/x", ServerName: sni}); got != want {
			t.Errorf("SNI %q: Match = %v, want %v", sni, got, want)
		}
	}
}

func TestHTTPHeaderActions(t *testing.T) {
	secrets := mapSecrets{"default/token": "hunter2"}
	rule := func(ms ...v1alpha1.HeaderMatch) v1alpha1.PortRuleHTTP {
		return v1alpha1.PortRuleHTTP{HeaderMatches: ms}
	}
	tests := []struct {
		name    string
		rule    v1alpha1.PortRuleHTTP
		header  http.Header
		allowed bool
		actions []HeaderAction
		after   http.Header
	}{
		{"match: no action", rule(v1alpha1.HeaderMatch{Name: "X-Token", Value: "a", Mismatch: v1alpha1.MismatchReplace}),
			http.Header{"X-Token": {"a"}}, true, nil, http.Header{"X-Token": {"a"}}},
		{"LOG", rule(v1alpha1.HeaderMatch{Name: "x-token", Value: "a", Mismatch: v1alpha1.MismatchLog}),
			http.Header{"X-Token": {"b"}}, true, []HeaderAction{{Action: v1alpha1.MismatchLog, Name: "X-Token", Value: "a"}}, http.Header{"X-Token": {"b"}}},
		{"ADD", rule(v1alpha1.HeaderMatch{Name: "X-Token", Value: "a", Mismatch: v1alpha1.MismatchAdd}),
			http.Header{"X-Token": {"b"}}, true, []HeaderAction{{Action: v1alpha1.MismatchAdd, Name: "X-Token", Value: "a"}}, http.Header{"X-Token": {"b", "a"}}},
		{"DELETE wrong value", rule(v1alpha1.HeaderMatch{Name: "X-Token", Value: "a", Mismatch: v1alpha1.MismatchDelete}),
			http.Header{"X-Token": {"b"}, "x-token": {"c"}}, true, []HeaderAction{{Action: v1alpha1.MismatchDelete, Name: "X-Token"}}, http.Header{}},
		{"DELETE absent: nothing to do", rule(v1alpha1.HeaderMatch{Name: "X-Token", Value: "a", Mismatch: v1alpha1.MismatchDelete}),
			http.Header{}, true, nil, http.Header{}},
		{"REPLACE", rule(v1alpha1.HeaderMatch{Name: "X-Token", Value: "a", Mismatch: v1alpha1.MismatchReplace}),
			http.Header{"X-Token": {"b", "c"}}, true, []HeaderAction{{Action: v1alpha1.MismatchReplace, Name: "X-Token", Value: "a"}}, http.Header{"X-Token": {"a"}}},
		{"REPLACE from secret", rule(v1alpha1.HeaderMatch{Name: "Authorization", Secret: &v1alpha1.Secret{Name: "token"}, Mismatch: v1alpha1.MismatchReplace}),
			http.Header{}, true, []HeaderAction{{Action: v1alpha1.MismatchReplace, Name: "Authorization", Value: "hunter2", Secret: true}}, http.Header{"Authorization": {"hunter2"}}},
		{"secret matches", rule(v1alpha1.HeaderMatch{Name: "Authorization", Secret: &v1alpha1.Secret{Namespace: "default", Name: "token"}}),
			http.Header{"Authorization": {"hunter2"}}, true, nil, http.Header{"Authorization": {"hunter2"}}},
		{"secret mismatch fails", rule(v1alpha1.HeaderMatch{Name: "Authorization", Secret: &v1alpha1.Secret{Name: "token"}}),
			http.Header{"Authorization": {"guess"}}, false, nil, http.Header{"Authorization": {"guess"}}},
		{"regex LOG on mismatch", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchLog}),
			http.Header{"X-Token": {"abc"}}, true, []HeaderAction{{Action: v1alpha1.MismatchLog, Name: "X-Token", Regex: "[0-9]+"}}, http.Header{"X-Token": {"abc"}}},
		{"regex LOG on absent header", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchLog}),
			http.Header{}, true, []HeaderAction{{Action: v1alpha1.MismatchLog, Name: "X-Token", Regex: "[0-9]+"}}, http.Header{}},
		{"regex LOG on match: no action", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchLog}),
			http.Header{"X-Token": {"123"}}, true, nil, http.Header{"X-Token": {"123"}}},
		{"regex DELETE on mismatch", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchDelete}),
			http.Header{"X-Token": {"abc"}, "X-Other": {"1"}}, true, []HeaderAction{{Action: v1alpha1.MismatchDelete, Name: "X-Token", Regex: "[0-9]+"}}, http.Header{"X-Other": {"1"}}},
		{"regex DELETE absent: nothing to do", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchDelete}),
			http.Header{}, true, nil, http.Header{}},
		{"regex DELETE on match: kept", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchDelete}),
			http.Header{"X-Token": {"42"}}, true, nil, http.Header{"X-Token": {"42"}}},
		{"regex without action: mismatch denies", rule(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+"}),
			http.Header{"X-Token": {"abc"}}, false, nil, http.Header{"X-Token": {"abc"}}},
		{"mandatory failure drops other actions", rule(
			v1alpha1.HeaderMatch{Name: "X-A", Value: "a", Mismatch: v1alpha1.MismatchAdd},
			v1alpha1.HeaderMatch{Name: "X-B", Value: "b"}),
			http.Header{}, false, nil, http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := CompileHTTP(tt.rule, "o", DefaultNamespace(secrets, "default"), httpPath)
			if errs != nil {
				t.Fatal(errs)
			}
			v := HTTPRules{r}.Decide(HTTPRequest{Header: tt.header})
			if v.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v, want %v", v.Allowed, tt.allowed)
			}
			for i := range tt.actions {
				tt.actions[i].Origin = "o"
			}
			if len(v.Actions) != len(tt.actions) {
				t.Fatalf("Actions = %v, want %v", v.Actions, tt.actions)
			}
			for i := range tt.actions {
				if v.Actions[i] != tt.actions[i] {
					t.Errorf("Actions[%d] = %+v, want %+v", i, v.Actions[i], tt.actions[i])
				}
				v.Actions[i].Apply(tt.header)
			}
			if got, want := canonHeader(tt.header), canonHeader(tt.after); got != want {
				t.Errorf("header after actions = %s, want %s", got, want)
			}
			for _, a := range v.Actions {
				if a.Secret && strings.Contains(a.String(), a.Value) {
					t.Errorf("String() leaks the secret: %s", a)
				}
			}
		})
	}
}

func canonHeader(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String()
}

func TestHTTPDecideUnion(t *testing.T) {
	a := mustHTTP(t, v1alpha1.PortRuleHTTP{Method: "GET", Path: "/a"}, nil)
	b := mustHTTP(t, v1alpha1.PortRuleHTTP{Method: "GET", Path: "/.*", HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Env", Value: "prod", Mismatch: v1alpha1.MismatchAdd}}}, nil)
	c := mustHTTP(t, v1alpha1.PortRuleHTTP{Method: "GET", HeaderMatches: []v1alpha1.HeaderMatch{{Name: "X-Env", Value: "prod", Mismatch: v1alpha1.MismatchAdd}}}, nil)
	rs := HTTPRules{a, nil, b, c}
	v := rs.Decide(HTTPRequest{Method: "GET", Path: "/a"})
	if !v.Allowed || v.Rule != a {
		t.Fatalf("Decide = %+v, want allowed by the first rule", v)
	}
	// b and c ask for the same change: it is made once.
	if len(v.Actions) != 1 || v.Actions[0].Action != v1alpha1.MismatchAdd {
		t.Errorf("Actions = %v, want one ADD", v.Actions)
	}
	if v := rs.Decide(HTTPRequest{Method: "POST", Path: "/a"}); v.Allowed || v.Rule != nil || v.Actions != nil {
		t.Errorf("Decide(POST) = %+v, want denied", v)
	}
	if v := (HTTPRules{}).Decide(HTTPRequest{}); v.Allowed {
		t.Error("empty rule set allowed a request")
	}
}

func TestCompileHTTPErrors(t *testing.T) {
	big := "(abc|def){1000}" // about 7000 instructions
	tests := []struct {
		name    string
		rule    v1alpha1.PortRuleHTTP
		secrets SecretResolver
		field   string
		detail  string
	}{
		{"bad path regex", v1alpha1.PortRuleHTTP{Path: "["}, nil, httpPath.Child("path").String(), "invalid regular expression"},
		{"bad method regex", v1alpha1.PortRuleHTTP{Method: "(GET"}, nil, httpPath.Child("method").String(), "invalid regular expression"},
		{"regex too large", v1alpha1.PortRuleHTTP{Host: big}, nil, httpPath.Child("host").String(), "regular expression too large"},
		{"repeat too large", v1alpha1.PortRuleHTTP{Path: "(a{1000}){1000}"}, nil, httpPath.Child("path").String(), ""},
		{"header name", v1alpha1.PortRuleHTTP{Headers: []string{"Bad:Name x"}}, nil, httpPath.Child("headers").Index(0).String(), "header name"},
		{"empty header", v1alpha1.PortRuleHTTP{Headers: []string{""}}, nil, httpPath.Child("headers").Index(0).String(), ""},
		{"headerMatch name", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a:b"}}}, nil, httpPath.Child("headerMatches").Index(0).Child("name").String(), ""},
		{"mismatch unknown", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Mismatch: "DROP"}}}, nil, httpPath.Child("headerMatches").Index(0).Child("mismatch").String(), ""},
		{"ADD without value", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Mismatch: v1alpha1.MismatchAdd}}}, nil, httpPath.Child("headerMatches").Index(0).Child("value").String(), ""},
		{"secret without resolver", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Value: "x", Secret: &v1alpha1.Secret{Name: "s"}}}}, nil,
			httpPath.Child("headerMatches").Index(0).Child("secret").String(), "no secret resolver"},
		{"secret not found", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Secret: &v1alpha1.Secret{Name: "s"}}}}, mapSecrets{},
			httpPath.Child("headerMatches").Index(0).Child("secret").String(), "not found"},
		{"secret empty", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Secret: &v1alpha1.Secret{Name: "s"}}}}, mapSecrets{"/s": ""},
			httpPath.Child("headerMatches").Index(0).Child("secret").String(), "empty"},
		{"regex and value", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Regex: "[0-9]+", Value: "1"}}}, nil,
			httpPath.Child("headerMatches").Index(0).Child("regex").String(), "mutually exclusive with value and secret"},
		{"regex and secret", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Regex: "[0-9]+", Secret: &v1alpha1.Secret{Name: "s"}}}}, mapSecrets{"/s": "x"},
			httpPath.Child("headerMatches").Index(0).Child("regex").String(), "mutually exclusive with value and secret"},
		{"regex with REPLACE", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchReplace}}}, nil,
			httpPath.Child("headerMatches").Index(0).Child("mismatch").String(), "must be LOG or DELETE"},
		{"regex with ADD", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchAdd}}}, nil,
			httpPath.Child("headerMatches").Index(0).Child("mismatch").String(), "must be LOG or DELETE"},
		{"bad header regex", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Regex: "[0-9"}}}, nil,
			httpPath.Child("headerMatches").Index(0).Child("regex").String(), "invalid regular expression"},
		{"header regex too large", v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Regex: big}}}, nil,
			httpPath.Child("headerMatches").Index(0).Child("regex").String(), "regular expression too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := CompileHTTP(tt.rule, "o", tt.secrets, httpPath)
			if r != nil || len(errs) == 0 {
				t.Fatalf("CompileHTTP = %.100v, %v; want an error", r, errs)
			}
			if errs[0].Field != tt.field {
				t.Errorf("error field = %q, want %q (%v)", errs[0].Field, tt.field, errs[0])
			}
			if !strings.Contains(errs[0].Error(), tt.detail) {
				t.Errorf("error %q does not mention %q", errs[0].Error(), tt.detail)
			}
		})
	}
}

func TestCompileHTTPSecretFallback(t *testing.T) {
	// As Cilium: an unresolvable secret falls back to the inline value.
	r, errs := CompileHTTP(v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{{Name: "a", Value: "inline", Secret: &v1alpha1.Secret{Name: "gone"}}}}, "o", mapSecrets{}, httpPath)
	if errs != nil {
		t.Fatal(errs)
	}
	if !r.Match(HTTPRequest{Header: http.Header{"A": {"inline"}}}) {
		t.Error("inline fallback value does not match")
	}
}

func TestRegexProgramSizeBoundary(t *testing.T) {
	// A 1024-character literal path (the CRD's maximum) must compile.
	if _, errs := CompileHTTP(v1alpha1.PortRuleHTTP{Path: "/" + strings.Repeat("a", 1023)}, "o", nil, httpPath); errs != nil {
		t.Fatalf("max-length literal path rejected: %v", errs)
	}
	// \Q without \E must not swallow the anchors.
	r := mustHTTP(t, v1alpha1.PortRuleHTTP{Path: `\Q/a)|(.*`}, nil)
	if r.Match(HTTPRequest{Path: "/anything"}) || !r.Match(HTTPRequest{Path: "/a)|(.*"}) {
		t.Error(`\Q literal path is not matched as a whole literal`)
	}
}

// TestHTTPHeaderRegexSemanticKey: a regex and a literal value with the same
// text are different rules (merging must keep both), equal regexes are one.
func TestHTTPHeaderRegexSemanticKey(t *testing.T) {
	hm := func(m v1alpha1.HeaderMatch) *HTTPRule {
		return mustHTTP(t, v1alpha1.PortRuleHTTP{HeaderMatches: []v1alpha1.HeaderMatch{m}}, nil)
	}
	re := hm(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+"})
	lit := hm(v1alpha1.HeaderMatch{Name: "X-Token", Value: "[0-9]+"})
	if re.semanticKey() == lit.semanticKey() {
		t.Errorf("regex and literal value share the key %s", re.semanticKey())
	}
	if again := hm(v1alpha1.HeaderMatch{Name: "x-token", Regex: "[0-9]+"}); again.semanticKey() != re.semanticKey() {
		t.Errorf("equal regex rules have keys %s and %s", again.semanticKey(), re.semanticKey())
	}
	if log := hm(v1alpha1.HeaderMatch{Name: "X-Token", Regex: "[0-9]+", Mismatch: v1alpha1.MismatchLog}); log.semanticKey() == re.semanticKey() {
		t.Errorf("a LOG regex match shares the key of a mandatory one: %s", re.semanticKey())
	}
	if want := `"X-Token"~"[0-9]+"/`; !strings.Contains(re.String(), want) {
		t.Errorf("String() = %s, want it to contain %s", re, want)
	}
	a := HeaderAction{Action: v1alpha1.MismatchLog, Name: "X-Token", Regex: "[0-9]+", Origin: "o"}
	if got, want := a.String(), `LOG X-Token~"[0-9]+" (o)`; got != want {
		t.Errorf("HeaderAction.String() = %s, want %s", got, want)
	}
}
