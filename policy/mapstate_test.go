package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// gen makes random but valid policies and pods over a small vocabulary, so
// that selectors overlap often.
type gen struct{ r *rand.Rand }

var (
	genApps = []string{"a", "b", "c", "d"}
	genNS   = []string{"default", "prod"}
	genPort = []int{53, 80, 443, 8080, 9000}
)

func (g gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g gen) selector() v1alpha1.EndpointSelector {
	var s v1alpha1.EndpointSelector
	switch g.r.IntN(4) {
	case 0: // {} : every pod of the namespace
	case 1:
		s.MatchLabels = map[string]string{"app": g.pick(genApps)}
	case 2:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{g.pick(genApps)}}}
	default:
		s.MatchLabels = map[string]string{"app": g.pick(genApps), "k8s:io.kubernetes.pod.namespace": g.pick(genNS)}
	}
	return s
}

func (g gen) ports() []v1alpha1.PortProtocol {
	n := g.r.IntN(3)
	var out []v1alpha1.PortProtocol
	for range n {
		p := v1alpha1.PortProtocol{Port: fmt.Sprint(genPort[g.r.IntN(len(genPort))])}
		switch g.r.IntN(6) {
		case 0:
			p.Protocol = v1alpha1.ProtoTCP
		case 1:
			p.Protocol = v1alpha1.ProtoUDP
		case 2:
			p.EndPort = int32(mustAtoi(p.Port) + g.r.IntN(100))
			p.Protocol = v1alpha1.ProtoTCP
		case 3:
			// The port-less protocols of Cilium 1.18.
			p = v1alpha1.PortProtocol{Protocol: []v1alpha1.L4Proto{v1alpha1.ProtoVRRP, v1alpha1.ProtoIGMP}[g.r.IntN(2)]}
		}
		out = append(out, p)
	}
	return out
}

func mustAtoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func (g gen) common() v1alpha1.IngressCommonRule {
	var c v1alpha1.IngressCommonRule
	switch g.r.IntN(6) {
	case 0:
		c.FromEntities = []v1alpha1.Entity{[]v1alpha1.Entity{"world", "cluster", "all", "host"}[g.r.IntN(4)]}
	case 1:
		c.FromCIDRSet = []v1alpha1.CIDRRule{{Cidr: "192.0.2.0/24", ExceptCIDRs: []v1alpha1.CIDR{"192.0.2.128/25"}}}
	case 2: // no peers: ports only (or empty rule)
	default:
		for range 1 + g.r.IntN(2) {
			c.FromEndpoints = append(c.FromEndpoints, g.selector())
		}
	}
	return c
}

func (g gen) trafficPolicy(i int) *v1alpha1.TrafficPolicy {
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: g.pick(genNS)}}
	sel := g.selector()
	rule := v1alpha1.Rule{EndpointSelector: &sel}
	if g.r.IntN(5) == 0 {
		f := false
		rule.EnableDefaultDeny = &v1alpha1.DefaultDenyConfig{Ingress: &f}
	}
	for range 1 + g.r.IntN(2) {
		ir := v1alpha1.IngressRule{IngressCommonRule: g.common()}
		if ps := g.ports(); len(ps) > 0 {
			pr := v1alpha1.PortRule{Ports: ps}
			if g.r.IntN(3) == 0 {
				pr.Rules = &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET", Path: "/" + g.pick(genApps)}}}
				for j := range pr.Ports {
					pr.Ports[j].Protocol = v1alpha1.ProtoTCP
					if pr.Ports[j].Port == "" {
						pr.Ports[j].Port = "80"
					}
				}
			}
			ir.ToPorts = []v1alpha1.PortRule{pr}
		}
		rule.Ingress = append(rule.Ingress, ir)
	}
	if g.r.IntN(3) == 0 {
		dr := v1alpha1.IngressDenyRule{IngressCommonRule: g.common()}
		if ps := g.ports(); len(ps) > 0 {
			dr.ToPorts = []v1alpha1.PortDenyRule{{Ports: ps}}
		}
		rule.IngressDeny = []v1alpha1.IngressDenyRule{dr}
	}
	p.Spec = &rule
	return p
}

func (g gen) adminPolicy(i int) *v1alpha1.AdminTrafficPolicy {
	p := &v1alpha1.AdminTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("atp%d", i)}}
	p.Spec.Tier = v1alpha1.TierAdmin
	if g.r.IntN(2) == 0 {
		p.Spec.Tier = v1alpha1.TierBaseline
	}
	p.Spec.Priority = int32(g.r.IntN(5))
	p.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": g.pick(genNS)}}
	for range 1 + g.r.IntN(3) {
		actions := []v1alpha1.AdminAction{"Allow", "Deny", "Pass"}
		if p.Spec.Tier == v1alpha1.TierBaseline {
			actions = actions[:2]
		}
		r := v1alpha1.AdminIngressRule{Action: actions[g.r.IntN(len(actions))], Ports: g.ports()}
		r.From = []v1alpha1.AdminPeer{{Pods: &v1alpha1.NamespacedPods{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": g.pick(genApps)}}}}}
		p.Spec.Ingress = append(p.Spec.Ingress, r)
	}
	return p
}

func (g gen) endpoints(n int) []*policy.Endpoint {
	var out []*policy.Endpoint
	for i := range n {
		out = append(out, &policy.Endpoint{
			Namespace: g.pick(genNS), Name: fmt.Sprintf("pod%d", i),
			Labels: map[string]string{"app": g.pick(genApps)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 244, 0, byte(i + 1)})},
		})
	}
	return out
}

// probe ports: every boundary the generator uses, and their neighbours.
func probePorts() []uint16 {
	ps := []uint16{0, 1, 65535}
	for _, p := range genPort {
		ps = append(ps, uint16(p-1), uint16(p), uint16(p+1), uint16(p+50), uint16(p+99), uint16(p+100))
	}
	return ps
}

// The map state must answer every lookup exactly as the decision function
// does: it is what the datapath will enforce.
func TestMapStateMatchesDecisions(t *testing.T) {
	for seed := range uint64(40) {
		g := gen{rand.New(rand.NewPCG(seed, 1))}
		r := policy.NewRepository(policy.Options{})
		for i := range 6 {
			if _, errs := r.UpsertPolicy(g.trafficPolicy(i)); len(errs) > 0 {
				t.Fatalf("seed %d: %v", seed, errs.ToAggregate())
			}
		}
		for i := range 3 {
			if _, errs := r.UpsertPolicy(g.adminPolicy(i)); len(errs) > 0 {
				t.Fatalf("seed %d: %v", seed, errs.ToAggregate())
			}
		}
		eps := g.endpoints(8)
		for _, ep := range eps {
			r.UpsertEndpoint(ep)
		}
		ids := r.Identities()
		for _, ep := range eps {
			pol := r.EndpointPolicy(ep.Namespace, ep.Name)
			for d := range 2 {
				ms := pol.State[d]
				for _, peer := range ids {
					for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoVRRP, policy.ProtoIGMP, 47} {
						for _, port := range probePorts() {
							dec, ok := r.Decide(ep.Namespace, ep.Name, policy.Direction(d), peer.ID, proto, port)
							if !ok {
								t.Fatalf("no decision for %s", ep.Key())
							}
							e := ms.Lookup(peer.ID, proto, port)
							if e.Decision.Verdict != dec.Verdict || e.Decision.Rule != dec.Rule || l7key(e.Decision) != l7key(dec) {
								t.Fatalf("seed %d: %s %s peer %s %s/%d: map state says %s (%s), decision says %s (%s)",
									seed, ep.Key(), policy.Direction(d), peer, policy.ProtoName(proto), port,
									e.Decision.Verdict, e.Decision.Rule, dec.Verdict, dec.Rule)
							}
						}
					}
				}
			}
		}
	}
}

func l7key(d policy.Decision) string {
	if d.L7 == nil {
		return ""
	}
	return d.L7.Key()
}

// snapshot renders every endpoint's map state with identities named by
// their labels, so repositories built in different orders compare.
func snapshot(r *policy.Repository, eps []*policy.Endpoint) string {
	names := map[policy.NumericIdentity]string{policy.IdentityAny: "*"}
	for _, id := range r.Identities() {
		names[id.ID] = id.Labels.String()
	}
	var b strings.Builder
	for _, ep := range eps {
		pol := r.EndpointPolicy(ep.Namespace, ep.Name)
		if pol == nil {
			continue
		}
		for d := range 2 {
			var lines []string
			for _, fe := range pol.State[d].Flat() {
				lines = append(lines, fmt.Sprintf("%s %s %s %s %s", ep.Key(), policy.Direction(d), names[fe.Identity], fe.Entry, fe.Decision.Rule))
			}
			sort.Strings(lines)
			b.WriteString(strings.Join(lines, "\n"))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Incremental updates must end where a build from scratch ends.
func TestIncrementalEqualsScratch(t *testing.T) {
	for seed := range uint64(25) {
		g := gen{rand.New(rand.NewPCG(seed, 2))}
		var tps []*v1alpha1.TrafficPolicy
		for i := range 6 {
			tps = append(tps, g.trafficPolicy(i))
		}
		atp := g.adminPolicy(0)
		eps := g.endpoints(8)

		scratch := policy.NewRepository(policy.Options{})
		for _, p := range tps {
			scratch.UpsertPolicy(p)
		}
		scratch.UpsertPolicy(atp)
		for _, ep := range eps {
			scratch.UpsertEndpoint(ep)
		}

		// Endpoints first, policies after, with churn in between.
		inc := policy.NewRepository(policy.Options{})
		for _, ep := range eps {
			inc.UpsertEndpoint(ep)
		}
		extra := g.trafficPolicy(99)
		inc.UpsertPolicy(extra)
		for _, p := range tps {
			inc.UpsertPolicy(p)
		}
		inc.UpsertPolicy(atp)
		inc.DeletePolicy(policy.PolicyKey{Kind: "TrafficPolicy", Namespace: extra.Namespace, Name: extra.Name})
		gone := &policy.Endpoint{Namespace: "default", Name: "transient", Labels: map[string]string{"app": "zz"}}
		inc.UpsertEndpoint(gone)
		inc.DeleteEndpoint(gone.Namespace, gone.Name)
		inc.UpsertNamespace("prod", map[string]string{"team": "x"}, false)
		inc.UpsertNamespace("prod", nil, false)
		scratch.UpsertNamespace("prod", nil, false)

		if a, b := snapshot(scratch, eps), snapshot(inc, eps); a != b {
			t.Fatalf("seed %d: incremental map state differs from scratch\nscratch:\n%s\nincremental:\n%s", seed, a, b)
		}
	}
}

// Adding a peer pod after the policies must give it the peer entries at
// once, and removing it must drop them.
func TestPeerAddedAndRemoved(t *testing.T) {
	r := load(t, policy.ModeDefault, "../examples/starwars")
	ds := &policy.Endpoint{Namespace: "default", Name: "deathstar", Labels: map[string]string{"org": "empire", "class": "deathstar"}}
	r.UpsertEndpoint(ds)
	// The deathstar (org=empire) is its own peer already.
	before := len(r.EndpointPolicy("default", "deathstar").State[policy.Ingress].PerIdentity)
	tf := &policy.Endpoint{Namespace: "default", Name: "tiefighter", Labels: map[string]string{"org": "empire", "class": "tiefighter"}}
	id := r.UpsertEndpoint(tf)
	after := r.EndpointPolicy("default", "deathstar").State[policy.Ingress]
	if e := after.Lookup(id, policy.ProtoTCP, 80); e.Decision.Verdict != policy.Redirect {
		t.Fatalf("tiefighter to deathstar:80 = %s, want redirect", e.Decision.Verdict)
	}
	if e := after.Lookup(id, policy.ProtoTCP, 81); e.Decision.Verdict != policy.Deny {
		t.Fatalf("tiefighter to deathstar:81 = %s, want deny", e.Decision.Verdict)
	}
	r.DeleteEndpoint("default", "tiefighter")
	if n := len(after.PerIdentity); n != before+1 {
		t.Fatalf("with a tiefighter: %d per-identity entry sets, want %d", n, before+1)
	}
	r.DeleteEndpoint("default", "tiefighter")
	gone := r.EndpointPolicy("default", "deathstar").State[policy.Ingress]
	if n := len(gone.PerIdentity); n != before {
		t.Fatalf("after the tiefighter left: %d per-identity entry sets, want %d", n, before)
	}
	if _, ok := gone.PerIdentity[id]; ok {
		t.Fatalf("the departed tiefighter's identity %d still has entries", id)
	}
}

func TestSelectedBy(t *testing.T) {
	r := load(t, policy.ModeDefault, "../examples/starwars")
	r.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "deathstar", Labels: map[string]string{"org": "empire", "class": "deathstar"}})
	r.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "xwing", Labels: map[string]string{"org": "alliance", "class": "xwing"}})
	rule1 := policy.PolicyKey{Kind: "TrafficPolicy", Namespace: "default", Name: "rule1"}
	for _, tc := range []struct {
		pod  string
		dir  policy.Direction
		want []policy.PolicyKey
	}{
		{"deathstar", policy.Ingress, []policy.PolicyKey{rule1}},
		{"deathstar", policy.Egress, nil},
		{"xwing", policy.Ingress, nil},
		{"unknown", policy.Ingress, nil},
	} {
		if got := r.SelectedBy("default", tc.pod, tc.dir); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: got %v, want %v", tc.pod, tc.dir, got, tc.want)
		}
	}
}
