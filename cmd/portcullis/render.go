package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
)

// textIndent is the width of the label column of the text output.
const textIndent = 20

// renderText renders a trace for humans. The layout is stable (golden
// tested): the flow, "Egress of the source", "Ingress of the destination",
// then exactly one last line "Final verdict: V".
func renderText(in *traceInput, tr *policy.TraceResult) []byte {
	var b bytes.Buffer
	field := func(indent int, name, value string) {
		pad := textIndent - indent - len(name) - 1
		if pad < 1 {
			pad = 1
		}
		fmt.Fprintf(&b, "%s%s:%s%s\n", strings.Repeat(" ", indent), name, strings.Repeat(" ", pad), value)
	}
	list := func(indent int, name string, values []string) {
		if len(values) == 0 {
			field(indent, name, "none")
			return
		}
		field(indent, name, values[0])
		for _, v := range values[1:] {
			fmt.Fprintf(&b, "%s%s\n", strings.Repeat(" ", textIndent), v)
		}
	}
	peer := func(name string, p peerSpec, id *policy.Identity) {
		field(0, name, p.Kind+" "+p.Value)
		field(2, "Identity", strconv.FormatUint(uint64(id.ID), 10))
		list(2, "Labels", identityLabels(id))
		if len(id.Prefixes) > 0 {
			list(2, "Prefixes", prefixes(id))
		}
	}

	peer("Source", in.src, tr.Src)
	peer("Destination", in.dst, tr.Dst)
	port := fmt.Sprintf("%d/%s", in.req.Port, policy.ProtoName(in.req.Proto))
	if !policy.HasPorts(in.req.Proto) {
		port = policy.ProtoName(in.req.Proto) + " (no ports)"
	}
	field(0, "Port", port)
	list(0, "Request", describeRequest(in.req))
	audit := "off"
	if in.audit {
		audit = "on"
	}
	field(0, "Mode", fmt.Sprintf("%s, global audit %s", in.mode, audit))

	for _, s := range []struct {
		title string
		side  *policy.TraceSide
	}{
		{"Egress of the source", &tr.Egress},
		{"Ingress of the destination", &tr.Ingress},
	} {
		side := s.side
		fmt.Fprintf(&b, "\n%s\n", s.title)
		if !side.Applies {
			b.WriteString("  SKIPPED: not a local endpoint\n")
			continue
		}
		d := &side.Decision
		field(2, "Local endpoint", "yes")
		list(2, "Selected by", keyStrings(side.SelectedBy))
		field(2, "Default deny", yesNo(side.Enforced))
		if side.Audit {
			field(2, "Audit mode", "on")
		}
		if d.PassedBy != nil {
			field(2, "Passed by", d.PassedBy.String())
		}
		field(2, "L4 decision", fmt.Sprintf("%s (%s tier)", l4Words(d.Verdict), d.Tier))
		if refs := ruleRefs(d); len(refs) > 0 {
			list(2, "Decided by", refs)
		}
		field(2, "Reason", d.Reason)
		if d.Verdict == policy.Redirect {
			parser := "none"
			if d.L7 != nil {
				parser = d.L7.Parser.String()
			}
			if side.L7 == nil {
				field(2, "L7 parser", parser)
				field(2, "L7 request", "not given: the L7 rules apply per request, the connection is allowed at L4 (trace a request with "+requestFlag(d.L7)+")")
			} else {
				v := side.L7
				field(2, "L7 parser", v.Parser)
				field(2, "L7 verdict", allowedWord(v.Allowed))
				if v.Rule != "" {
					field(2, "L7 rule", v.Rule)
				}
				field(2, "L7 reason", v.Reason)
				if len(v.Actions) > 0 {
					list(2, "Header actions", v.Actions)
				}
			}
		}
		field(2, "Verdict", sideVerdictWords(side))
	}
	fmt.Fprintf(&b, "\nFinal verdict: %s\n", tr.Verdict)
	return b.Bytes()
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

func allowedWord(v bool) string {
	if v {
		return "allowed"
	}
	return "denied"
}

// l4Words names an L4 verdict for the text output.
func l4Words(v policy.Verdict) string {
	if v == policy.Redirect {
		return "redirect to proxy"
	}
	return v.String()
}

// sideVerdictWords is a side's verdict, explained for AUDITED.
func sideVerdictWords(s *policy.TraceSide) string {
	if s.Verdict == policy.VerdictAudited {
		return s.Verdict + " (denied, but allowed in audit mode)"
	}
	return s.Verdict
}

// requestFlag names the flag that gives a request for a parser.
func requestFlag(p *l7.Policy) string {
	if p != nil {
		switch p.Parser {
		case l7.ParserHTTP:
			return "--http"
		case l7.ParserKafka:
			return "--kafka"
		case l7.ParserDNS:
			return "--dns"
		}
	}
	return "--sni"
}

// identityLabels are an identity's labels, sorted, as source:key=value.
func identityLabels(id *policy.Identity) []string {
	ls := id.Labels.Sorted()
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	return out
}

func prefixes(id *policy.Identity) []string {
	out := make([]string, len(id.Prefixes))
	for i, p := range id.Prefixes {
		out[i] = p.String()
	}
	return out
}

func keyStrings(keys []policy.PolicyKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.String()
	}
	return out
}

// ruleRefs are the rules behind a decision: the deciding rule first, then
// the other contributing rules.
func ruleRefs(d *policy.Decision) []string {
	out := []string{}
	seen := map[policy.RuleRef]bool{}
	add := func(r policy.RuleRef) {
		if r == (policy.RuleRef{}) || seen[r] {
			return
		}
		seen[r] = true
		out = append(out, r.String())
	}
	add(d.Rule)
	for _, r := range d.Rules {
		add(r)
	}
	return out
}

// policyNames are the policies behind a decision's rules, in order.
func policyNames(d *policy.Decision) []string {
	out := []string{}
	seen := map[policy.PolicyKey]bool{}
	for _, r := range append([]policy.RuleRef{d.Rule}, d.Rules...) {
		if r == (policy.RuleRef{}) || seen[r.Policy] {
			continue
		}
		seen[r.Policy] = true
		out = append(out, r.Policy.String())
	}
	return out
}

// describeRequest describes the L7 request for the text output, one line
// per item.
func describeRequest(req policy.TraceRequest) []string {
	var out []string
	if h := req.HTTP; h != nil {
		out = append(out, fmt.Sprintf("HTTP %s %s", h.Method, h.Path))
		if h.Host != "" {
			out = append(out, "Host: "+h.Host)
		}
		names := make([]string, 0, len(h.Header))
		for n := range h.Header {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			for _, v := range h.Header[n] {
				out = append(out, n+": "+v)
			}
		}
	}
	if k := req.Kafka; k != nil {
		topics := "no topics"
		if len(k.Topics) > 0 {
			topics = plural(len(k.Topics), "topic ", "topics ") + strings.Join(k.Topics, ", ")
		}
		out = append(out, fmt.Sprintf("Kafka %s (API key %d, version %d), %s, client ID %q",
			l7.KafkaAPIKeyName(k.APIKey), k.APIKey, k.APIVersion, topics, k.ClientID))
	}
	if req.DNS != "" {
		out = append(out, "DNS lookup of "+req.DNS)
	}
	if req.SNI != "" {
		out = append(out, "TLS server name "+req.SNI)
	}
	if len(out) == 0 {
		out = append(out, "none (connection only)")
	}
	return out
}

// traceJSON is the -o json output. Its fields are part of the CLI's
// contract: add fields, never rename or remove them.
type traceJSON struct {
	// Verdict is ALLOWED, DENIED or AUDITED.
	Verdict     string       `json:"verdict"`
	Source      peerJSON     `json:"source"`
	Destination peerJSON     `json:"destination"`
	Port        uint16       `json:"port"`
	Protocol    string       `json:"protocol"`
	Request     *requestJSON `json:"request,omitempty"`
	Mode        string       `json:"mode"`
	Audit       bool         `json:"audit"`
	Egress      sideJSON     `json:"egress"`
	Ingress     sideJSON     `json:"ingress"`
}

// peerJSON is one side of the flow.
type peerJSON struct {
	// Kind is how it was given: pod (labels), ip or entity.
	Kind     string   `json:"kind"`
	Value    string   `json:"value"`
	Identity uint32   `json:"identity"`
	Labels   []string `json:"labels"`
	Prefixes []string `json:"prefixes,omitempty"`
}

// requestJSON is the L7 request; the fields not given are omitted.
type requestJSON struct {
	HTTP  *httpJSON  `json:"http,omitempty"`
	Kafka *kafkaJSON `json:"kafka,omitempty"`
	DNS   string     `json:"dns,omitempty"`
	SNI   string     `json:"sni,omitempty"`
}

type httpJSON struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Host    string              `json:"host,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
}

type kafkaJSON struct {
	APIKey     int16    `json:"apiKey"`
	APIKeyName string   `json:"apiKeyName"`
	APIVersion int16    `json:"apiVersion"`
	ClientID   string   `json:"clientID"`
	Topics     []string `json:"topics"`
}

// sideJSON is the egress of the source or the ingress of the destination.
// When Applies is false (not a local endpoint) the verdict is SKIPPED and
// the decision fields are empty.
type sideJSON struct {
	Applies bool `json:"applies"`
	// Verdict is ALLOWED, DENIED, AUDITED or SKIPPED.
	Verdict string `json:"verdict"`
	// L4 is allow, deny or redirect (to the proxy).
	L4 string `json:"l4"`
	// Tier is admin, namespace, baseline or default (the mode decided).
	Tier string `json:"tier"`
	// Rule is the deciding rule; empty for a default.
	Rule string `json:"rule"`
	// PassedBy is the admin Pass rule that handed the flow to the
	// namespace tier, if any.
	PassedBy string `json:"passedBy,omitempty"`
	// Rules are all contributing rules; Policies the policies behind them.
	Rules       []string `json:"rules"`
	Policies    []string `json:"policies"`
	SelectedBy  []string `json:"selectedBy"`
	Enforced    bool     `json:"enforced"`
	DefaultDeny bool     `json:"defaultDeny"`
	Audit       bool     `json:"audit"`
	Reason      string   `json:"reason"`
	// Parser is the L7 parser of a redirect; empty otherwise.
	Parser string `json:"parser,omitempty"`
	// L7 is the verdict of the L7 request under a redirect, when one was
	// given.
	L7 *l7JSON `json:"l7,omitempty"`
}

type l7JSON struct {
	Parser  string   `json:"parser"`
	Allowed bool     `json:"allowed"`
	Rule    string   `json:"rule"`
	Reason  string   `json:"reason"`
	Actions []string `json:"actions"`
}

// renderJSON renders a trace as one indented JSON object (traceJSON).
func renderJSON(in *traceInput, tr *policy.TraceResult) ([]byte, error) {
	out := traceJSON{
		Verdict:     tr.Verdict,
		Source:      peerToJSON(in.src, tr.Src),
		Destination: peerToJSON(in.dst, tr.Dst),
		Port:        in.req.Port,
		Protocol:    policy.ProtoName(in.req.Proto),
		Request:     requestToJSON(in.req),
		Mode:        string(in.mode),
		Audit:       in.audit,
		Egress:      sideToJSON(&tr.Egress),
		Ingress:     sideToJSON(&tr.Ingress),
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return append(b, '\n'), nil
}

func peerToJSON(p peerSpec, id *policy.Identity) peerJSON {
	return peerJSON{Kind: p.Kind, Value: p.Value, Identity: uint32(id.ID), Labels: identityLabels(id), Prefixes: prefixes(id)}
}

func requestToJSON(req policy.TraceRequest) *requestJSON {
	if req.HTTP == nil && req.Kafka == nil && req.DNS == "" && req.SNI == "" {
		return nil
	}
	out := &requestJSON{DNS: req.DNS, SNI: req.SNI}
	if h := req.HTTP; h != nil {
		out.HTTP = &httpJSON{Method: h.Method, Path: h.Path, Host: h.Host}
		if len(h.Header) > 0 {
			out.HTTP.Headers = h.Header
		}
	}
	if k := req.Kafka; k != nil {
		out.Kafka = &kafkaJSON{APIKey: k.APIKey, APIKeyName: l7.KafkaAPIKeyName(k.APIKey), APIVersion: k.APIVersion, ClientID: k.ClientID, Topics: k.Topics}
		if out.Kafka.Topics == nil {
			out.Kafka.Topics = []string{}
		}
	}
	return out
}

func sideToJSON(s *policy.TraceSide) sideJSON {
	out := sideJSON{
		Applies:    s.Applies,
		Verdict:    s.Verdict,
		Rules:      []string{},
		Policies:   []string{},
		SelectedBy: []string{},
	}
	if !s.Applies {
		return out
	}
	d := &s.Decision
	out.L4 = d.Verdict.String()
	out.Tier = d.Tier.String()
	if d.Rule != (policy.RuleRef{}) {
		out.Rule = d.Rule.String()
	}
	if d.PassedBy != nil {
		out.PassedBy = d.PassedBy.String()
	}
	out.Rules = ruleRefs(d)
	out.Policies = policyNames(d)
	out.SelectedBy = keyStrings(s.SelectedBy)
	out.Enforced = s.Enforced
	out.DefaultDeny = d.DefaultDeny
	out.Audit = s.Audit
	out.Reason = d.Reason
	if d.Verdict == policy.Redirect {
		out.Parser = "none"
		if d.L7 != nil {
			out.Parser = d.L7.Parser.String()
		}
	}
	if v := s.L7; v != nil {
		out.L7 = &l7JSON{Parser: v.Parser, Allowed: v.Allowed, Rule: v.Rule, Reason: v.Reason, Actions: v.Actions}
		if out.L7.Actions == nil {
			out.L7.Actions = []string{}
		}
	}
	return out
}
