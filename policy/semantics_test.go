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
