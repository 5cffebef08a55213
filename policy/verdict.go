package policy

import (
	"strconv"

	"portcullis.dev/portcullis/policy/l7"
)

// Verdict is what the datapath does with a flow.
type Verdict uint8

// The verdicts.
const (
	// Allow passes the flow in the kernel.
	Allow Verdict = iota
	// Deny drops it.
	Deny
	// Redirect sends it to the proxy, which judges each request by the
	// entry's L7 rules.
	Redirect
)

func (v Verdict) String() string {
	switch v {
	case Deny:
		return "deny"
	case Redirect:
		return "redirect"
	}
	return "allow"
}

// Decision is the verdict for one direction of a flow and why.
type Decision struct {
	Verdict Verdict
	// Tier decided the flow.
	Tier Tier
	// Rule is the rule that decided; zero for a default.
	Rule RuleRef
	// Rules are every rule that contributed: all matching denies, or all
	// matching allows whose union is the L7 policy.
	Rules []RuleRef
	// L7 is the union of L7 rules for a Redirect.
	L7 *l7.Policy
	// DefaultDeny is set when the flow is denied because nothing allowed
	// it in a direction that is enforced.
	DefaultDeny bool
	// Reason says in words why, for traces.
	Reason string
	// PassedBy is the admin Pass rule that handed the flow to the
	// namespace tier, if any.
	PassedBy *RuleRef
}

// sameEntry reports whether two decisions give the same map entry.
func sameEntry(a, b *Decision) bool {
	return a.Verdict == b.Verdict && a.Tier == b.Tier && a.Rule == b.Rule &&
		a.DefaultDeny == b.DefaultDeny && l7Key(a.L7) == l7Key(b.L7)
}

func l7Key(p *l7.Policy) string {
	if p == nil {
		return ""
	}
	return p.Key()
}

// Entry is one map state entry: a port range of one protocol (ProtoAny
// with the full range stands for every protocol) and its decision.
type Entry struct {
	Proto    uint8
	Lo, Hi   uint16
	Decision Decision
}

func (e Entry) String() string {
	port := strconv.Itoa(int(e.Lo))
	if e.Hi != e.Lo {
		port += "-" + strconv.Itoa(int(e.Hi))
	}
	if e.Proto == ProtoAny {
		port = "*"
	}
	return ProtoName(e.Proto) + "/" + port + " " + e.Decision.Verdict.String()
}

// sameEntries reports whether two entry sets give the same map entries.
func sameEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Proto != b[i].Proto || a[i].Lo != b[i].Lo || a[i].Hi != b[i].Hi || !sameEntry(&a[i].Decision, &b[i].Decision) {
			return false
		}
	}
	return true
}
