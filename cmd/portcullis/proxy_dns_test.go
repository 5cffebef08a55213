package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/internal/dnstest"
)

// standaloneDNSPolicy lets the client look up *.example.com on the
// server's 53.
const standaloneDNSPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: dns}}]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns:
        - matchPattern: "*.example.com"
`

// TestProxyStandaloneDNS: `portcullis proxy` in front of dnsmasq judges
// dig's queries over UDP and TCP on --listen: allowed names answered by
// dnsmasq, others REFUSED although dnsmasq has them, one access line each.
func TestProxyStandaloneDNS(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.MustParseAddrPort("127.0.0.3:0"),
		"host-record=api.example.com,10.96.1.1", "host-record=db.example.org,10.96.1.5")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dns.yaml"), []byte(standaloneDNSPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := dnstest.FreePort(t, netip.MustParseAddr("127.0.0.1"))
	rp := startProxy(t, "--policy", dir, "--listen", listen.String(), "--upstream", up.String(),
		"--src", "app=client", "--dst", "app=dns", "--dport", "53")
	if !strings.Contains(rp.stderr.String(), "DNS over UDP and TCP") {
		t.Errorf("start line %q: want DNS over UDP and TCP", rp.stderr)
	}
	for _, tc := range []struct{ name, transport, status string }{
		{"api.example.com", "+notcp", "NOERROR"},
		{"api.example.com", "+tcp", "NOERROR"},
		{"db.example.org", "+notcp", "REFUSED"},
		{"db.example.org", "+tcp", "REFUSED"},
	} {
		a := dnstest.Dig(t, "@127.0.0.1", "-p", strings.TrimPrefix(listen.String(), "127.0.0.1:"), tc.name, "A", tc.transport)
		if a.Status != tc.status {
			t.Errorf("dig %s %s: %q, want %s\n%s", tc.name, tc.transport, a.Status, tc.status, a.Output)
		}
	}
	lines := rp.waitLines(t, 4)
	for i := range lines {
		lines[i] = normalize(lines[i])
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{
		"TIME FORWARDED default/src:PORT -> default/dst:53 dns api.example.com. A NOERROR 10.96.1.1 LATENCY policy=\"TrafficPolicy default/dns\"",
		"TIME DENIED default/src:PORT -> default/dst:53 dns db.example.org. A REFUSED LATENCY policy=\"TrafficPolicy default/dns\" reason=\"no DNS rule of the egress policy of default/src allows db.example.org.\"",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("access lines:\n%s\nwant one with %q", joined, want)
		}
	}
}
