package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netns"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// The transparent side on the real kernel datapath: throwaway network
// namespaces (a node and two pods on veths, plumbed like internal/localcluster),
// the datapath attached to the pods' host veths, bpf_sk_assign redirecting
// into proxy.ListenTransparent, and the upstream leg reaching a server in
// the other pod.

const (
	nodeAddr  = "10.244.9.254"
	proxyPort = 15001
)

var (
	podClient = netip.MustParseAddr("10.244.9.1")
	podServer = netip.MustParseAddr("10.244.9.2")
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF, network namespaces)")
	}
	_ = rlimit.RemoveMemlock()
}

// pod is a pod of the test node, labelled app=name.
type pod struct {
	name string
	ip   netip.Addr
	ns   netns.NsHandle
}

// plumb creates the node namespace and the pods' veths (netnstest.Node).
func plumb(t *testing.T, pods ...*pod) netns.NsHandle {
	t.Helper()
	ips := make([]netip.Addr, len(pods))
	for i, p := range pods {
		ips[i] = p.ip
	}
	node, links := netnstest.Node(t, netip.MustParseAddr(nodeAddr), ips...)
	for i, p := range pods {
		p.ns = links[i].NS
	}
	return node
}

// node is a datapath-enforced node with a policy repository.
type node struct {
	ns    netns.NsHandle
	dp    *bpf.Datapath
	repo  *policy.Repository
	pods  []*pod
	store proxy.Store
}

func newNode(t *testing.T, yaml string, pods ...*pod) *node {
	t.Helper()
	requireRoot(t)
	n := &node{ns: plumb(t, pods...), repo: policy.NewRepository(policy.Options{}), pods: pods}
	n.repo.UpsertNamespace("default", nil, false)
	for _, p := range pods {
		n.repo.UpsertEndpoint(policytest.Pod(p.name, p.ip))
	}
	policytest.Apply(t, n.repo, yaml)
	var err error
	n.dp, err = bpf.Load(bpf.Options{
		RuleID:    func(policy.RuleRef) uint32 { return 1 },
		ProxyPort: func(*policy.Decision) uint16 { return proxyPort },
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel cannot load the datapath: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.dp.Close() })
	var teardown func() error
	if err := netnstest.Run(n.ns, func() (err error) { teardown, err = bpf.SetupProxyRouting(); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netnstest.Run(n.ns, teardown) })
	if err := n.dp.SetIPCache(netip.MustParsePrefix(nodeAddr+"/32"), policy.IdentityHost); err != nil {
		t.Fatal(err)
	}
	for i, p := range pods {
		pol := n.repo.EndpointPolicy("default", p.name)
		if err := n.dp.SyncEndpointPolicy(uint32(i+1), pol); err != nil {
			t.Fatal(err)
		}
		if err := n.dp.SetIPCache(netip.PrefixFrom(p.ip, 32), pol.Identity.ID); err != nil {
			t.Fatal(err)
		}
		err := netnstest.Run(n.ns, func() error {
			idx, err := bpf.HostInterface(p.ip)
			if err != nil {
				return err
			}
			return n.dp.AttachEndpoint(idx, p.ip, uint32(i+1), bpf.FlagEnforceIngress|bpf.FlagEnforceEgress)
		})
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skipf("attach: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	n.store.Set(n.snapshot())
	return n
}

// snapshot is the proxy's view of the node's pods now.
func (n *node) snapshot() *proxy.Snapshot {
	eps := make([]*policy.Endpoint, len(n.pods))
	for i, p := range n.pods {
		eps[i] = policytest.Pod(p.name, p.ip)
	}
	return policytest.Snapshot(n.repo, eps...)
}

// apply changes the policy: the datapath entries, then the proxy's
// snapshot, as the agent's sync does.
func (n *node) apply(t *testing.T, yaml string) {
	t.Helper()
	policytest.Apply(t, n.repo, yaml)
	for i, p := range n.pods {
		if err := n.dp.SyncEndpointPolicy(uint32(i+1), n.repo.EndpointPolicy("default", p.name)); err != nil {
			t.Fatal(err)
		}
	}
	n.store.Set(n.snapshot())
}

// listen opens a TCP listener inside ns.
func listen(t *testing.T, ns netns.NsHandle, addr string, transparent bool) net.Listener {
	t.Helper()
	var l net.Listener
	err := netnstest.Run(ns, func() (err error) {
		if transparent {
			l, err = proxy.ListenTransparent(context.Background(), addr)
		} else {
			l, err = net.Listen("tcp4", addr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// whoami serves HTTP on l: every request is told the address it comes from.
func whoami(t *testing.T, l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// startProxy serves the node's store with proxy/http on the transparent
// listener; dials run in the node's namespace.
func (n *node) startProxy(t *testing.T, d *proxy.Dialer) *events {
	t.Helper()
	dial := func(ctx context.Context, src, dst netip.AddrPort) (c net.Conn, err error) {
		err = netnstest.Run(n.ns, func() (err error) { c, err = d.DialContext(ctx, src, dst); return })
		return c, err
	}
	ev := &events{}
	hs := proxyhttp.New(proxyhttp.Options{Resolver: &n.store, Dial: dial, Record: ev.record})
	p, err := proxy.New(proxy.Options{Resolver: &n.store, HTTP: hs, Dial: dial, Record: ev.record})
	if err != nil {
		t.Fatal(err)
	}
	l := listen(t, n.ns, fmt.Sprintf("0.0.0.0:%d", proxyPort), true)
	go func() { _ = p.Serve(l) }()
	t.Cleanup(func() { _ = p.Close(); _ = hs.Close() })
	return ev
}

type events struct {
	mu  sync.Mutex
	evs []monitor.Event
}

func (e *events) record(ev monitor.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.evs {
		fmt.Fprintf(&b, "%s %s %+v\n", ev.Verdict, ev.Reason, ev.L7)
	}
	return b.String()
}

// get sends one HTTP request from the pod (a fresh connection each time).
func get(p *pod, url string) (int, string, error) {
	var (
		code int
		body string
	)
	// The transport dials on goroutines of its own: each dial enters the
	// pod's namespace itself.
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = netnstest.Run(p.ns, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 3 * time.Second, Transport: tr}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	code, body = resp.StatusCode, string(b)
	return code, body, err
}

// ingressHTTPPolicy lets the client GET /allowed.* on the server's port 8080.
var ingressHTTPPolicy = policytest.Ingress("server", "8080", `http: [{method: GET, path: "/allowed.*"}]`)

// TestTransparentSourcePreserved redirects a pod's HTTP requests with
// bpf_sk_assign into the proxy's listener; proxy/http judges them under
// the server's ingress policy: an allowed one goes upstream on a leg bound
// to the client's address, so the server sees the client pod's address,
// not the node's; a denied one gets 403 from the proxy. The server's
// policy allows only the client: the marked leg passes without a second
// check.
func TestTransparentSourcePreserved(t *testing.T) {
	client := &pod{name: "client", ip: podClient}
	server := &pod{name: "server", ip: podServer}
	n := newNode(t, ingressHTTPPolicy, client, server)
	whoami(t, listen(t, server.ns, netip.AddrPortFrom(podServer, 8080).String(), false))
	var fallbacks []error
	d := &proxy.Dialer{
		Mark:        bpf.MarkFromProxy,
		Transparent: func(_, dst netip.AddrPort) bool { return dst.Addr() == podServer },
		Fallback:    func(_, _ netip.AddrPort, err error) { fallbacks = append(fallbacks, err) },
	}
	ev := n.startProxy(t, d)
	base := "http://" + netip.AddrPortFrom(podServer, 8080).String()
	for i := range 3 {
		code, body, err := get(client, base+"/allowed")
		if err != nil || code != 200 {
			t.Fatalf("round %d: %d %q %v; proxy events:\n%s", i, code, body, err, ev)
		}
		seen, perr := netip.ParseAddrPort(body)
		if perr != nil || seen.Addr() != podClient {
			t.Fatalf("round %d: the server saw %q, want the client's address %s", i, body, podClient)
		}
		// Not from the pods' ephemeral range: that port may be the
		// client's own towards this server.
		if p := seen.Port(); p < proxy.TransparentPortLo || p > proxy.TransparentPortHi {
			t.Fatalf("round %d: the upstream leg came from port %d, want %d-%d", i, p, proxy.TransparentPortLo, proxy.TransparentPortHi)
		}
	}
	if code, body, err := get(client, base+"/other"); err != nil || code != 403 || body != "Access denied\r\n" {
		t.Fatalf("denied request: %d %q %v", code, body, err)
	}
	if len(fallbacks) > 0 {
		t.Errorf("fallbacks: %v", fallbacks)
	}
}

// TestTransparentNodeAddress: without a transparent bind the upstream sees
// the node's address, and the leg still passes the server's policy.
func TestTransparentNodeAddress(t *testing.T) {
	client := &pod{name: "client", ip: podClient}
	server := &pod{name: "server", ip: podServer}
	n := newNode(t, ingressHTTPPolicy, client, server)
	whoami(t, listen(t, server.ns, netip.AddrPortFrom(podServer, 8080).String(), false))
	ev := n.startProxy(t, &proxy.Dialer{Mark: bpf.MarkFromProxy})
	code, body, err := get(client, "http://"+netip.AddrPortFrom(podServer, 8080).String()+"/allowed")
	if err != nil || code != 200 {
		t.Fatalf("%d %q %v; proxy events:\n%s", code, body, err, ev)
	}
	if seen, err := netip.ParseAddrPort(body); err != nil || seen.Addr() != netip.MustParseAddr(nodeAddr) {
		t.Fatalf("the server saw %q, want the node's address %s", body, nodeAddr)
	}
}

// rawGet sends one HTTP/1.1 request with Connection: close from the pod's
// local port and returns the body (what follows the header section).
func rawGet(p *pod, port int, dst netip.AddrPort, path string) (string, error) {
	var c net.Conn
	err := netnstest.Run(p.ns, func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: p.ip.AsSlice(), Port: port}}
		c, err = d.Dial("tcp4", dst.String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	_, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok {
		return "", fmt.Errorf("response %q: %v", b, err)
	}
	// The proxy resets the connection once the client has acknowledged
	// the response (no TIME_WAIT on its side): the body is complete.
	return body, nil
}

// TestTransparentNoTimeWait: the proxy closes a client connection first
// (Connection: close) without leaving a TIME_WAIT socket in the node's
// namespace, so when the policy turns the port into a plain L4 allow, a
// direct connection from the same client address and port goes through
// at once (a TIME_WAIT socket would capture it).
func TestTransparentNoTimeWait(t *testing.T) {
	client := &pod{name: "client", ip: podClient}
	server := &pod{name: "server", ip: podServer}
	n := newNode(t, ingressHTTPPolicy, client, server)
	whoami(t, listen(t, server.ns, netip.AddrPortFrom(podServer, 8080).String(), false))
	n.startProxy(t, &proxy.Dialer{Mark: bpf.MarkFromProxy})
	dst := netip.AddrPortFrom(podServer, 8080)
	const port = 41234
	body, err := rawGet(client, port, dst, "/allowed")
	if err != nil {
		t.Fatal(err)
	}
	if seen, err := netip.ParseAddrPort(body); err != nil || seen.Addr() != netip.MustParseAddr(nodeAddr) {
		t.Fatalf("through the proxy the server saw %q, want the node's address", body)
	}
	n.apply(t, policytest.Ingress("server", "8080", ""))
	body, err = rawGet(client, port, dst, "/allowed")
	if err != nil {
		t.Fatalf("direct connection from the same port after the proxy closed: %v", err)
	}
	if want := netip.AddrPortFrom(podClient, port).String(); body != want {
		t.Fatalf("the server saw %q, want %s directly", body, want)
	}
}
