package bpf

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/internal/netnstest"
)

const redirectPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: GET}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8081", protocol: TCP}]
`

// testProxy is a transparent pass-through proxy in the node namespace: it
// accepts redirected connections on 0.0.0.0:port (IP_TRANSPARENT) and
// dials their original destination with SO_MARK MarkFromProxy.
type testProxy struct {
	mu       sync.Mutex
	accepted [][2]netip.AddrPort // local, remote
}

func (p *testProxy) seen() [][2]netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][2]netip.AddrPort(nil), p.accepted...)
}

func sockopt(level, opt, val int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, val) }); err != nil {
			return err
		}
		return serr
	}
}

func startProxy(t *testing.T, node netns.NsHandle, port int) *testProxy {
	t.Helper()
	p := &testProxy{}
	l := listenTCP(t, node, &net.ListenConfig{Control: sockopt(unix.SOL_IP, unix.IP_TRANSPARENT, 1)}, netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)).String())
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			p.mu.Lock()
			p.accepted = append(p.accepted, [2]netip.AddrPort{local, c.RemoteAddr().(*net.TCPAddr).AddrPort()})
			p.mu.Unlock()
			go func() {
				defer c.Close()
				var up net.Conn
				err := netnstest.Run(node, func() (err error) {
					d := net.Dialer{Timeout: time.Second, Control: sockopt(unix.SOL_SOCKET, unix.SO_MARK, MarkFromProxy)}
					up, err = d.DialContext(context.Background(), "tcp4", netip.AddrPortFrom(local.Addr().Unmap(), local.Port()).String())
					return err
				})
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return p
}

// TestRedirect sends an L7-selected port to a transparent listener with
// bpf_sk_assign, with no nftables tproxy rule anywhere (the node namespace
// is fresh), and checks that established flows keep their path.
func TestRedirect(t *testing.T) {
	f := newFixture(t, redirectPolicy, clientPolicy)
	a, b := f.a, f.b
	var teardown func() error
	if err := netnstest.Run(f.tn.node, func() (err error) { teardown, err = SetupProxyRouting(); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netnstest.Run(f.tn.node, teardown); err != nil {
			t.Errorf("routing teardown: %v", err)
		}
	})
	proxy := startProxy(t, f.tn.node, DefaultProxyPort)
	for _, port := range []int{8080, 8081} {
		echo(listenTCP(t, b.ns, nil, addr(b.ip, port)))
	}

	// Through the proxy: the handshake completes (established-socket
	// lookup), the proxy sees the original destination and the client, and
	// its marked upstream leg reaches the server although the server's
	// ingress does not allow the host.
	c := f.mustConnect(t, a, addr(b.ip, 8080))
	if err := roundTrip(c, "more data after the handshake", time.Second); err != nil {
		t.Fatal(err)
	}
	got := proxy.seen()
	if len(got) != 1 {
		t.Fatalf("proxy accepted %d connections, want 1", len(got))
	}
	if want := netip.MustParseAddrPort(addr(b.ip, 8080)); got[0][0] != want {
		t.Errorf("proxy LocalAddr = %s, want the original destination %s", got[0][0], want)
	}
	if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); got[0][1] != want {
		t.Errorf("proxy RemoteAddr = %s, want the client %s", got[0][1], want)
	}
	e := f.ev.wait(t, "redirect", func(e Event) bool { return e.Verdict == EventRedirect && e.Dst.Port() == 8080 })
	if e.ProxyPort != DefaultProxyPort || e.EndpointID != 12 || e.SrcIdentity != f.eng.ids["client"] || e.RuleID == 0 {
		t.Errorf("event %+v", e)
	}

	// A direct flow stays direct when its port switches to redirect;
	// new connections take the new path.
	direct := f.mustConnect(t, a, addr(b.ip, 8081))
	f.eng.apply(t, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", endPort: 8081, protocol: TCP}]
      rules:
        http: [{method: GET}]
`)
	f.eng.sync(t, f.d, f.tn.pods, f.epIDs)
	for i := range 3 {
		if err := roundTrip(direct, "still direct", time.Second); err != nil {
			t.Fatalf("established direct flow after the switch to redirect (round %d): %v", i, err)
		}
	}
	if n := len(proxy.seen()); n != 1 {
		t.Fatalf("proxy accepted %d connections, want 1: the direct flow moved", n)
	}
	f.mustConnect(t, a, addr(b.ip, 8081))
	if got := proxy.seen(); len(got) != 2 || got[1][0].Port() != 8081 {
		t.Fatalf("proxy saw %v, want the new 8081 connection", got)
	}
	// And the proxied flow stays proxied.
	if err := roundTrip(c, "still proxied", time.Second); err != nil {
		t.Fatal(err)
	}
}
