package l7

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Parser is the L7 protocol a proxy parses on a redirected port.
type Parser uint8

// The parsers. ParserNone means no L7 parsing: the connection is allowed
// or refused as a whole (possibly by TLS server name).
const (
	ParserNone Parser = iota
	ParserHTTP
	ParserKafka
	ParserDNS
)

// String returns "none", "http", "kafka" or "dns".
func (p Parser) String() string {
	switch p {
	case ParserNone:
		return "none"
	case ParserHTTP:
		return "http"
	case ParserKafka:
		return "kafka"
	case ParserDNS:
		return "dns"
	}
	return fmt.Sprintf("parser(%d)", uint8(p))
}

// Errors returned by Merge, wrapped with details.
var (
	// ErrParserConflict: two policies for the same port and peer need
	// different parsers (HTTP and Kafka, say). Cilium rejects this too.
	ErrParserConflict = errors.New("conflicting L7 parsers")
	// ErrTLSConflict: two policies name different TLS contexts.
	ErrTLSConflict = errors.New("conflicting TLS contexts")
	// ErrServerNamesNeedTermination: a rule restricted by serverNames
	// would have to share a port with L7 rules without TLS termination, so
	// its TLS traffic could be neither passed through nor parsed.
	ErrServerNamesNeedTermination = errors.New("serverNames with L7 rules need terminatingTLS")
	// ErrDNSWithTLS: DNS rules cannot be combined with TLS interception or
	// serverNames.
	ErrDNSWithTLS = errors.New("DNS rules cannot be combined with TLS or serverNames")
)

// TLSContextRef points at TLS material: a secret and the keys in it.
// An empty namespace has been defaulted by CompilePortRule when it was
// given a namespace.
type TLSContextRef struct {
	Namespace   string
	Name        string
	TrustedCA   string
	Certificate string
	PrivateKey  string
}

// String returns "namespace/name{trustedCA=...,certificate=...,privateKey=...}".
func (t *TLSContextRef) String() string {
	if t == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s/%s{trustedCA=%s,certificate=%s,privateKey=%s}",
		t.Namespace, t.Name, quote(t.TrustedCA), quote(t.Certificate), quote(t.PrivateKey))
}

// ConnRule allows whole connections: it stands for a port rule without L7
// rules, restricted only by its server names, if any.
type ConnRule struct {
	// Origin names the port rule, e.g. "default/p: egress[0].toPorts[0]".
	Origin string
	// ServerNames restricts the rule to TLS connections whose SNI
	// matches; empty means every connection.
	ServerNames ServerNames
}

// String describes the rule and its origin.
func (c *ConnRule) String() string { return c.semanticKey() + " origin=" + quote(c.Origin) }

func (c *ConnRule) semanticKey() string {
	if len(c.ServerNames) == 0 {
		return "conn{}"
	}
	return "conn{serverNames=" + c.ServerNames.String() + "}"
}

// Policy is the L7 policy of one redirect: one endpoint, direction, peer
// and port. The engine attaches it to the "redirect to proxy" map entry;
// the proxy for Parser decides requests with the matching rule set.
//
// Exactly the rule set of Parser is used: HTTP for ParserHTTP, Kafka for
// ParserKafka, DNS for ParserDNS, Conn for ParserNone. Every rule may be
// restricted by server names (DNS rules never are); the connection-level
// check is [Policy.AllowsServerName].
//
// A nil *Policy means "no L7 policy": every connection and request is
// allowed and nothing needs a proxy. Policies are values: Merge returns a
// new one and never changes its arguments.
type Policy struct {
	Parser Parser
	HTTP   HTTPRules
	Kafka  KafkaRules
	DNS    DNSRules
	Conn   []*ConnRule
	// TerminatingTLS is the certificate presented to the client when the
	// proxy intercepts TLS; OriginatingTLS the trust used towards the
	// server. Nil means none.
	TerminatingTLS *TLSContextRef
	OriginatingTLS *TLSContextRef
}

// AllowAll returns the policy of an L4-only allow: one unrestricted
// ConnRule. Merging it into a policy with L7 rules keeps that policy's
// parser and adds a rule that matches everything, as Cilium does.
func AllowAll(origin string) *Policy {
	return &Policy{Conn: []*ConnRule{{Origin: origin}}}
}

// CompilePortRule compiles the L7 parts of one toPorts entry: its
// serverNames, terminatingTLS, originatingTLS and rules. origin names the
// port rule ("default/p: ingress[0].toPorts[0]"); each compiled rule's
// Origin appends its place, e.g. ".rules.http[1]". namespace is the
// policy's namespace: secret references without one get it ("" for
// cluster-scoped policies leaves them as written). fld is the port rule's
// path.
//
// It returns nil when the port rule has no L7 part at all (an L4-only
// allow). Besides the per-rule checks it enforces, as Cilium does: one
// protocol per port rule; serverNames together with HTTP or Kafka rules
// need terminatingTLS (the rules cannot see into TLS otherwise); DNS rules
// take neither TLS nor serverNames.
func CompilePortRule(pr v1alpha1.PortRule, origin, namespace string, secrets SecretResolver, fld *field.Path) (*Policy, field.ErrorList) {
	var errs field.ErrorList
	var rules v1alpha1.L7Rules
	if pr.Rules != nil {
		rules = *pr.Rules
	}
	if len(pr.ServerNames) == 0 && pr.TerminatingTLS == nil && pr.OriginatingTLS == nil &&
		len(rules.HTTP) == 0 && len(rules.Kafka) == 0 && len(rules.DNS) == 0 {
		return nil, nil
	}
	sn, e := CompileServerNames(pr.ServerNames, fld.Child("serverNames"))
	errs = append(errs, e...)
	p := &Policy{}
	var tlsErrs field.ErrorList
	p.TerminatingTLS, e = compileTLSContext(pr.TerminatingTLS, namespace, fld.Child("terminatingTLS"))
	tlsErrs = append(tlsErrs, e...)
	p.OriginatingTLS, e = compileTLSContext(pr.OriginatingTLS, namespace, fld.Child("originatingTLS"))
	tlsErrs = append(tlsErrs, e...)
	errs = append(errs, tlsErrs...)

	rf := fld.Child("rules")
	n := 0
	for _, l := range []int{len(rules.HTTP), len(rules.Kafka), len(rules.DNS)} {
		if l > 0 {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, field.Invalid(rf, "", "only one L7 protocol (http, kafka or dns) per port rule"))
		return nil, errs
	}
	secrets = DefaultNamespace(secrets, namespace)
	switch {
	case len(rules.HTTP) > 0:
		p.Parser = ParserHTTP
		for i, r := range rules.HTTP {
			hr, e := CompileHTTP(r, fmt.Sprintf("%s.rules.http[%d]", origin, i), secrets, rf.Child("http").Index(i))
			errs = append(errs, e...)
			if hr != nil {
				hr.ServerNames = sn
				p.HTTP = append(p.HTTP, hr)
			}
		}
	case len(rules.Kafka) > 0:
		p.Parser = ParserKafka
		for i, r := range rules.Kafka {
			kr, e := CompileKafka(r, fmt.Sprintf("%s.rules.kafka[%d]", origin, i), rf.Child("kafka").Index(i))
			errs = append(errs, e...)
			if kr != nil {
				kr.ServerNames = sn
				p.Kafka = append(p.Kafka, kr)
			}
		}
	case len(rules.DNS) > 0:
		p.Parser = ParserDNS
		for i, r := range rules.DNS {
			dr, e := CompileDNS(r, fmt.Sprintf("%s.rules.dns[%d]", origin, i), rf.Child("dns").Index(i))
			errs = append(errs, e...)
			if dr != nil {
				p.DNS = append(p.DNS, dr)
			}
		}
		if len(pr.ServerNames) > 0 {
			errs = append(errs, field.Invalid(fld.Child("serverNames"), pr.ServerNames, "DNS rules cannot be combined with serverNames"))
		}
		if pr.TerminatingTLS != nil || pr.OriginatingTLS != nil {
			errs = append(errs, field.Invalid(rf.Child("dns"), "", "DNS rules cannot be combined with terminatingTLS or originatingTLS"))
		}
	default:
		p.Conn = []*ConnRule{{Origin: origin, ServerNames: sn}}
	}
	if (p.Parser == ParserHTTP || p.Parser == ParserKafka) && len(pr.ServerNames) > 0 && pr.TerminatingTLS == nil {
		errs = append(errs, field.Required(fld.Child("terminatingTLS"), "serverNames with L7 rules need terminatingTLS"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.normalize()
	return p, nil
}

func compileTLSContext(t *v1alpha1.TLSContext, namespace string, fld *field.Path) (*TLSContextRef, field.ErrorList) {
	if t == nil {
		return nil, nil
	}
	if t.Secret == nil || t.Secret.Name == "" {
		return nil, field.ErrorList{field.Required(fld.Child("secret", "name"), "a TLS context needs a secret")}
	}
	ns := t.Secret.Namespace
	if ns == "" {
		ns = namespace
	}
	return &TLSContextRef{Namespace: ns, Name: t.Secret.Name, TrustedCA: t.TrustedCA, Certificate: t.Certificate, PrivateKey: t.PrivateKey}, nil
}

// Merge returns the union of two policies for the same port and peer: a
// connection or request is allowed by the result iff it is allowed by a
// or by b. A nil argument is the L4-only allow, AllowAll(""); Merge(nil,
// nil) is nil.
//
// Parsers: ParserNone merges into any parser; its ConnRules become rules
// of that parser that match everything (keeping their origins and server
// names). Two different L7 parsers are an error (ErrParserConflict). TLS
// contexts: nil merges with anything; two different ones are an error
// (ErrTLSConflict).
//
// Server names stay with the rules they came from: a rule with serverNames
// applies only to TLS connections with those names, and the rules of the
// other policy are not affected by them. So merging "SNI a.com: GET /x"
// with "no serverNames: GET /y" allows GET /y on every connection and
// GET /x only on a.com. (Cilium instead unions the serverNames of both
// and applies all rules to all of them, which both allows GET /x
// elsewhere and refuses non-TLS GET /y; the per-rule form is the exact
// union.) A ConnRule with serverNames that would become an L7 rule on a
// port without terminatingTLS is an error (ErrServerNamesNeedTermination),
// as in Cilium: its TLS could then be neither passed through nor parsed.
func Merge(a, b *Policy) (*Policy, error) {
	if a == nil && b == nil {
		return nil, nil
	}
	if a == nil {
		a = AllowAll("")
	}
	if b == nil {
		b = AllowAll("")
	}
	out := &Policy{}
	switch {
	case a.Parser == b.Parser || b.Parser == ParserNone:
		out.Parser = a.Parser
	case a.Parser == ParserNone:
		out.Parser = b.Parser
	default:
		return nil, fmt.Errorf("%w: %s and %s", ErrParserConflict, a.Parser, b.Parser)
	}
	var err error
	if out.TerminatingTLS, err = mergeTLS(a.TerminatingTLS, b.TerminatingTLS, "terminatingTLS"); err != nil {
		return nil, err
	}
	if out.OriginatingTLS, err = mergeTLS(a.OriginatingTLS, b.OriginatingTLS, "originatingTLS"); err != nil {
		return nil, err
	}
	for _, p := range []*Policy{a, b} {
		out.HTTP = append(out.HTTP, p.HTTP...)
		out.Kafka = append(out.Kafka, p.Kafka...)
		out.DNS = append(out.DNS, p.DNS...)
		for _, c := range p.Conn {
			if c == nil {
				continue
			}
			if out.Parser != ParserNone && len(c.ServerNames) > 0 && out.TerminatingTLS == nil {
				return nil, fmt.Errorf("%w: %s would need %s parsing", ErrServerNamesNeedTermination, c, out.Parser)
			}
			switch out.Parser {
			case ParserNone:
				out.Conn = append(out.Conn, c)
			case ParserHTTP:
				out.HTTP = append(out.HTTP, &HTTPRule{Origin: c.Origin, ServerNames: c.ServerNames})
			case ParserKafka:
				out.Kafka = append(out.Kafka, &KafkaRule{Origin: c.Origin, ServerNames: c.ServerNames, anyVersion: true})
			case ParserDNS:
				out.DNS = append(out.DNS, matchAllDNS(c.Origin))
			}
		}
	}
	if out.Parser == ParserDNS && (out.TerminatingTLS != nil || out.OriginatingTLS != nil) {
		return nil, fmt.Errorf("%w: terminatingTLS %s, originatingTLS %s", ErrDNSWithTLS, out.TerminatingTLS, out.OriginatingTLS)
	}
	out.normalize()
	return out, nil
}

func mergeTLS(a, b *TLSContextRef, what string) (*TLSContextRef, error) {
	switch {
	case a == nil:
		return b, nil
	case b == nil || *a == *b:
		return a, nil
	}
	return nil, fmt.Errorf("%w: %s %s and %s", ErrTLSConflict, what, a, b)
}

// normalize sorts the rules canonically and drops exact duplicates (same
// behaviour and same origin), so that equal unions have equal Keys however
// they were merged. Nil rules are dropped.
func (p *Policy) normalize() {
	p.HTTP = sortRules(p.HTTP, (*HTTPRule).semanticKey, func(r *HTTPRule) string { return r.Origin })
	p.Kafka = sortRules(p.Kafka, (*KafkaRule).semanticKey, func(r *KafkaRule) string { return r.Origin })
	p.DNS = sortRules(p.DNS, (*DNSRule).semanticKey, func(r *DNSRule) string { return r.Origin })
	p.Conn = sortRules(p.Conn, (*ConnRule).semanticKey, func(r *ConnRule) string { return r.Origin })
}

func sortRules[R any](rs []*R, key, origin func(*R) string) []*R {
	type keyed struct {
		r         *R
		k, origin string
	}
	ks := make([]keyed, 0, len(rs))
	for _, r := range rs {
		if r != nil {
			ks = append(ks, keyed{r, key(r), origin(r)})
		}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		return cmp.Or(strings.Compare(a.k, b.k), strings.Compare(a.origin, b.origin))
	})
	ks = slices.CompactFunc(ks, func(a, b keyed) bool { return a.k == b.k && a.origin == b.origin })
	if len(ks) == 0 {
		return nil
	}
	out := make([]*R, len(ks))
	for i, k := range ks {
		out[i] = k.r
	}
	return out
}

// AllowsServerName reports whether some rule of the policy applies to a
// connection with server name sni ("" for no TLS or no SNI). The TLS
// layer refuses a connection for which it is false. A nil policy allows
// everything.
func (p *Policy) AllowsServerName(sni string) bool {
	if p == nil || len(p.DNS) > 0 {
		return true
	}
	for _, r := range p.HTTP {
		if r != nil && r.ServerNames.admits(sni) {
			return true
		}
	}
	for _, r := range p.Kafka {
		if r != nil && r.ServerNames.admits(sni) {
			return true
		}
	}
	for _, r := range p.Conn {
		if r != nil && r.ServerNames.admits(sni) {
			return true
		}
	}
	return false
}

// DecideConn decides a connection on a ParserNone policy by its server
// name and returns the first rule that allows it. For other parsers use
// the rule set's Decide per request.
func (p *Policy) DecideConn(sni string) (allowed bool, rule *ConnRule) {
	if p == nil {
		return true, nil
	}
	for _, r := range p.Conn {
		if r != nil && r.ServerNames.admits(sni) {
			return true, r
		}
	}
	return false, nil
}

// NeedsProxy reports whether traffic under p must go through the proxy:
// false for nil and for a policy of unrestricted ConnRules only (an
// L4-only allow).
func (p *Policy) NeedsProxy() bool {
	if p == nil {
		return false
	}
	if p.Parser != ParserNone || p.TerminatingTLS != nil || p.OriginatingTLS != nil {
		return true
	}
	return !slices.ContainsFunc(p.Conn, func(c *ConnRule) bool { return c != nil && len(c.ServerNames) == 0 })
}

// Key returns a canonical description of the policy, origins included.
// Equal keys mean the same verdicts and the same rules named in them, so
// the engine can share one entry between equal policies. Secret values
// appear only as SHA-256 hashes. A nil policy's key is "".
func (p *Policy) Key() string {
	if p == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("parser=" + p.Parser.String())
	if p.TerminatingTLS != nil {
		b.WriteString(" terminatingTLS=" + p.TerminatingTLS.String())
	}
	if p.OriginatingTLS != nil {
		b.WriteString(" originatingTLS=" + p.OriginatingTLS.String())
	}
	// Sort a copy: a Policy built by hand may not be normalized.
	q := *p
	q.normalize()
	for _, r := range q.HTTP {
		b.WriteString("; " + r.String())
	}
	for _, r := range q.Kafka {
		b.WriteString("; " + r.String())
	}
	for _, r := range q.DNS {
		b.WriteString("; " + r.String())
	}
	for _, r := range q.Conn {
		b.WriteString("; " + r.String())
	}
	return b.String()
}

// String returns Key().
func (p *Policy) String() string { return p.Key() }

// Equal reports whether two policies have the same Key.
func Equal(a, b *Policy) bool { return a.Key() == b.Key() }
