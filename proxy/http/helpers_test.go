package http_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
	"portcullis.dev/portcullis/proxy/proxytest"
)

// The test's endpoints: the client dials from clientIP, upstream servers
// listen on serverIP; both are loopback addresses, so the test needs no
// namespace of its own.
var (
	clientIP = netip.MustParseAddr("127.0.0.2")
	serverIP = netip.MustParseAddr("127.0.0.3")
)

// webPolicy is the policy most tests run under: the server's ingress from
// the client on the upstream's port, with a handful of HTTP rules.
var webPolicy = policytest.Ingress("web", "PORT", `
	http:
	- method: GET
	  path: "/public(/.*)?"
	- method: POST
	  path: /upload
	- method: GET
	  path: /ws
	- method: POST
	  path: /doormanager.DoorManager/GetName
	- method: POST
	  path: /doormanager.DoorManager/Watch
	- method: POST
	  path: /doormanager.DoorManager/Chat
	- method: GET
	  path: /actions
	  headerMatches:
	  - name: X-Added
	    value: "yes"
	    mismatch: ADD
	  - name: X-Replaced
	    value: new
	    mismatch: REPLACE
	  - name: X-Deleted
	    value: good
	    mismatch: DELETE
	  - name: X-Logged
	    value: expected
	    mismatch: LOG
`)

// otherPolicy allows only GET /other.
var otherPolicy = policytest.Ingress("other", "PORT", "http: [{method: GET, path: /other}]")

// snapshot builds a policy snapshot with a real repository from YAML:
// the client and server pods in namespace default and the policies, whose
// "PORT" is replaced with port.
func snapshot(t testing.TB, yaml string, port uint16) *proxy.Snapshot {
	t.Helper()
	return snapshotAudit(t, yaml, port, false)
}

// snapshotAudit is snapshot with namespace default in audit mode or not.
func snapshotAudit(t testing.TB, yaml string, port uint16, audit bool) *proxy.Snapshot {
	t.Helper()
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, audit)
	policytest.Apply(t, repo, strings.ReplaceAll(yaml, "PORT", fmt.Sprint(port)))
	client, server := policytest.Pod("client", clientIP), policytest.Pod("server", serverIP)
	repo.UpsertEndpoint(client)
	repo.UpsertEndpoint(server)
	return policytest.Snapshot(repo, client, server)
}

// recorder collects the server's events.
type recorder = proxytest.Recorder

// env is a proxy on 127.0.0.1 in front of one upstream address.
type env struct {
	store    *proxy.Store
	srv      *proxyhttp.Server
	addr     string // the proxy's listening address
	upstream netip.AddrPort
	rec      *recorder
}

// listenServer listens on the server endpoint's address.
func listenServer(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// newEnv starts a proxy whose connections all go to upstream, under yaml.
func newEnv(t testing.TB, upstream netip.AddrPort, yaml string, mod func(*proxyhttp.Options)) *env {
	t.Helper()
	e := &env{store: &proxy.Store{}, upstream: upstream, rec: &recorder{}}
	if yaml != "" {
		e.store.Set(snapshot(t, yaml, upstream.Port()))
	}
	o := proxyhttp.Options{Resolver: e.store, Record: e.rec.Record}
	if mod != nil {
		mod(&o)
	}
	e.srv = proxyhttp.New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	proxytest.Serve(t, ln, upstream, e.srv, e.srv.Close)
	return e
}

// dial connects to the proxy from the client endpoint's address.
func (e *env) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0))}
	return d.DialContext(ctx, "tcp", e.addr)
}

func addrOf(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

// closedPort returns an address on the server endpoint where nothing
// listens.
func closedPort(t testing.TB) netip.AddrPort {
	ln := listenServer(t)
	a := addrOf(ln)
	ln.Close()
	return a
}

var errUnexpected = errors.New("unexpected")
