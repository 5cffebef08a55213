package proxy_test

import (
	"net/netip"
	"strings"
	"testing"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// egressSNI lets the client open port 80 on the server for two server
// names only, with no L7 rules.
const egressSNI = `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: client-sni, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      serverNames: [api.example.com, "*.svc.example.com"]
`

// TestDecideServerName: a serverNames rule allows its names only (naming
// the rule), a connection without one is denied naming the policy, and
// such a connection needs the TLS layer while an HTTP one does not.
func TestDecideServerName(t *testing.T) {
	cp := testSnapshot(t, []string{"client", "server"}, false, egressSNI).Resolve(netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80), policy.ProtoTCP)
	if !cp.NeedsTLS() {
		t.Error("a serverNames policy does not need TLS")
	}
	for _, tt := range []struct {
		sni     string
		allowed bool
	}{{"api.example.com", true}, {"a.svc.example.com", true}, {"a.b.svc.example.com", false}, {"", false}} {
		d := cp.DecideServerName(tt.sni)
		if d.Allowed != tt.allowed {
			t.Errorf("%q: allowed %v", tt.sni, d.Allowed)
		}
		if tt.allowed && !strings.Contains(d.Rule, "default/client-sni") {
			t.Errorf("%q: rule %q", tt.sni, d.Rule)
		}
		if !tt.allowed && (d.DeniedBy == nil || d.DeniedBy.Policies() != "TrafficPolicy default/client-sni") {
			t.Errorf("%q: denied by %+v", tt.sni, d.DeniedBy)
		}
	}
	if http := testSnapshot(t, []string{"client", "server"}, false, egressHTTP).Resolve(netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80), policy.ProtoTCP); http.NeedsTLS() {
		t.Error("an HTTP policy needs TLS")
	}
}

// TestProxyNoTLSServer: a connection that needs the TLS layer is reset
// when the proxy has none, with an event saying so.
func TestProxyNoTLSServer(t *testing.T) {
	f := newProxyFixture(t, 0, nil)
	f.store.Set(testSnapshot(t, []string{"client", "server"}, false, egressSNI))
	f.wantRefused(t)
	if e := f.ev.wait(t); e.Verdict != monitor.VerdictError || !strings.Contains(e.Reason, "no TLS proxy configured") {
		t.Errorf("event %+v", e)
	}
}
