package l7

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// MaxRegexProgramSize is the largest compiled regular expression, in RE2
// instructions (regexp/syntax.Prog), that a method, path, host or
// headerMatches regex may compile to.
//
// A regex the proxy cannot afford is a validation error on the rule that
// holds it, reported with the rule's path, never something dropped later:
// in Cilium, Envoy rejecting one oversized regex made it reject the whole
// policy update, so every policy on the node stopped applying. 5000 is far
// above any path pattern people write (a 1024-character literal path is
// about 1030 instructions) and bounds the per-request matching cost.
const MaxRegexProgramSize = 5000

// SecretResolver returns the value of a secret that a headerMatches entry
// refers to. The namespace is as written in the policy; empty means the
// policy's own namespace (see [DefaultNamespace]). An implementation also
// enforces who may read what (the secrets namespace, ReferenceGrants).
type SecretResolver interface {
	Resolve(namespace, name string) (string, error)
}

// DefaultNamespace returns a resolver that passes ns for an empty
// namespace to r. It returns nil if r is nil.
func DefaultNamespace(r SecretResolver, ns string) SecretResolver {
	if r == nil {
		return nil
	}
	return defaultNS{r: r, ns: ns}
}

type defaultNS struct {
	r  SecretResolver
	ns string
}

func (d defaultNS) Resolve(namespace, name string) (string, error) {
	if namespace == "" {
		namespace = d.ns
	}
	return d.r.Resolve(namespace, name)
}

// HTTPRequest is what an HTTP rule looks at. gRPC calls are HTTP/2
// requests with Method "POST" and Path "/package.Service/Method".
type HTTPRequest struct {
	// Method is the request method (the :method pseudo-header).
	Method string
	// Path is the request target in origin form as received, INCLUDING
	// any query string: "/v1/items?id=3". Cilium compiles a rule's path
	// into an Envoy header matcher on :path, which carries the query, and
	// this package does the same, so `path: /v1/items` does not match
	// "/v1/items?id=3" (write `/v1/items(\?.*)?` for that). The proxy
	// converts an absolute-form target to origin form before deciding and
	// decides on the path as sent (no normalization here).
	Path string
	// Host is the Host header, or :authority in HTTP/2, as sent (it may
	// carry a port).
	Host string
	// Header holds the request headers. Names are matched ASCII
	// case-insensitively even if the map's keys are not canonical; several
	// values of one header are joined with "," before comparison, as
	// Envoy does.
	Header http.Header
	// ServerName is the SNI of the TLS connection that carried the request
	// (after termination), or "" for plaintext. Rules restricted by
	// serverNames apply only when it matches.
	ServerName string
}

// HeaderAction is what the proxy must do to a request's headers because a
// headerMatches entry with a mismatch action did not match.
type HeaderAction struct {
	// Action is LOG (report only), ADD (add Name: Value, keeping other
	// values), DELETE (remove every Name header) or REPLACE (set Name to
	// Value alone).
	Action v1alpha1.MismatchAction
	// Name is the header name in canonical form.
	Name string
	// Value is the expected value; empty for a presence check and for a
	// regex match.
	Value string
	// Regex is the expression of a headerMatches regex (LOG or DELETE
	// only); empty otherwise.
	Regex string
	// Secret is true when Value came from a secret: never log it.
	Secret bool
	// Origin names the rule that asked for the action.
	Origin string
}

// Apply performs the action on h. LOG changes nothing.
func (a HeaderAction) Apply(h http.Header) {
	if h == nil {
		return
	}
	switch a.Action {
	case v1alpha1.MismatchAdd:
		h.Add(a.Name, a.Value)
	case v1alpha1.MismatchDelete:
		delHeader(h, a.Name)
	case v1alpha1.MismatchReplace:
		delHeader(h, a.Name)
		h.Set(a.Name, a.Value)
	}
}

// String describes the action, redacting secret values.
func (a HeaderAction) String() string {
	if a.Regex != "" {
		return fmt.Sprintf("%s %s~%s (%s)", a.Action, a.Name, strconv.Quote(a.Regex), a.Origin)
	}
	v := strconv.Quote(a.Value)
	if a.Secret {
		v = "[redacted]"
	}
	return fmt.Sprintf("%s %s=%s (%s)", a.Action, a.Name, v, a.Origin)
}

// HTTPVerdict is the decision on one HTTP request.
type HTTPVerdict struct {
	// Allowed is true when some rule matched.
	Allowed bool
	// Rule is the first matching rule, nil when denied.
	Rule *HTTPRule
	// Actions are the header actions of every matching rule, in rule
	// order, without duplicates; nil when denied. The proxy applies them
	// in order before forwarding.
	Actions []HeaderAction
}

// HTTPRule is one compiled HTTP rule: all its conditions must hold.
type HTTPRule struct {
	// Origin names the rule, e.g. "default/p: ingress[0].toPorts[0].rules.http[1]".
	Origin string
	// ServerNames restricts the rule to TLS connections with a matching
	// SNI; empty means every connection. Set by CompilePortRule.
	ServerNames ServerNames

	spec    v1alpha1.PortRuleHTTP
	method  *regexp.Regexp
	path    *regexp.Regexp
	host    *regexp.Regexp
	headers []headerCond
	matches []headerMatch
	// hasActions is set when some header match has a mismatch action, so
	// that Decide must look past the first matching rule.
	hasActions bool
}

// headerCond is one entry of headers: presence, or an exact value.
type headerCond struct {
	name     string
	value    string
	hasValue bool
}

// headerMatch is one entry of headerMatches with its value resolved or
// its regex compiled.
type headerMatch struct {
	name     string
	value    string
	secret   bool
	regex    *regexp.Regexp // nil unless the entry has a regex
	expr     string         // the regex as written
	mismatch v1alpha1.MismatchAction
}

// CompileHTTP compiles one HTTP rule. fld is the rule's path, e.g.
// spec.ingress[0].toPorts[0].rules.http[1]; errors name its fields.
// secrets resolves headerMatches secrets; nil makes a secret reference an
// error. A secret that cannot be resolved falls back to the inline value
// when there is one, as in Cilium, and is an error otherwise.
func CompileHTTP(r v1alpha1.PortRuleHTTP, origin string, secrets SecretResolver, fld *field.Path) (*HTTPRule, field.ErrorList) {
	var errs field.ErrorList
	rule := &HTTPRule{Origin: origin, spec: r}
	// Secret references stay in spec (for String); values never do.
	rule.spec.HeaderMatches = slices.Clone(r.HeaderMatches)
	rule.spec.Headers = slices.Clone(r.Headers)
	var err *field.Error
	if rule.method, err = compileRegex(r.Method, fld.Child("method")); err != nil {
		errs = append(errs, err)
	}
	if rule.path, err = compileRegex(r.Path, fld.Child("path")); err != nil {
		errs = append(errs, err)
	}
	if rule.host, err = compileRegex(r.Host, fld.Child("host")); err != nil {
		errs = append(errs, err)
	}
	for i, h := range r.Headers {
		p := fld.Child("headers").Index(i)
		// As Cilium: split at the first space; "Name: value" has a value,
		// "Name" is a presence check.
		name, value, hasValue := strings.Cut(h, " ")
		if hasValue {
			name = strings.TrimRight(name, ":")
		}
		if !validHeaderName(name) {
			errs = append(errs, field.Invalid(p, h, `must be "Name" or "Name: value" with a valid header name`))
			continue
		}
		rule.headers = append(rule.headers, headerCond{name: textproto.CanonicalMIMEHeaderKey(name), value: value, hasValue: hasValue})
	}
	for i, hm := range r.HeaderMatches {
		m, e := compileHeaderMatch(hm, secrets, fld.Child("headerMatches").Index(i))
		errs = append(errs, e...)
		if e == nil {
			rule.matches = append(rule.matches, m)
			rule.hasActions = rule.hasActions || m.mismatch != ""
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rule, nil
}

func compileHeaderMatch(hm v1alpha1.HeaderMatch, secrets SecretResolver, fld *field.Path) (headerMatch, field.ErrorList) {
	var errs field.ErrorList
	m := headerMatch{name: textproto.CanonicalMIMEHeaderKey(hm.Name), value: hm.Value, mismatch: hm.Mismatch}
	if !validHeaderName(hm.Name) {
		errs = append(errs, field.Invalid(fld.Child("name"), hm.Name, "must be a valid header name"))
	}
	if hm.Regex != "" {
		// A Portcullis extension (Cilium's value is a literal, and stays
		// one): it replaces value and secret, and leaves nothing for ADD
		// or REPLACE to set.
		rp := fld.Child("regex")
		switch {
		case hm.Value != "" || hm.Secret != nil:
			errs = append(errs, field.Invalid(rp, hm.Regex, "regex is mutually exclusive with value and secret"))
		case hm.Mismatch == v1alpha1.MismatchAdd || hm.Mismatch == v1alpha1.MismatchReplace:
			errs = append(errs, field.Invalid(fld.Child("mismatch"), hm.Mismatch,
				fmt.Sprintf("with regex, mismatch must be %s or %s: %s needs a value to set", v1alpha1.MismatchLog, v1alpha1.MismatchDelete, hm.Mismatch)))
		}
		rx, err := compileRegex(hm.Regex, rp)
		if err != nil {
			errs = append(errs, err)
		}
		m.regex, m.expr = rx, hm.Regex
	}
	switch hm.Mismatch {
	case "", v1alpha1.MismatchLog, v1alpha1.MismatchDelete:
	case v1alpha1.MismatchAdd, v1alpha1.MismatchReplace:
		if hm.Value == "" && hm.Secret == nil && hm.Regex == "" {
			errs = append(errs, field.Required(fld.Child("value"), fmt.Sprintf("mismatch %s needs a value or a secret", hm.Mismatch)))
		}
	default:
		errs = append(errs, field.NotSupported(fld.Child("mismatch"), hm.Mismatch,
			[]string{string(v1alpha1.MismatchLog), string(v1alpha1.MismatchAdd), string(v1alpha1.MismatchDelete), string(v1alpha1.MismatchReplace)}))
	}
	if s := hm.Secret; s != nil {
		sp := fld.Child("secret")
		ref := s.Namespace + "/" + s.Name
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(sp.Child("name"), "the secret needs a name"))
		case secrets == nil:
			errs = append(errs, field.Invalid(sp, ref, "secret references are not supported here (no secret resolver)"))
		default:
			v, err := secrets.Resolve(s.Namespace, s.Name)
			switch {
			case err != nil && hm.Value == "":
				errs = append(errs, field.Invalid(sp, ref, fmt.Sprintf("resolving secret: %v", err)))
			case err == nil && v != "":
				m.value, m.secret = v, true
			case err == nil && hm.Value == "":
				// An empty expected value would turn the match into a
				// presence check; Cilium's filter fails such a match.
				errs = append(errs, field.Invalid(sp, ref, "the secret is empty and there is no inline value"))
			}
		}
	}
	if len(errs) > 0 {
		return headerMatch{}, errs
	}
	return m, nil
}

// compileRegex compiles a method, path, host or header expression for a
// whole-value match; "" matches everything and yields nil.
func compileRegex(expr string, fld *field.Path) (*regexp.Regexp, *field.Error) {
	if expr == "" {
		return nil, nil
	}
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, field.Invalid(fld, expr, fmt.Sprintf("invalid regular expression: %v", err))
	}
	// Anchor the parsed tree, not the string: "^(?:" + expr + ")$" would
	// let a "\Q" without "\E" in expr swallow the closing anchor.
	anchored := &syntax.Regexp{Op: syntax.OpConcat, Flags: syntax.Perl, Sub: []*syntax.Regexp{
		{Op: syntax.OpBeginText, Flags: syntax.Perl},
		re,
		{Op: syntax.OpEndText, Flags: syntax.Perl},
	}}
	prog, err := syntax.Compile(anchored.Simplify())
	if err != nil {
		return nil, field.Invalid(fld, expr, fmt.Sprintf("invalid regular expression: %v", err))
	}
	if n := len(prog.Inst); n > MaxRegexProgramSize {
		return nil, field.Invalid(fld, expr, fmt.Sprintf("regular expression too large (%d instructions, limit %d)", n, MaxRegexProgramSize))
	}
	rx, err := regexp.Compile(anchored.String())
	if err != nil {
		return nil, field.Invalid(fld, expr, fmt.Sprintf("invalid regular expression: %v", err))
	}
	return rx, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// headerValue returns the values of name in h joined with ",", looking at
// every key that equals name ASCII case-insensitively, in sorted key order
// so the result does not depend on map order.
func headerValue(h http.Header, name string) (string, bool) {
	var keys []string
	for k := range h {
		if asciiEqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	slices.Sort(keys)
	var vals []string
	for _, k := range keys {
		vals = append(vals, h[k]...)
	}
	return strings.Join(vals, ","), true
}

func delHeader(h http.Header, name string) {
	for k := range h {
		if asciiEqualFold(k, name) {
			delete(h, k)
		}
	}
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

// match decides the rule alone and returns the header actions it asks for.
func (r *HTTPRule) match(req *HTTPRequest) ([]HeaderAction, bool) {
	if !r.ServerNames.admits(req.ServerName) {
		return nil, false
	}
	if (r.method != nil && !r.method.MatchString(req.Method)) ||
		(r.path != nil && !r.path.MatchString(req.Path)) ||
		(r.host != nil && !r.host.MatchString(req.Host)) {
		return nil, false
	}
	for _, c := range r.headers {
		v, ok := headerValue(req.Header, c.name)
		if !ok || (c.hasValue && v != c.value) {
			return nil, false
		}
	}
	var actions []HeaderAction
	for _, m := range r.matches {
		v, present := headerValue(req.Header, m.name)
		var ok bool
		switch {
		case m.regex != nil:
			ok = present && m.regex.MatchString(v)
		case m.value == "":
			ok = present
		default:
			// Constant time: the value may be a secret.
			ok = present && subtle.ConstantTimeCompare([]byte(v), []byte(m.value)) == 1
		}
		if ok {
			continue
		}
		a := HeaderAction{Action: m.mismatch, Name: m.name, Value: m.value, Regex: m.expr, Secret: m.secret, Origin: r.Origin}
		switch m.mismatch {
		case "":
			return nil, false
		case v1alpha1.MismatchDelete:
			// As Cilium: only a header present with a wrong value is
			// removed; a failed presence check has nothing to delete.
			if (m.value == "" && m.regex == nil) || !present {
				continue
			}
			a.Value = ""
		}
		actions = append(actions, a)
	}
	return actions, true
}

// Match reports whether the rule alone allows req; header actions are
// ignored.
func (r *HTTPRule) Match(req HTTPRequest) bool {
	if r == nil {
		return false
	}
	_, ok := r.match(&req)
	return ok
}

// Spec returns the rule as written (secret references, never their values).
func (r *HTTPRule) Spec() v1alpha1.PortRuleHTTP { return r.spec }

// String describes the rule and its origin; secret values appear only as
// a hash.
func (r *HTTPRule) String() string { return r.semanticKey() + " origin=" + quote(r.Origin) }

// semanticKey is a canonical description of what the rule matches: equal
// keys mean equal behaviour.
func (r *HTTPRule) semanticKey() string {
	var b strings.Builder
	b.WriteString("http{")
	fmt.Fprintf(&b, "method=%s path=%s host=%s", quote(r.spec.Method), quote(r.spec.Path), quote(r.spec.Host))
	if len(r.headers) > 0 {
		hs := make([]string, len(r.headers))
		for i, h := range r.headers {
			hs[i] = quote(h.name)
			if h.hasValue {
				hs[i] += "=" + quote(h.value)
			}
		}
		slices.Sort(hs) // a conjunction: order does not matter
		b.WriteString(" headers=[" + strings.Join(hs, ",") + "]")
	}
	if len(r.matches) > 0 {
		ms := make([]string, len(r.matches))
		for i, m := range r.matches {
			v := "=" + quote(m.value)
			switch {
			case m.regex != nil:
				v = "~" + quote(m.expr)
			case m.secret:
				sum := sha256.Sum256([]byte(m.value))
				v = "=sha256:" + hex.EncodeToString(sum[:])
			}
			ms[i] = fmt.Sprintf("%s%s/%s", quote(m.name), v, m.mismatch)
		}
		// Kept in order: actions are applied in order.
		b.WriteString(" headerMatches=[" + strings.Join(ms, ",") + "]")
	}
	if len(r.ServerNames) > 0 {
		b.WriteString(" serverNames=" + r.ServerNames.String())
	}
	b.WriteString("}")
	return b.String()
}

// HTTPRules is a union of HTTP rules.
type HTTPRules []*HTTPRule

// Decide decides req: it is allowed iff some rule matches. Every rule is
// evaluated against the request as received, and the actions of every
// matching rule are returned. This differs from Cilium's filter in two
// corner cases, on purpose: there, a rule that fails a mandatory header
// match still applies its other header actions, and later rules see the
// headers as modified by earlier ones. Nil rules are skipped.
func (rs HTTPRules) Decide(req HTTPRequest) HTTPVerdict {
	var v HTTPVerdict
	for _, r := range rs {
		if r == nil || (v.Allowed && !r.hasActions) {
			continue
		}
		actions, ok := r.match(&req)
		if !ok {
			continue
		}
		if !v.Allowed {
			v.Allowed, v.Rule = true, r
		}
		for _, a := range actions {
			// Two rules asking for the same change make one change
			// (Cilium's second rule would see the header already fixed).
			if !slices.ContainsFunc(v.Actions, func(b HeaderAction) bool {
				return a.Action == b.Action && a.Name == b.Name && a.Value == b.Value && a.Regex == b.Regex
			}) {
				v.Actions = append(v.Actions, a)
			}
		}
	}
	return v
}

func quote(s string) string { return strconv.Quote(s) }
