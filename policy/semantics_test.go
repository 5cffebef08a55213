package policy_test

import (
	"testing"

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
