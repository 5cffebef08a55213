package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"portcullis.dev/portcullis/internal/dnstest"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
)

// The client pod is clientIP and the DNS server pod serverIP, where
// dnsmasq listens; the proxy judges every query as clientIP → serverIP:53.
var (
	clientIP = netip.MustParseAddr("127.0.0.2")
	serverIP = netip.MustParseAddr("127.0.0.3")
)

// dnsPolicy lets the client look up *.example.com and allowed.test.
const dnsPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns:
        - matchPattern: "*.example.com"
        - matchName: "allowed.test"
`

// records are dnsmasq's: names the policy allows and names it does not
// (which dnsmasq would answer, so a REFUSED is the proxy's).
var records = []dnstest.Record{
	"host-record=api.example.com,10.96.1.1",
	"host-record=api2.example.com,10.96.1.2",
	"host-record=allowed.test,10.96.1.3",
	"host-record=denied.test,10.96.1.4",
	"host-record=db.example.org,10.96.1.5",
	"cname=www.example.com,api2.example.com",
	"local=/example.com/",
}

func snapshot(t testing.TB, yaml string) *proxy.Snapshot {
	t.Helper()
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, false)
	policytest.Apply(t, repo, yaml)
	client, server := policytest.Pod("client", clientIP), policytest.Pod("server", serverIP)
	repo.UpsertEndpoint(client)
	repo.UpsertEndpoint(server)
	return policytest.Snapshot(repo, client, server)
}

// events collects the proxy's events.
type events struct {
	mu sync.Mutex
	ev []monitor.Event
}

func (e *events) record(ev monitor.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

// wait returns the first event that match accepts, failing after 2 s.
func (e *events) wait(t testing.TB, what string, match func(monitor.Event) bool) monitor.Event {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.ev {
			if match(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		all := append([]monitor.Event(nil), e.ev...)
		e.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no event %s among %d: %+v", what, len(all), all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *events) query(t testing.TB, name, verdict string) monitor.Event {
	t.Helper()
	return e.wait(t, verdict+" "+name, func(ev monitor.Event) bool {
		return ev.Verdict == verdict && ev.L7 != nil && ev.L7.DNS != nil && ev.L7.DNS.Query == name
	})
}

// env is the DNS proxy on 127.0.0.1 (UDP and TCP on one port) in front
// of upstream (dnsmasq unless a test says otherwise).
type env struct {
	addr   netip.AddrPort
	events *events
	srv    *Server
	store  *proxy.Store
}

type envOpt func(*Options)

func newEnv(t *testing.T, upstream netip.AddrPort, opts ...envOpt) *env {
	t.Helper()
	e := &env{events: &events{}, store: &proxy.Store{}}
	e.store.Set(snapshot(t, dnsPolicy))
	o := Options{
		Resolver: e.store,
		Record:   e.events.record,
		Flow: func(src, _ netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
			return netip.AddrPortFrom(clientIP, src.Port()), netip.AddrPortFrom(serverIP, 53)
		},
		Upstream: func(netip.AddrPort) netip.AddrPort { return upstream },
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.addr = dnstest.FreePort(t, netip.MustParseAddr("127.0.0.1"))
	uc, err := ListenUDP(context.Background(), e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.ServeUDP(uc); err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			src := netip.MustParseAddrPort(c.RemoteAddr().String())
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(context.Background(), c, src, e.addr)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		_ = srv.Close()
		wg.Wait()
	})
	return e
}

// dig runs dig against the proxy.
func (e *env) dig(t testing.TB, args ...string) dnstest.Answer {
	t.Helper()
	return dnstest.Dig(t, append([]string{"@" + e.addr.Addr().String(), "-p", fmt.Sprint(e.addr.Port())}, args...)...)
}

// exchange sends m over net ("udp" or "tcp") and returns the answer.
func (e *env) exchange(t testing.TB, network string, m *mdns.Msg) (*mdns.Msg, error) {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, e.addr.String())
	return r, err
}

// silentUDP is a UDP socket that reads queries and never answers.
func silentUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// silentTCP accepts connections on the port of a (for UDP and TCP at once)
// and reads without ever answering.
func silentTCP(t *testing.T, a netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						_ = c.Close()
						return
					}
				}
			}()
		}
	}()
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func sameAddrs(a, b []netip.Addr) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func hasAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
