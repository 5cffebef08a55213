package policy_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// semanticsCase is one policy and the verdicts Cilium 1.18 gives for some
// flows under it.
type semanticsCase struct {
	name   string
	yaml   string
	checks []semanticsCheck
}

type semanticsCheck struct {
	name string
	f    flow
	want string
}

func runSemantics(t *testing.T, cases []semanticsCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := load(t, policy.ModeDefault, c.yaml)
			for _, ch := range c.checks {
				res := trace(t, r, ch.f)
				if res.Verdict != ch.want {
					t.Errorf("%s: verdict %s, want %s (egress: %s; ingress: %s)", ch.name, res.Verdict, ch.want,
						res.Egress.Decision.Reason, res.Ingress.Decision.Reason)
				}
			}
		})
	}
}

// A peer list that is present but empty selects no peer: it is not the
// ports-only wildcard that an absent list is. Cilium 1.18 checks for
// "empty non-nil slices" in pkg/policy/api/ingress.go
// (GetSourceEndpointSelectorsWithRequirements) and egress.go
// (GetDestinationEndpointSelectorsWithRequirements) and returns no
// selector; pkg/policy tests TestEgressEmptyToEndpoints and
// TestMergeAllowAllL3AndAllowAllL7 (case 1B) pin it. The rule still
// selects its endpoint, so the direction is in default deny.
func TestEmptyPeerListSelectsNobody(t *testing.T) {
	const head = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: empty
spec:
  endpointSelector:
    matchLabels:
      app: server
`
	ingress := func(peers string) string {
		return head + "  ingress:\n  - " + peers + "\n    toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n"
	}
	egress := func(peers string) string {
		return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: empty
spec:
  endpointSelector:
    matchLabels:
      app: client
  egress:
  - ` + peers + "\n    toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n"
	}
	in := func(src string) flow { return flow{src: src, dst: "app=server", port: 80} }
	out := func(dst string) flow { return flow{src: "app=client", dst: dst, port: 80} }
	denied, allowed := policy.VerdictDenied, policy.VerdictAllowed
	runSemantics(t, []semanticsCase{
		{"fromEndpoints: []", ingress("fromEndpoints: []"), []semanticsCheck{
			{"pod peer", in("app=client"), denied},
			{"world peer", flow{src: "ip:203.0.113.1", dst: "app=server", port: 80}, denied},
		}},
		{"fromEntities: []", ingress("fromEntities: []"), []semanticsCheck{{"pod peer", in("app=client"), denied}}},
		{"fromCIDR: []", ingress("fromCIDR: []"), []semanticsCheck{{"world peer", flow{src: "ip:203.0.113.1", dst: "app=server", port: 80}, denied}}},
		{"fromCIDRSet: []", ingress("fromCIDRSet: []"), []semanticsCheck{{"world peer", flow{src: "ip:203.0.113.1", dst: "app=server", port: 80}, denied}}},
		// Cilium returns no selector as soon as one list is empty, even if
		// another list of the rule names peers.
		{"empty list beside a full one", ingress("fromEndpoints: []\n    fromEntities: [all]"), []semanticsCheck{{"pod peer", in("app=client"), denied}}},
		{"toEndpoints: []", egress("toEndpoints: []"), []semanticsCheck{{"pod peer", out("app=server"), denied}}},
		{"toEntities: []", egress("toEntities: []"), []semanticsCheck{{"world", flow{src: "app=client", dst: "ip:203.0.113.1", port: 80}, denied}}},
		{"toCIDR: []", egress("toCIDR: []"), []semanticsCheck{{"world", flow{src: "app=client", dst: "ip:203.0.113.1", port: 80}, denied}}},
		{"toCIDRSet: []", egress("toCIDRSet: []"), []semanticsCheck{{"world", flow{src: "app=client", dst: "ip:203.0.113.1", port: 80}, denied}}},
		{"toServices: []", egress("toServices: []"), []semanticsCheck{{"pod peer", out("app=server"), denied}}},
		{"toFQDNs: []", egress("toFQDNs: []"), []semanticsCheck{{"world", flow{src: "app=client", dst: "ip:203.0.113.1", port: 80}, denied}}},
	})

	// The ports-only rule with no peer field is the wildcard it always was.
	r := load(t, policy.ModeDefault, head+"  ingress:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n")
	if v := trace(t, r, in("app=client")).Verdict; v != allowed {
		t.Errorf("ports-only rule: %s, want %s", v, allowed)
	}
}

// "An L4-only allow makes the L7 rules on the same port moot" holds for
// HTTP and Kafka only. A DNS port stays redirected and the DNS proxy
// judges queries by that port's DNS rules alone: Cilium's redirect has
// precedence in bpf/lib/policy.h (pkg/policy Test_MergeRules row 17), and
// pkg/proxy UpdateRules hands only the DNS rules to CheckAllowed. With
// serverNames, pkg/policy/rule.go mergePortProto makes all traffic to the
// peer and port require TLS with an SNI from the union ("if any rule
// requires SNI, then all traffic to that remote/port requires TLS").
func TestL4AllowMakesOnlyHTTPMoot(t *testing.T) {
	const head = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: moot
spec:
  endpointSelector:
    matchLabels:
      app: client
  egress:
`
	const kubeDNS = "k8s-app=kube-dns,io.kubernetes.pod.namespace=kube-system"
	dns := head + `  - toEndpoints:
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: kube-system
        k8s-app: kube-dns
    toPorts:
    - ports:
      - port: "53"
        protocol: UDP
  - toEndpoints:
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: kube-system
        k8s-app: kube-dns
    toPorts:
    - ports:
      - port: "53"
        protocol: UDP
      rules:
        dns:
        - matchPattern: "*.github.com"
`
	sni := head + `  - toEntities: [world]
    toPorts:
    - ports:
      - port: "443"
        protocol: TCP
  - toEntities: [world]
    toPorts:
    - ports:
      - port: "443"
        protocol: TCP
      serverNames: [api.github.com]
`
	http := head + `  - toEntities: [world]
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
  - toEntities: [world]
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
      rules:
        http:
        - method: GET
          path: /ok
`
	denied, allowed := policy.VerdictDenied, policy.VerdictAllowed
	world := "ip:203.0.113.10"
	runSemantics(t, []semanticsCase{
		{"DNS rules stay in force", dns, []semanticsCheck{
			{"allowed name", flow{src: "app=client", dst: kubeDNS, port: 53, proto: policy.ProtoUDP, dns: "api.github.com"}, allowed},
			{"name outside the DNS rules", flow{src: "app=client", dst: kubeDNS, port: 53, proto: policy.ProtoUDP, dns: "example.com"}, denied},
		}},
		{"serverNames stay in force", sni, []semanticsCheck{
			{"allowed SNI", flow{src: "app=client", dst: world, port: 443, sni: "api.github.com"}, allowed},
			{"other SNI", flow{src: "app=client", dst: world, port: 443, sni: "example.com"}, denied},
		}},
		{"HTTP rules are moot", http, []semanticsCheck{
			{"other path", flow{src: "app=client", dst: world, port: 80, http: "POST /other"}, allowed},
		}},
	})
}

// VRRP (IP protocol 112) and IGMP (2) are port-less protocols that Cilium
// 1.18 accepts in toPorts (pkg/policy/api/l4.go ProtoVRRP, ProtoIGMP;
// pkg/u8proto). Their port "must be empty or 0"
// (pkg/policy/api/rule_validation.go PortProtocol.Validate), and a rule
// naming them allows the whole protocol: pkg/policy/rule_test.go
// TestIPProtocolsWithNoTransportPorts expects the filters "0/vrrp" and
// "0/igmp" for an ingress rule with both and "0/vrrp" for an egress rule
// with VRRP. ANY stays TCP, UDP and SCTP (pkg/policy/rule.go expands
// ProtoAny to those three), so it does not allow them.
func TestPortlessProtocols(t *testing.T) {
	const head = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: vrrp
spec:
  endpointSelector:
    matchLabels:
      app: router
`
	// The rule of TestIPProtocolsWithNoTransportPorts.
	const cilium = head + `  ingress:
  - toPorts:
    - ports:
      - protocol: VRRP
      - protocol: IGMP
  egress:
  - toPorts:
    - ports:
      - protocol: VRRP
`
	in := func(proto uint8, port uint16) flow {
		return flow{src: "app=peer", dst: "app=router", proto: proto, port: port}
	}
	out := func(proto uint8) flow { return flow{src: "app=router", dst: "app=peer", proto: proto} }
	denied, allowed := policy.VerdictDenied, policy.VerdictAllowed
	runSemantics(t, []semanticsCase{
		{"Cilium's rule", cilium, []semanticsCheck{
			{"ingress VRRP", in(policy.ProtoVRRP, 0), allowed},
			{"ingress IGMP", in(policy.ProtoIGMP, 0), allowed},
			{"ingress TCP is in default deny", in(policy.ProtoTCP, 80), denied},
			{"ingress ICMP is in default deny", in(policy.ProtoICMP, 8), denied},
			{"egress VRRP", out(policy.ProtoVRRP), allowed},
			{"egress IGMP is not in the egress rule", out(policy.ProtoIGMP), denied},
			{"egress UDP", flow{src: "app=router", dst: "app=peer", proto: policy.ProtoUDP, port: 53}, denied},
		}},
		{"port 0 is the same as no port", head + `  ingress:
  - fromEndpoints: [{matchLabels: {app: peer}}]
    toPorts:
    - ports: [{port: "0", protocol: VRRP}]
`, []semanticsCheck{
			{"VRRP from the peer", in(policy.ProtoVRRP, 0), allowed},
			{"VRRP from another pod", flow{src: "app=other", dst: "app=router", proto: policy.ProtoVRRP}, denied},
			{"IGMP", in(policy.ProtoIGMP, 0), denied},
		}},
		{"ANY does not cover VRRP or IGMP", head + `  ingress:
  - toPorts:
    - ports: [{port: "0", protocol: ANY}]
`, []semanticsCheck{
			{"TCP", in(policy.ProtoTCP, 80), allowed},
			{"VRRP", in(policy.ProtoVRRP, 0), denied},
			{"IGMP", in(policy.ProtoIGMP, 0), denied},
		}},
		{"a VRRP deny beats an allow of everything", head + `  ingress:
  - fromEntities: [all]
  ingressDeny:
  - toPorts:
    - ports: [{protocol: VRRP}]
`, []semanticsCheck{
			{"VRRP", in(policy.ProtoVRRP, 0), denied},
			{"IGMP", in(policy.ProtoIGMP, 0), allowed},
			{"TCP", in(policy.ProtoTCP, 80), allowed},
		}},
	})
}

// What Cilium 1.18 refuses for the port-less protocols, the engine refuses
// too, even for objects that did not pass the CRD schema: a port other
// than 0 (rule_validation.go "port must be empty or 0"), and L7 rules
// ("L7 rules can only apply to TCP (not VRRP) except for DNS rules").
func TestPortlessProtocolErrors(t *testing.T) {
	cases := []struct {
		name      string
		port      v1alpha1.PortProtocol
		rules     *v1alpha1.L7Rules
		wantField string
		wantMsg   string
	}{
		{"VRRP with a port", v1alpha1.PortProtocol{Port: "112", Protocol: v1alpha1.ProtoVRRP}, nil,
			"spec.ingress[0].toPorts[0].ports[0]", "VRRP has no ports"},
		{"IGMP with a range", v1alpha1.PortProtocol{Port: "0", EndPort: 10, Protocol: v1alpha1.ProtoIGMP}, nil,
			"spec.ingress[0].toPorts[0].ports[0]", "IGMP has no ports"},
		{"TCP without a port", v1alpha1.PortProtocol{Protocol: v1alpha1.ProtoTCP}, nil,
			"spec.ingress[0].toPorts[0].ports[0].port", "port is required, except for VRRP and IGMP"},
		{"HTTP rules on VRRP", v1alpha1.PortProtocol{Protocol: v1alpha1.ProtoVRRP},
			&v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET"}}},
			"spec.ingress[0].toPorts[0].ports[0].protocol", "VRRP has none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}
			p.Spec = &v1alpha1.Rule{
				EndpointSelector: &v1alpha1.EndpointSelector{},
				Ingress: []v1alpha1.IngressRule{{ToPorts: []v1alpha1.PortRule{{
					Ports: []v1alpha1.PortProtocol{c.port}, Rules: c.rules,
				}}}},
			}
			_, errs := policy.NewRepository(policy.Options{}).UpsertPolicy(p)
			for _, e := range errs {
				if e.Field == c.wantField && strings.Contains(e.Error(), c.wantMsg) {
					return
				}
			}
			t.Errorf("errors %v, want one at %s containing %q", errs, c.wantField, c.wantMsg)
		})
	}
}

// Cilium has no kube-dns entity (pkg/policy/api/entity.go
// EntitySelectorMapping; its CRD enum is all;world;cluster;host;init;
// ingress;unmanaged;remote-node;health;none;kube-apiserver), so a rule
// naming one is an invalid policy, never an allow of some guessed set of
// pods. The loader names it with what to write instead; the engine, which
// also gets objects that skipped the loader, refuses it as any unknown
// entity.
func TestKubeDNSIsNotAnEntity(t *testing.T) {
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}
	p.Spec = &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{},
		Egress: []v1alpha1.EgressRule{{EgressCommonRule: v1alpha1.EgressCommonRule{
			ToEntities: []v1alpha1.Entity{"cluster", "kube-dns"},
		}}},
	}
	r := policy.NewRepository(policy.Options{})
	_, errs := r.UpsertPolicy(p)
	if len(errs) != 1 || errs[0].Field != "spec.egress[0].toEntities[1]" || !strings.Contains(errs[0].Error(), `"kube-dns"`) {
		t.Fatalf("errors %v, want one for spec.egress[0].toEntities[1]", errs)
	}
}
