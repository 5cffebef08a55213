package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// The benchmark cluster: 20 namespaces × 100 apps = 2,000 distinct label
// sets, 5 replicas each = 10,000 endpoints, and 1,000 policies, each
// selecting one app and allowing it from three others on one to three
// ports, a fifth of them with HTTP rules, plus an egress rule to a CIDR.
const (
	benchNamespaces = 20
	benchApps       = 100
	benchReplicas   = 5
	benchPolicies   = 1000
)

func benchPolicy(i, port int) *v1alpha1.TrafficPolicy {
	ns := fmt.Sprintf("ns%d", i%benchNamespaces)
	app := func(k int) map[string]string { return map[string]string{"app": fmt.Sprintf("app%d", k%benchApps)} }
	rule := v1alpha1.Rule{EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: app(i)}}}
	in := v1alpha1.IngressRule{}
	for k := 1; k <= 3; k++ {
		in.FromEndpoints = append(in.FromEndpoints, v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: app(i + 7*k)}})
	}
	pr := v1alpha1.PortRule{}
	for k := 0; k <= i%3; k++ {
		pr.Ports = append(pr.Ports, v1alpha1.PortProtocol{Port: fmt.Sprint(port + k), Protocol: v1alpha1.ProtoTCP})
	}
	if i%5 == 0 {
		pr.Rules = &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET", Path: "/v1/.*"}, {Method: "POST", Path: fmt.Sprintf("/v1/items/%d", i)}}}
	}
	in.ToPorts = []v1alpha1.PortRule{pr}
	rule.Ingress = []v1alpha1.IngressRule{in}
	rule.Egress = []v1alpha1.EgressRule{{EgressCommonRule: v1alpha1.EgressCommonRule{
		ToCIDRSet: []v1alpha1.CIDRRule{{Cidr: v1alpha1.CIDR(fmt.Sprintf("192.0.%d.0/24", i%200)), ExceptCIDRs: []v1alpha1.CIDR{v1alpha1.CIDR(fmt.Sprintf("192.0.%d.128/25", i%200))}}},
	}}}
	return &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: ns}, Spec: &rule}
}

func benchEndpoint(i int) *policy.Endpoint {
	set := i % (benchNamespaces * benchApps)
	return &policy.Endpoint{
		Namespace: fmt.Sprintf("ns%d", set%benchNamespaces),
		Name:      fmt.Sprintf("pod%d", i),
		Labels:    map[string]string{"app": fmt.Sprintf("app%d", set/benchNamespaces)},
		IPs:       []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})},
	}
}

func benchRepo(b *testing.B) *policy.Repository {
	r := policy.NewRepository(policy.Options{})
	for i := range benchPolicies {
		if _, errs := r.UpsertPolicy(benchPolicy(i, 8000)); len(errs) > 0 {
			b.Fatal(errs.ToAggregate())
		}
	}
	for i := range benchNamespaces * benchApps * benchReplicas {
		r.UpsertEndpoint(benchEndpoint(i))
	}
	return r
}

// BenchmarkCompileFull compiles 1,000 policies over 10,000 endpoints with
// 2,000 distinct label sets, from an empty repository.
func BenchmarkCompileFull(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchRepo(b)
	}
}

// BenchmarkPodAdded adds one pod with a new label set (a new identity, so
// every endpoint whose rules select it gets entries) to the full cluster.
func BenchmarkPodAdded(b *testing.B) {
	r := benchRepo(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ep := &policy.Endpoint{Namespace: "ns3", Name: fmt.Sprintf("new%d", i),
			Labels: map[string]string{"app": "app10", "version": fmt.Sprint(i)}}
		r.UpsertEndpoint(ep)
	}
}

// BenchmarkPolicyChanged changes the ports of one policy in the full
// cluster, recomputing the endpoints it selects.
func BenchmarkPolicyChanged(b *testing.B) {
	r := benchRepo(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, errs := r.UpsertPolicy(benchPolicy(42, 8000+i%2*100)); len(errs) > 0 {
			b.Fatal(errs.ToAggregate())
		}
	}
}
