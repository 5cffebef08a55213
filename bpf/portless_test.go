package bpf

import (
	"net/netip"
	"testing"

	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/policy"
)

// The server takes VRRP and IGMP from the client; the client sends only
// VRRP to the server and accepts nothing. Both protocols have no ports
// (Cilium 1.18 toPorts without ports).
const (
	portlessServerPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{protocol: VRRP}, {protocol: IGMP}]
`
	portlessClientPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  ingress: [{}]
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{protocol: VRRP}]
`
)

// TestPortlessProtocols sends real VRRP (IP protocol 112) and IGMP (2)
// datagrams between pod namespaces through the attached programs: the
// policy map's port-0 entries of those protocols decide, in both
// directions, and conntrack (which has no ports to go by) lets the
// replies of an allowed flow through.
func TestPortlessProtocols(t *testing.T) {
	f := newFixture(t, portlessServerPolicy, portlessClientPolicy)
	a, b := f.a, f.b
	idA, idB := f.eng.ids["client"], f.eng.ids["server"]
	vrrp := netnstest.VRRPAdvertisement(7, 100, netip.MustParseAddr("10.244.1.100"))
	igmp := netnstest.IGMPReport(netip.MustParseAddr("239.1.2.3"))
	vrrpAtServer := netnstest.ListenIP(t, b.ns, netnstest.ProtoVRRP, b.ip)
	igmpAtServer := netnstest.ListenIP(t, b.ns, netnstest.ProtoIGMP, b.ip)
	vrrpAtClient := netnstest.ListenIP(t, a.ns, netnstest.ProtoVRRP, a.ip)
	igmpAtClient := netnstest.ListenIP(t, a.ns, netnstest.ProtoIGMP, a.ip)
	send := func(from *testPod, proto uint8, to netip.Addr, payload []byte) {
		t.Helper()
		if err := netnstest.SendIP(from.ns, proto, to, payload); err != nil {
			t.Fatal(err)
		}
	}
	isDrop := func(proto uint8, ep uint32, dir policy.Direction, src netip.Addr) func(Event) bool {
		return func(e Event) bool {
			return e.Verdict == EventDrop && e.Proto == proto && e.EndpointID == ep && e.Direction == dir && e.Src.Addr() == src
		}
	}

	t.Run("VRRP allowed by both sides", func(t *testing.T) {
		send(a, netnstest.ProtoVRRP, b.ip, vrrp)
		if err := netnstest.ReceiveIP(vrrpAtServer, a.ip, vrrp, defaultWait); err != nil {
			t.Fatalf("server did not receive the client's VRRP advertisement: %v", err)
		}
		e := f.ev.wait(t, "VRRP allow", func(e Event) bool {
			return e.Verdict == EventAllow && e.Proto == policy.ProtoVRRP && e.Src.Addr() == a.ip
		})
		if e.EndpointID != 12 || e.Direction != policy.Ingress || e.SrcIdentity != idA || e.DstIdentity != idB ||
			e.Dst.Port() != 0 || e.RuleID != f.eng.ruleIDByPath(t, "ingress[0].toPorts[0]") {
			t.Errorf("event %+v, want the server's ingress rule, port 0", e)
		}
	})
	t.Run("a VRRP reply rides the flow's entry", func(t *testing.T) {
		// The client's ingress allows nothing: only conntrack lets it in.
		send(b, netnstest.ProtoVRRP, a.ip, vrrp)
		if err := netnstest.ReceiveIP(vrrpAtClient, b.ip, vrrp, defaultWait); err != nil {
			t.Fatalf("client did not receive the server's VRRP reply: %v", err)
		}
	})
	t.Run("IGMP denied by the client's egress", func(t *testing.T) {
		send(a, netnstest.ProtoIGMP, b.ip, igmp)
		if err := netnstest.ReceiveIP(igmpAtServer, a.ip, igmp, denyTimeout); err == nil {
			t.Fatal("server received IGMP that the client's egress does not allow")
		}
		e := f.ev.wait(t, "IGMP drop at the client's egress", isDrop(policy.ProtoIGMP, 11, policy.Egress, a.ip))
		if e.Reason != ReasonPolicy || e.SrcIdentity != idA || e.DstIdentity != idB || e.Dst.Port() != 0 {
			t.Errorf("event %+v", e)
		}
	})
	t.Run("IGMP denied by the client's ingress", func(t *testing.T) {
		// The server's egress is not selected; the client's default deny
		// drops, and no earlier IGMP flow makes this a reply.
		send(b, netnstest.ProtoIGMP, a.ip, igmp)
		if err := netnstest.ReceiveIP(igmpAtClient, b.ip, igmp, denyTimeout); err == nil {
			t.Fatal("client received IGMP that its ingress does not allow")
		}
		f.ev.wait(t, "IGMP drop at the client's ingress", isDrop(policy.ProtoIGMP, 11, policy.Ingress, b.ip))
	})
	t.Run("a VRRP deny stops the flow", func(t *testing.T) {
		f.eng.apply(t, `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-vrrp, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{protocol: VRRP, port: "0"}]
`)
		f.ev.reset()
		f.eng.sync(t, f.d, f.tn.pods, f.epIDs)
		send(a, netnstest.ProtoVRRP, b.ip, vrrp)
		if err := netnstest.ReceiveIP(vrrpAtServer, a.ip, vrrp, denyTimeout); err == nil {
			t.Fatal("server received VRRP after an ingressDeny of VRRP")
		}
		e := f.ev.wait(t, "VRRP drop by the deny", isDrop(policy.ProtoVRRP, 12, policy.Ingress, a.ip))
		if want := f.eng.ruleIDByPath(t, "ingressDeny[0]"); e.RuleID != want {
			t.Errorf("event %+v, want rule %d", e, want)
		}
	})
}
