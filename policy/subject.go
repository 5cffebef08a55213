package policy

import (
	"sort"
	"strings"

	"portcullis.dev/portcullis/policy/l7"
)

// subjectState is the policy of one local endpoint identity, per direction.
type subjectState struct {
	id         NumericIdentity
	dirs       [2]*dirState
	namedPorts bool
}

// dirState is one direction of a subject: the applicable rules by tier and
// the map state derived from them.
type dirState struct {
	dir      Direction
	admin    []*rule // ordered: priority, policy, rule index
	allow    []*rule
	deny     []*rule
	baseline []*rule
	// enforced is true when a default-deny rule selects the subject.
	enforced bool
	// selectedBy lists the namespace-tier policies selecting the subject.
	selectedBy []PolicyKey
	mode       Mode
	// peerSels are the non-universal selectors the rules use.
	peerSels []*cachedSelector
	// bounds[i] are the segment starts for knownProtos[i].
	bounds [len(knownProtos)][]uint16
	// wildcard are the entries for identities no specific selector selects.
	wildcard []Entry
	// perID are full entry sets for identities whose result differs.
	perID map[NumericIdentity][]Entry
	// l7memo caches unions of L7 policies by rule set.
	l7memo map[string]*l7.Policy
	// resolve resolves named ports.
	namedPorts map[string]map[portRange]int
}

// recomputeSubjectLocked rebuilds a subject identity's rules and map state
// from scratch. Identities without local endpoints have none.
func (r *Repository) recomputeSubjectLocked(id NumericIdentity) {
	e := r.ids[id]
	if old := r.subjects[id]; old != nil {
		for _, ds := range old.dirs {
			for _, cs := range ds.peerSels {
				delete(cs.users, id)
			}
		}
	}
	if e == nil || e.endpoints == 0 {
		delete(r.subjects, id)
		return
	}
	st := &subjectState{id: id}
	for d := range 2 {
		st.dirs[d] = r.buildDirLocked(e.ident, Direction(d))
		for _, ru := range st.dirs[d].all() {
			for _, p := range ru.ports {
				if p.name != "" {
					st.namedPorts = true
				}
			}
		}
	}
	for _, ds := range st.dirs {
		for _, cs := range ds.peerSels {
			cs.users[id] = struct{}{}
		}
	}
	r.subjects[id] = st
	for _, ds := range st.dirs {
		ds.computeAll(r)
	}
}

func (ds *dirState) all() []*rule {
	out := make([]*rule, 0, len(ds.admin)+len(ds.allow)+len(ds.deny)+len(ds.baseline))
	out = append(out, ds.admin...)
	out = append(out, ds.deny...)
	out = append(out, ds.allow...)
	return append(out, ds.baseline...)
}

// buildDirLocked gathers the rules that apply to subject in direction d.
func (r *Repository) buildDirLocked(subject *Identity, d Direction) *dirState {
	ds := &dirState{dir: d, mode: r.mode, perID: map[NumericIdentity][]Entry{}, l7memo: map[string]*l7.Policy{}, namedPorts: r.namedPorts}
	selects := func(cs *cachedSelector) bool {
		_, ok := cs.selected[subject.ID]
		return ok
	}
	type tiered struct {
		p     *compiledPolicy
		rules []*rule
	}
	var admins, baselines []tiered
	for _, cp := range r.order {
		switch cp.tier {
		case TierAdmin, TierBaseline:
			if !selects(cp.subjectCS) || len(cp.ordered[d]) == 0 {
				continue
			}
			t := tiered{cp, cp.ordered[d]}
			if cp.tier == TierAdmin {
				admins = append(admins, t)
			} else {
				baselines = append(baselines, t)
			}
		case TierNamespace:
			selected := false
			for _, s := range cp.specs {
				if !selects(s.subjectCS) {
					continue
				}
				if s.selects[d] {
					selected = true
					if s.defaultDeny[d] {
						ds.enforced = true
					}
				}
				ds.allow = append(ds.allow, s.allow[d]...)
				ds.deny = append(ds.deny, s.deny[d]...)
			}
			if selected {
				ds.selectedBy = append(ds.selectedBy, cp.key)
			}
		}
	}
	order := func(ts []tiered) []*rule {
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].p.priority < ts[j].p.priority })
		var out []*rule
		for _, t := range ts {
			out = append(out, t.rules...)
		}
		return out
	}
	ds.admin, ds.baseline = order(admins), order(baselines)

	seen := map[*cachedSelector]bool{}
	var bounds [len(knownProtos)]map[uint16]struct{}
	for i := range bounds {
		bounds[i] = map[uint16]struct{}{0: {}}
	}
	for _, ru := range ds.all() {
		for _, cs := range ru.cs {
			if !cs.universal && !seen[cs] {
				seen[cs] = true
				ds.peerSels = append(ds.peerSels, cs)
			}
		}
		for _, pr := range ds.resolve(ru.ports) {
			for i, kp := range knownProtos {
				if pr.proto != kp {
					continue
				}
				bounds[i][pr.lo] = struct{}{}
				if pr.hi < 65535 {
					bounds[i][pr.hi+1] = struct{}{}
				}
			}
		}
	}
	for i, b := range bounds {
		for p := range b {
			ds.bounds[i] = append(ds.bounds[i], p)
		}
		sort.Slice(ds.bounds[i], func(a, c int) bool { return ds.bounds[i][a] < ds.bounds[i][c] })
	}
	return ds
}

// resolve turns port specs into ranges, looking up named ports.
func (ds *dirState) resolve(ps []portSpec) []portRange {
	out := make([]portRange, 0, len(ps))
	for _, p := range ps {
		if p.name == "" {
			out = append(out, portRange{p.proto, p.lo, p.hi})
			continue
		}
		for pr := range ds.namedPorts[p.name] {
			if pr.proto == p.proto {
				out = append(out, pr)
			}
		}
	}
	return out
}

// portsMatch reports whether a rule's ports cover (proto, port); nil ports
// cover everything.
func (ds *dirState) portsMatch(ru *rule, proto uint8, port uint16) bool {
	if ru.ports == nil {
		return true
	}
	for _, p := range ru.ports {
		if p.name == "" {
			if p.proto == proto && p.lo <= port && port <= p.hi {
				return true
			}
			continue
		}
		if p.proto == proto {
			if _, ok := ds.namedPorts[p.name][portRange{proto, port, port}]; ok {
				return true
			}
		}
	}
	return false
}

// peerMatch reports whether a rule selects a peer; match tells whether a
// selector selects it.
func peerMatch(ru *rule, match func(*cachedSelector) bool) bool {
	if ru.peers == nil {
		return true
	}
	for _, cs := range ru.cs {
		if match(cs) {
			return true
		}
	}
	return false
}

// peerRules is the subset of a direction's rules that select one peer.
type peerRules struct {
	admin, deny, allow, baseline []*rule
}

func (ds *dirState) forPeer(match func(*cachedSelector) bool) *peerRules {
	pr := &peerRules{}
	filter := func(in []*rule) []*rule {
		var out []*rule
		for _, ru := range in {
			if peerMatch(ru, match) {
				out = append(out, ru)
			}
		}
		return out
	}
	pr.admin, pr.deny, pr.allow, pr.baseline = filter(ds.admin), filter(ds.deny), filter(ds.allow), filter(ds.baseline)
	return pr
}

// decide evaluates the tiers for one peer at (proto, port).
func (ds *dirState) decide(pr *peerRules, proto uint8, port uint16) Decision {
	d := ds.decideTiers(pr, proto, port)
	if d.Tier != TierAdmin && ds.mode != ModeNever {
		for _, ru := range pr.admin {
			if ds.portsMatch(ru, proto, port) {
				if ru.action == ActionPass {
					ref := ru.ref
					d.PassedBy = &ref
				}
				break
			}
		}
	}
	return d
}

func (ds *dirState) decideTiers(pr *peerRules, proto uint8, port uint16) Decision {
	if ds.mode == ModeNever {
		return Decision{Verdict: Allow, Tier: TierDefault, Reason: "enforcement mode never: policy is not enforced"}
	}
admin:
	for _, ru := range pr.admin {
		if !ds.portsMatch(ru, proto, port) {
			continue
		}
		switch ru.action {
		case ActionDeny:
			return Decision{Verdict: Deny, Tier: TierAdmin, Rule: ru.ref, Rules: []RuleRef{ru.ref}, Reason: "denied by admin rule"}
		case ActionAllow:
			if ru.l7 != nil {
				return Decision{Verdict: Redirect, Tier: TierAdmin, Rule: ru.ref, Rules: []RuleRef{ru.ref}, L7: ru.l7, Reason: "allowed by admin rule, subject to its L7 rules"}
			}
			return Decision{Verdict: Allow, Tier: TierAdmin, Rule: ru.ref, Rules: []RuleRef{ru.ref}, Reason: "allowed by admin rule"}
		}
		// Pass: hand over to the namespace tier.
		break admin
	}
	{
		var denies []RuleRef
		for _, ru := range pr.deny {
			if ds.portsMatch(ru, proto, port) {
				denies = append(denies, ru.ref)
			}
		}
		if len(denies) > 0 {
			return Decision{Verdict: Deny, Tier: TierNamespace, Rule: denies[0], Rules: denies, Reason: "denied by deny rule (a deny beats every allow)"}
		}
		var l4, withL7 []*rule
		for _, ru := range pr.allow {
			if !ds.portsMatch(ru, proto, port) {
				continue
			}
			if ru.l7 == nil {
				l4 = append(l4, ru)
			} else {
				withL7 = append(withL7, ru)
			}
		}
		var pol *l7.Policy
		var polErr error
		if len(withL7) > 0 {
			pol, polErr = ds.unionL7(withL7)
		}
		if len(l4) > 0 && (polErr != nil || !redirectBeatsL4(pol)) {
			d := Decision{Verdict: Allow, Tier: TierNamespace, Rule: l4[0].ref, Reason: "allowed"}
			for _, ru := range l4 {
				d.Rules = append(d.Rules, ru.ref)
			}
			if len(withL7) > 0 {
				d.Reason = "allowed; an L4 allow on the same port and peer makes the HTTP/Kafka rules of " + refsString(withL7) + " moot"
			}
			return d
		}
		if len(withL7) > 0 {
			d := Decision{Tier: TierNamespace, Rule: withL7[0].ref}
			for _, ru := range withL7 {
				d.Rules = append(d.Rules, ru.ref)
			}
			if polErr != nil {
				// Cilium rejects conflicting parsers; fail closed.
				d.Verdict, d.Reason = Deny, "denied: "+polErr.Error()
				return d
			}
			d.Verdict, d.L7, d.Reason = Redirect, pol, "allowed at L4, subject to L7 rules"
			switch {
			case len(l4) > 0 && pol.Parser == l7.ParserDNS:
				d.Reason = "allowed at L4, subject to the DNS rules of " + refsString(withL7) + " alone: an L4 allow on the same port and peer does not widen DNS rules"
			case len(l4) > 0:
				d.Reason = "allowed at L4 for TLS with a server name of " + refsString(withL7) + " only: when a rule on the port and peer requires SNI, all traffic there does"
			}
			return d
		}
		if ds.enforced {
			return Decision{Verdict: Deny, Tier: TierNamespace, DefaultDeny: true, Reason: "default deny: the endpoint is selected in this direction and no rule allows the flow"}
		}
	}
	for _, ru := range pr.baseline {
		if !ds.portsMatch(ru, proto, port) {
			continue
		}
		if ru.action == ActionDeny {
			return Decision{Verdict: Deny, Tier: TierBaseline, Rule: ru.ref, Rules: []RuleRef{ru.ref}, Reason: "denied by baseline rule"}
		}
		if ru.l7 != nil {
			return Decision{Verdict: Redirect, Tier: TierBaseline, Rule: ru.ref, Rules: []RuleRef{ru.ref}, L7: ru.l7, Reason: "allowed by baseline rule, subject to its L7 rules"}
		}
		return Decision{Verdict: Allow, Tier: TierBaseline, Rule: ru.ref, Rules: []RuleRef{ru.ref}, Reason: "allowed by baseline rule"}
	}
	if ds.mode == ModeAlways {
		return Decision{Verdict: Deny, Tier: TierDefault, DefaultDeny: true, Reason: "enforcement mode always: no rule allows the flow"}
	}
	return Decision{Verdict: Allow, Tier: TierDefault, Reason: "no policy selects the endpoint in this direction"}
}

// redirectBeatsL4 reports whether the L7 policy of a port keeps its
// redirect when an L4-only rule also allows the peer and port. In Cilium
// that is so for DNS rules: the redirect has precedence in the datapath
// (bpf/lib/policy.h; pkg/policy Test_MergeRules row 17) and the DNS proxy
// judges queries by the port's DNS rules alone (pkg/proxy UpdateRules and
// CheckAllowed). It is so for serverNames too: "if any rule requires SNI,
// then all traffic to that remote/port requires TLS" (pkg/policy/rule.go
// mergePortProto). HTTP and Kafka rules are made moot by the L4 allow.
func redirectBeatsL4(p *l7.Policy) bool {
	if p == nil {
		return false
	}
	switch p.Parser {
	case l7.ParserDNS:
		return true
	case l7.ParserNone:
		for _, c := range p.Conn {
			if c != nil && len(c.ServerNames) > 0 {
				return true
			}
		}
	}
	return false
}

func refsString(rs []*rule) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.ref.String()
	}
	return strings.Join(s, ", ")
}

// unionL7 merges the L7 policies of several rules, memoised by rule set.
func (ds *dirState) unionL7(rs []*rule) (*l7.Policy, error) {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.ref.String())
		b.WriteByte(';')
	}
	key := b.String()
	if p, ok := ds.l7memo[key]; ok {
		return p, nil
	}
	p := rs[0].l7
	for _, r := range rs[1:] {
		m, err := l7.Merge(p, r.l7)
		if err != nil {
			return nil, err
		}
		p = m
	}
	ds.l7memo[key] = p
	return p, nil
}

// otherProto stands for a protocol that no port rule names.
const otherProto uint8 = 255

// entries computes the complete entry set for one peer: one ProtoAny entry
// and, per known protocol, the runs of ports whose decision differs from it.
func (ds *dirState) entries(pr *peerRules) []Entry {
	base := ds.decide(pr, otherProto, 0)
	out := []Entry{{Proto: ProtoAny, Lo: 0, Hi: 65535, Decision: base}}
	for i, proto := range knownProtos {
		b := ds.bounds[i]
		var run *Entry
		for j, lo := range b {
			hi := uint16(65535)
			if j+1 < len(b) {
				hi = b[j+1] - 1
			}
			d := ds.decide(pr, proto, lo)
			if run != nil && sameEntry(&run.Decision, &d) {
				run.Hi = hi
				continue
			}
			if run != nil && !sameEntry(&run.Decision, &base) {
				out = append(out, *run)
			}
			run = &Entry{Proto: proto, Lo: lo, Hi: hi, Decision: d}
		}
		if run != nil && !sameEntry(&run.Decision, &base) {
			out = append(out, *run)
		}
	}
	return out
}

// computeAll computes the wildcard entries and those of every identity a
// specific selector selects.
func (ds *dirState) computeAll(r *Repository) {
	ds.wildcard = ds.entries(ds.forPeer(func(cs *cachedSelector) bool { return cs.universal }))
	ds.perID = map[NumericIdentity][]Entry{}
	peers := map[NumericIdentity]struct{}{}
	for _, cs := range ds.peerSels {
		for id := range cs.selected {
			peers[id] = struct{}{}
		}
	}
	for id := range peers {
		ds.computePeer(r, id)
	}
}

// computePeer (re)computes the entries of one peer identity.
func (ds *dirState) computePeer(r *Repository, id NumericIdentity) {
	if _, ok := r.ids[id]; !ok {
		delete(ds.perID, id)
		return
	}
	es := ds.entries(ds.forPeer(r.selectsLocked(id)))
	if sameEntries(es, ds.wildcard) {
		delete(ds.perID, id)
		return
	}
	ds.perID[id] = es
}

// selectsLocked returns a function telling whether a selector selects the
// peer identity.
func (r *Repository) selectsLocked(peer NumericIdentity) func(*cachedSelector) bool {
	return func(cs *cachedSelector) bool {
		if cs.universal {
			return true
		}
		_, ok := cs.selected[peer]
		return ok
	}
}

// updatePeer refreshes one peer identity in both directions.
func (st *subjectState) updatePeer(r *Repository, id NumericIdentity) {
	for _, ds := range st.dirs {
		ds.computePeer(r, id)
	}
}

// lookup finds the entry for (peer, proto, port) the way the datapath does:
// the peer's own entries if it has any, else the wildcard ones; within
// them the protocol's port run, else the every-protocol entry.
func lookup(wildcard []Entry, perID map[NumericIdentity][]Entry, id NumericIdentity, proto uint8, port uint16) Entry {
	es, ok := perID[id]
	if !ok {
		es = wildcard
	}
	for _, e := range es[1:] {
		if e.Proto == proto && e.Lo <= port && port <= e.Hi {
			return e
		}
	}
	return es[0]
}
