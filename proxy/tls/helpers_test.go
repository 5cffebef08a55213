package tls_test

import (
	"context"
	ctls "crypto/tls"
	"fmt"
	"net"
	nethttp "net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/tlstest"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
	"portcullis.dev/portcullis/proxy/proxytest"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// The test's endpoints, loopback addresses: the client connects from
// clientIP, the upstream listens on serverIP.
var (
	clientIP = netip.MustParseAddr("127.0.0.2")
	serverIP = netip.MustParseAddr("127.0.0.3")
)

// ca is a certificate authority made for a test.
type ca struct{ *tlstest.CA }

func newCA(t testing.TB, name string) *ca { return &ca{tlstest.NewCA(t, name)} }

func (c *ca) issue(t testing.TB, cn string, names ...string) (crt, key []byte) {
	return c.Issue(t, cn, names...)
}

// file writes b to a file in the test's temporary directory.
func file(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startUpstream serves HTTPS (h2 and HTTP/1.1) on serverIP with a
// certificate of ca for names: each response names the protocol, the
// path and the server name the client sent.
func startUpstream(t testing.TB, c *ca, names ...string) netip.AddrPort {
	return startUpstreamALPN(t, c, []string{"h2", "http/1.1"}, names...)
}

// startUpstreamALPN is startUpstream offering the protocols alpn.
func startUpstreamALPN(t testing.TB, c *ca, alpn []string, names ...string) netip.AddrPort {
	t.Helper()
	crt, key := c.issue(t, "upstream "+names[0], names...)
	cert, err := ctls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &nethttp.Server{
		Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			fmt.Fprintf(w, "upstream %s %s sni=%s\n", r.Proto, r.URL.Path, r.TLS.ServerName)
		}),
		TLSConfig: &ctls.Config{Certificates: []ctls.Certificate{cert}, NextProtos: alpn},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// recorder collects events.
// recorder collects the server's events.
type recorder = proxytest.Recorder

// env is the TLS server (with an HTTP server for intercepted streams) on
// 127.0.0.1 in front of one upstream address.
type env struct {
	addr    netip.AddrPort
	store   *proxy.Store
	secrets *proxytls.Secrets
	rec     *recorder
}

// portRule is the YAML of a TrafficPolicy "tls" in namespace default by
// which pods app=server accept port PORT from pods app=client, with the
// port rule's extra fields (serverNames, terminatingTLS, rules, ...).
func portRule(fields string) string {
	return `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: tls, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "PORT", protocol: TCP}]
` + indentBy(strings.Trim(fields, "\n"), "      ") + "\n"
}

func indentBy(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + strings.TrimLeft(l, "\t")
	}
	return strings.Join(lines, "\n")
}

// newEnv starts the proxy for upstream under the policy yaml (PORT is
// replaced with upstream's port).
func newEnv(t testing.TB, upstream netip.AddrPort, yaml string) *env {
	t.Helper()
	e := &env{store: &proxy.Store{}, secrets: proxytls.NewSecrets(), rec: &recorder{}}
	e.setPolicy(t, yaml, upstream.Port())
	hs := proxyhttp.New(proxyhttp.Options{Resolver: e.store, Record: e.rec.Record})
	ts, err := proxytls.New(proxytls.Options{Resolver: e.store, Record: e.rec.Record, HTTP: hs, Secrets: e.secrets, HandshakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	proxytest.Serve(t, ln, upstream, ts, hs.Close)
	return e
}

func (e *env) setPolicy(t testing.TB, yaml string, port uint16) {
	t.Helper()
	e.setPolicyAudit(t, yaml, port, false)
}

// setPolicyAudit is setPolicy with namespace default in audit mode or not.
func (e *env) setPolicyAudit(t testing.TB, yaml string, port uint16, audit bool) {
	t.Helper()
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, audit)
	policytest.Apply(t, repo, strings.ReplaceAll(yaml, "PORT", fmt.Sprint(port)))
	client, server := policytest.Pod("client", clientIP), policytest.Pod("server", serverIP)
	repo.UpsertEndpoint(client)
	repo.UpsertEndpoint(server)
	e.store.Set(policytest.Snapshot(repo, client, server))
}

// dial connects to the proxy from the client's address.
func (e *env) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0))}
	return d.DialContext(ctx, "tcp", e.addr.String())
}
