package proxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/proxy"
)

// eventLog collects recorded events.
type eventLog struct {
	mu  sync.Mutex
	evs []monitor.Event
	new chan struct{}
}

func newEvents() *eventLog { return &eventLog{new: make(chan struct{}, 100)} }

func (e *eventLog) record(ev monitor.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	e.new <- struct{}{}
}

func (e *eventLog) wait(t *testing.T) monitor.Event {
	t.Helper()
	select {
	case <-e.new:
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.evs[len(e.evs)-1]
}

// echoServer is a ConnServer for this package's tests only: it answers
// "src dst\n" and then echoes; the path "panic" panics, "block" blocks
// until released.
type echoServer struct {
	release chan struct{}
	// blocked gets a value when a "block" request has started.
	blocked chan struct{}
}

func (s *echoServer) ServeConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort) {
	defer c.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	// A request came: its slot is not reclaimed at the connection limit.
	proxy.Started(c)
	switch string(buf) {
	case "panic":
		panic("boom")
	case "block":
		select {
		case s.blocked <- struct{}{}:
		default:
		}
		select {
		case <-s.release:
		case <-ctx.Done():
		}
		return
	}
	_, _ = io.WriteString(c, src.String()+" "+dst.String()+"\n")
	_, _ = io.Copy(c, c)
}

type proxyFixture struct {
	store proxy.Store
	p     *proxy.Proxy
	ev    *eventLog
	addr  string
	srv   *echoServer
}

// newProxyFixture serves a proxy on loopback; every connection stands for
// the flow client:40000 → server:80 (the transparent view needs the
// datapath; see transparent_test.go).
func newProxyFixture(t *testing.T, maxConns int, dial func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error), kafka ...proxy.ConnServer) *proxyFixture {
	t.Helper()
	f := &proxyFixture{ev: newEvents(), srv: &echoServer{release: make(chan struct{}), blocked: make(chan struct{}, 16)}}
	o := proxy.Options{
		Resolver: &f.store, HTTP: f.srv, Record: f.ev.record, MaxConns: maxConns, Dial: dial,
		Flow: func(net.Conn) (netip.AddrPort, netip.AddrPort) {
			return netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80)
		},
	}
	if len(kafka) > 0 {
		o.Kafka = kafka[0]
	}
	var err error
	f.p, err = proxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- f.p.Serve(l) }()
	t.Cleanup(func() {
		close(f.srv.release)
		_ = f.p.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f
}

func (f *proxyFixture) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", f.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	return c
}

// wantRefused connects and checks that the connection is reset, which may
// happen before connect(2) returns.
func (f *proxyFixture) wantRefused(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", f.addr, time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	wantReset(t, c)
}

// wantReset reads from c until it fails and checks that it was reset.
func wantReset(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want a connection reset", err)
	}
}

func TestProxyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		yamls   []string
		noSnap  bool
		verdict string
		reason  string
	}{
		{name: "no snapshot", noSnap: true, verdict: monitor.VerdictError, reason: "no policy snapshot"},
		{name: "L4 deny", yamls: []string{egressHTTP, ingressOtherPort}, verdict: monitor.VerdictDenied, reason: "denied at L4 by the ingress policy of default/server: default deny"},
		{name: "parser conflict", yamls: []string{egressHTTP, ingressKafka}, verdict: monitor.VerdictError, reason: "needs http but"},
		{name: "no kafka server", yamls: []string{ingressKafka}, verdict: monitor.VerdictError, reason: "no Kafka proxy configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newProxyFixture(t, 0, nil)
			if !tc.noSnap {
				f.store.Set(testSnapshot(t, []string{"client", "server"}, false, tc.yamls...))
			}
			f.wantRefused(t)
			e := f.ev.wait(t)
			if e.Verdict != tc.verdict || !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("event %s %q, want %s %q", e.Verdict, e.Reason, tc.verdict, tc.reason)
			}
			if e.Source.IP != clientIP.String() || e.Destination.Port != 80 || e.Type != monitor.TypeL7 {
				t.Errorf("event %+v", e)
			}
		})
	}
}

func TestProxyDispatchesHTTP(t *testing.T) {
	f := newProxyFixture(t, 0, nil)
	f.store.Set(testSnapshot(t, []string{"client", "server"}, false, egressHTTP))
	c := f.dial(t)
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("10.244.1.1:40000 10.244.1.2:80\n"))
	if _, err := io.ReadFull(c, line); err != nil {
		t.Fatal(err)
	}
	if got := string(line); got != "10.244.1.1:40000 10.244.1.2:80\n" {
		t.Errorf("server saw %q", got)
	}
}

// TestProxyPanic: a panic while serving one connection resets it, is
// reported, and the proxy goes on serving.
func TestProxyPanic(t *testing.T) {
	f := newProxyFixture(t, 0, nil)
	f.store.Set(testSnapshot(t, []string{"client", "server"}, false, egressHTTP))
	proxy.QuietPanics(t)
	c := f.dial(t)
	_, _ = io.WriteString(c, "panic")
	wantReset(t, c)
	if e := f.ev.wait(t); e.Verdict != monitor.VerdictError || !strings.Contains(e.Reason, "proxy panic: boom") {
		t.Errorf("event %+v", e)
	}
	c = f.dial(t)
	_, _ = io.WriteString(c, "hello")
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
}

// TestProxyMaxConns: beyond the bound a new connection is reset at once.
func TestProxyMaxConns(t *testing.T) {
	f := newProxyFixture(t, 1, nil)
	f.store.Set(testSnapshot(t, []string{"client", "server"}, false, egressHTTP))
	c1 := f.dial(t)
	_, _ = io.WriteString(c1, "block")
	// Wait until its request has started: until then its slot could be
	// reclaimed for the next client instead of that one being refused.
	select {
	case <-f.srv.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("first connection not served")
	}
	if n := f.p.Active(); n != 1 {
		t.Fatalf("%d active connections, want 1", n)
	}
	f.wantRefused(t)
	if e := f.ev.wait(t); !strings.Contains(e.Reason, "too many connections (limit 1)") || e.L7.Refused != proxy.RefusedConnLimit {
		t.Errorf("event %+v", e)
	}
}

// TestProxyRelaysL4Allow: a redirected flow whose policy became a plain
// allow is relayed to its original destination.
func TestProxyRelaysL4Allow(t *testing.T) {
	up, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		c, err := up.Accept()
		if err == nil {
			_, _ = io.Copy(c, c)
			_ = c.Close()
		}
	}()
	dialed := make(chan netip.AddrPort, 1) // written by the proxy's goroutine
	f := newProxyFixture(t, 0, func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
		dialed <- dst
		return net.Dial("tcp4", up.Addr().String())
	})
	f.store.Set(testSnapshot(t, []string{"client", "server"}, false, egressL4))
	c := f.dial(t)
	_, _ = io.WriteString(c, "ping")
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("relay: %q, %v", got, err)
	}
	if d := <-dialed; d != netip.AddrPortFrom(serverIP, 80) {
		t.Errorf("dialed %s", d)
	}
	if e := f.ev.wait(t); e.Verdict != monitor.VerdictForwarded {
		t.Errorf("event %+v", e)
	}
}

// TestProxyDispatchesKafka: a connection whose parser is Kafka goes to the
// Kafka server.
func TestProxyDispatchesKafka(t *testing.T) {
	ks := &echoServer{release: make(chan struct{})}
	f := newProxyFixture(t, 0, nil, ks)
	f.store.Set(testSnapshot(t, []string{"client", "server"}, false, ingressKafka))
	c := f.dial(t)
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("10.244.1.1:40000 10.244.1.2:80\n"))
	if _, err := io.ReadFull(c, line); err != nil {
		t.Fatal(err)
	}
	if got := string(line); got != "10.244.1.1:40000 10.244.1.2:80\n" {
		t.Errorf("kafka server saw %q", got)
	}
}
