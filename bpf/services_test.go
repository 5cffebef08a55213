package bpf

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/policy"
)

// The client may reach the servers only (egress enforced): a Service
// address that were checked untranslated would be world and dropped.
const lbPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]
  ingress: [{}]
---
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]
`

var (
	vip     = netip.MustParseAddr("10.96.0.10")
	tcpSvc  = ServiceKey{Addr: vip, Port: 80, Proto: policy.ProtoTCP}
	udpSvc  = ServiceKey{Addr: vip, Port: 53, Proto: policy.ProtoUDP}
	lbNames = map[netip.Addr]string{}
)

type lbFixture struct {
	*fixture
	servers []*testPod
}

// newLBFixture is a client and two servers, each server answering TCP on
// 8080 and UDP on 5353 with its name, and the Service tcpSvc/udpSvc with
// both servers as backends.
func newLBFixture(t testing.TB) *lbFixture {
	t.Helper()
	c := &testPod{name: "client", ip: netip.MustParseAddr(clientIP), labels: map[string]string{"app": "client"}}
	s1 := &testPod{name: "server1", ip: netip.MustParseAddr("10.244.1.3"), labels: map[string]string{"app": "server"}}
	s2 := &testPod{name: "server2", ip: netip.MustParseAddr("10.244.1.4"), labels: map[string]string{"app": "server"}}
	pods := []*testPod{c, s1, s2}
	tn := newTestNet(t, pods...)
	f := &fixture{tn: tn, a: c, b: s1, epIDs: map[string]uint32{"client": 11, "server1": 12, "server2": 13}}
	f.eng = newEngine(t, pods, lbPolicy)
	f.d = loadDP(t, Options{RuleID: f.eng.ruleID})
	f.ev = collectEvents(t, f.d)
	for name, p := range tn.pods {
		if err := f.d.SetIPCache(netip.PrefixFrom(p.ip, 32), f.eng.ids[name]); err != nil {
			t.Fatal(err)
		}
	}
	f.eng.sync(t, f.d, tn.pods, f.epIDs)
	for name, p := range tn.pods {
		if err := netnstest.Run(tn.node, func() error {
			return f.d.AttachEndpoint(p.ifidx, p.ip, f.epIDs[name], FlagEnforceIngress|FlagEnforceEgress)
		}); err != nil {
			t.Fatal(err)
		}
	}
	lf := &lbFixture{fixture: f, servers: []*testPod{s1, s2}}
	for _, s := range lf.servers {
		lbNames[s.ip] = s.name
		serveName(t, s, listenTCP(t, s.ns, nil, addr(s.ip, 8080)))
		serveNameUDP(t, s)
	}
	lf.setBackends(t, s1, s2)
	return lf
}

// setBackends makes the servers the backends of both Service ports.
func (lf *lbFixture) setBackends(t testing.TB, servers ...*testPod) {
	t.Helper()
	var tcp, udp []Backend
	for _, s := range servers {
		tcp = append(tcp, Backend{Addr: s.ip, Port: 8080})
		udp = append(udp, Backend{Addr: s.ip, Port: 5353})
	}
	if err := lf.d.SetService(tcpSvc, tcp); err != nil {
		t.Fatal(err)
	}
	if err := lf.d.SetService(udpSvc, udp); err != nil {
		t.Fatal(err)
	}
}

// serveName answers every connection with the server's name, then echoes.
func serveName(t testing.TB, s *testPod, l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := c.Write([]byte(s.name + "\n")); err != nil {
					return
				}
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// serveNameUDP answers every datagram on 5353 with the server's name.
func serveNameUDP(t testing.TB, s *testPod) {
	t.Helper()
	var pc net.PacketConn
	if err := netnstest.Run(s.ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr(s.ip, 5353)); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(s.name), from)
		}
	}()
}

// connectService opens a TCP connection to the Service from the client and
// returns it with the name of the backend that answered.
func (lf *lbFixture) connectService(t *testing.T) (net.Conn, string) {
	t.Helper()
	c, err := dial(lf.a.ns, "tcp4", addr(vip, 80), time.Second)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr(vip, 80), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if got := c.RemoteAddr().String(); got != addr(vip, 80) {
		t.Errorf("peer address %s, want the Service's %s", got, addr(vip, 80))
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the backend's name through %s: %v", addr(vip, 80), err)
	}
	return c, strings.TrimSpace(name)
}

// queryService sends one datagram to the UDP Service port on a connected
// socket (which accepts replies from the Service address only) and
// returns the answer.
func (lf *lbFixture) queryService(timeout time.Duration) (string, error) {
	c, err := dial(lf.a.ns, "udp4", addr(vip, 53), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("q")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func TestServiceTranslation(t *testing.T) {
	lf := newLBFixture(t)

	t.Run("tcp reaches every backend through the egress check", func(t *testing.T) {
		seen := map[string]int{}
		for range 24 {
			c, name := lf.connectService(t)
			if err := roundTrip(c, "ping", time.Second); err != nil {
				t.Fatalf("echo through the Service (%s): %v", name, err)
			}
			seen[name]++
			_ = c.Close()
		}
		if seen["server1"] == 0 || seen["server2"] == 0 || len(seen) != 2 {
			t.Errorf("backends chosen %v, want both servers", seen)
		}
		// The verdict event names the backend and its identity.
		e := lf.ev.wait(t, "allow through the Service", func(e Event) bool {
			return e.Verdict == EventAllow && e.Direction == policy.Ingress && e.Dst.Port() == 8080 && e.Src.Addr() == lf.a.ip
		})
		if name := lbNames[e.Dst.Addr()]; name == "" || e.DstIdentity != lf.eng.ids[name] || e.Service != netip.AddrPortFrom(vip, 80) {
			t.Errorf("event %+v: want a backend and its identity, and the Service %s", e, addr(vip, 80))
		}
		if n := lf.ev.count(func(e Event) bool { return e.Dst.Addr() == vip }); n != 0 {
			t.Errorf("%d events name the Service address, want the backends only", n)
		}
	})

	t.Run("udp answers come from the Service address", func(t *testing.T) {
		seen := map[string]int{}
		for range 24 {
			name, err := lf.queryService(time.Second)
			if err != nil {
				t.Fatalf("udp query to %s: %v", addr(vip, 53), err)
			}
			seen[name]++
		}
		if seen["server1"] == 0 || seen["server2"] == 0 || len(seen) != 2 {
			t.Errorf("backends chosen %v, want both servers", seen)
		}
	})

	t.Run("no backends refuses at once", func(t *testing.T) {
		lf.setBackends(t)
		defer lf.setBackends(t, lf.servers...)
		start := time.Now()
		_, err := dial(lf.a.ns, "tcp4", addr(vip, 80), 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("tcp connect: %v, want connection refused", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("refusal took %v", d)
		}
		_, err = lf.queryService(2 * time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("udp query: %v, want connection refused (ICMP port unreachable)", err)
		}
		lf.ev.wait(t, "no-backend drop", func(e Event) bool { return e.Verdict == EventDrop && e.Reason == ReasonNoBackend })
	})

	t.Run("a removed backend resets its connections only", func(t *testing.T) {
		conns := map[string]net.Conn{}
		for i := 0; len(conns) < 2 && i < 64; i++ {
			c, name := lf.connectService(t)
			if conns[name] == nil {
				conns[name] = c
			}
		}
		if len(conns) != 2 {
			t.Fatalf("connections to %d backends, want 2", len(conns))
		}
		lf.setBackends(t, lf.servers[1])
		defer lf.setBackends(t, lf.servers...)
		err := roundTrip(conns["server1"], "after", time.Second)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection to the removed backend: %v, want reset", err)
		}
		if err := roundTrip(conns["server2"], "after", time.Second); err != nil {
			t.Errorf("connection to the remaining backend: %v", err)
		}
		for range 12 {
			c, name := lf.connectService(t)
			if name != "server2" {
				t.Fatalf("new connection went to %s, want server2", name)
			}
			_ = c.Close()
		}
		for range 6 {
			if name, err := lf.queryService(time.Second); err != nil || name != "server2" {
				t.Fatalf("udp query: %q, %v; want server2", name, err)
			}
		}
	})

	t.Run("a pod reaches itself through its Service", func(t *testing.T) {
		self := lf.servers[0]
		lf.eng.apply(t, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]
`)
		lf.eng.sync(t, lf.d, lf.tn.pods, lf.epIDs)
		lf.setBackends(t, self)
		defer lf.setBackends(t, lf.servers...)
		for range 3 {
			c, err := dial(self.ns, "tcp4", addr(vip, 80), time.Second)
			if err != nil {
				t.Fatalf("%s -> its own Service %s: %v", self.name, addr(vip, 80), err)
			}
			_ = c.SetDeadline(time.Now().Add(time.Second))
			name, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || strings.TrimSpace(name) != self.name {
				t.Fatalf("greeting %q, %v; want %s", name, err, self.name)
			}
			if err := roundTrip(c, "hairpin", time.Second); err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
		}
		var answer string
		err := netnstest.Run(self.ns, func() error {
			c, err := net.DialTimeout("udp4", addr(vip, 53), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte("q")); err != nil {
				return err
			}
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			answer = string(buf[:n])
			return err
		})
		if err != nil || answer != self.name {
			t.Fatalf("udp to its own Service: %q, %v", answer, err)
		}
	})

	t.Run("an L7 redirect sees the backend", func(t *testing.T) {
		var teardown func() error
		if err := netnstest.Run(lf.tn.node, func() (err error) { teardown, err = SetupProxyRouting(); return }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := netnstest.Run(lf.tn.node, teardown); err != nil {
				t.Errorf("routing teardown: %v", err)
			}
		})
		proxy := startProxy(t, lf.tn.node, DefaultProxyPort)
		lf.eng.apply(t, `
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
`)
		lf.eng.sync(t, lf.d, lf.tn.pods, lf.epIDs)
		c, name := lf.connectService(t)
		if err := roundTrip(c, "through the proxy", time.Second); err != nil {
			t.Fatal(err)
		}
		got := proxy.seen()
		if len(got) != 1 {
			t.Fatalf("proxy accepted %d connections, want 1", len(got))
		}
		backend := lf.tn.pods[name].ip
		if got[0][0] != netip.AddrPortFrom(backend, 8080) || got[0][1] != c.LocalAddr().(*net.TCPAddr).AddrPort() {
			t.Errorf("proxy saw local %s remote %s, want the backend %s and the client %s", got[0][0], got[0][1], netip.AddrPortFrom(backend, 8080), c.LocalAddr())
		}
		lf.ev.wait(t, "redirect to the backend", func(e Event) bool {
			return e.Verdict == EventRedirect && e.Dst == netip.AddrPortFrom(backend, 8080) && e.DstIdentity == lf.eng.ids[name]
		})
	})

	t.Run("listing and deletion", func(t *testing.T) {
		got := lf.d.Services()
		if len(got) != 2 || got[0].Key != udpSvc || got[1].Key != tcpSvc || len(got[1].Backends) != 2 {
			t.Fatalf("Services() = %+v", got)
		}
		if err := lf.d.DeleteService(tcpSvc); err != nil {
			t.Fatal(err)
		}
		if got := lf.d.Services(); len(got) != 1 {
			t.Fatalf("after delete: %+v", got)
		}
	})
}

// TestServicesSurviveRestart: a new Load over pinned maps lists the
// services the previous one programmed, and updates them in place.
func TestServicesSurviveRestart(t *testing.T) {
	pin := bpffs(t) + "/portcullis"
	d := loadDP(t, Options{PinPath: pin})
	bes := []Backend{{Addr: netip.MustParseAddr("10.244.1.3"), Port: 8080}, {Addr: netip.MustParseAddr("10.244.1.4"), Port: 8080}}
	if err := d.SetService(tcpSvc, bes); err != nil {
		t.Fatal(err)
	}
	if err := d.SetService(udpSvc, nil); err != nil {
		t.Fatal(err)
	}
	want := d.Services()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := loadDP(t, Options{PinPath: pin})
	t.Cleanup(func() { _ = d2.Remove() })
	got := d2.Services()
	if len(got) != len(want) {
		t.Fatalf("after restart %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i].Key != want[i].Key || got[i].ID != want[i].ID || !slices.Equal(got[i].Backends, want[i].Backends) {
			t.Errorf("after restart %+v, want %+v", got[i], want[i])
		}
	}
	if err := d2.SetService(tcpSvc, bes[1:]); err != nil {
		t.Fatal(err)
	}
	var k datapathServiceKey
	var v datapathServiceValue
	n := 0
	for it := d2.objs.Services.Iterate(); it.Next(&k, &v); {
		n++
	}
	var id uint32
	var b datapathBackend
	nb := 0
	for it := d2.objs.Backends.Iterate(); it.Next(&id, &b); {
		nb++
	}
	// tcp: count + 1 slot; udp: count. One backend left.
	if n != 3 || nb != 1 {
		t.Errorf("maps hold %d service entries and %d backends, want 3 and 1", n, nb)
	}
}

// BenchmarkConnect measures new TCP connections per second from a pod
// whose egress is enforced: straight to a backend's pod address, and to a
// ClusterIP with that pod as its only backend (translated both ways).
// Each connection reads the server's greeting and closes. Figures are in
// docs/design/services.md.
func BenchmarkConnect(b *testing.B) {
	lf := newLBFixture(b)
	lf.setBackends(b, lf.servers[0])
	for _, c := range []struct{ name, addr string }{
		{"pod-ip", addr(lf.servers[0].ip, 8080)},
		{"cluster-ip", addr(vip, 80)},
	} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 16)
			err := netnstest.Run(lf.a.ns, func() error {
				b.ResetTimer()
				for range b.N {
					conn, err := net.DialTimeout("tcp4", c.addr, time.Second)
					if err != nil {
						return err
					}
					if _, err := conn.Read(buf); err != nil {
						return err
					}
					_ = conn.Close()
				}
				b.StopTimer()
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// TestServiceUpdateIsAtomic runs from_pod on new connections to a Service
// while another goroutine switches the Service between two disjoint
// backend sets of different sizes: every packet must be translated to a
// backend of one of them, none refused (no lookup meets a half-written
// Service).
func TestServiceUpdateIsAtomic(t *testing.T) {
	d := loadDP(t, Options{})
	src := netip.MustParseAddr(clientIP)
	k := addrU32(src)
	if err := d.objs.Endpoints.Put(&k, &datapathEndpointInfo{EpId: 1}); err != nil {
		t.Fatal(err)
	}
	var setA, setB []Backend
	valid := map[netip.Addr]bool{}
	for i := range 5 {
		b := Backend{Addr: netip.AddrFrom4([4]byte{10, 244, 2, byte(10 + i)}), Port: 8080}
		valid[b.Addr] = true
		if i < 2 {
			setA = append(setA, b)
		} else {
			setB = append(setB, b)
		}
	}
	if err := d.SetService(tcpSvc, setA); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	flips := make(chan int)
	go func() {
		n := 0
		defer func() { flips <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			set := setB
			if n%2 == 1 {
				set = setA
			}
			if err := d.SetService(tcpSvc, set); err != nil {
				t.Error(err)
				return
			}
			n++
		}
	}()
	bad := 0
	const runs = 20000
	for i := range runs {
		pkt := tcpPacket(src, vip, uint16(1024+i%60000), 80, 0x02)
		out := make([]byte, len(pkt))
		opts := ebpf.RunOptions{Data: pkt, DataOut: out, Repeat: 1}
		ret, err := d.objs.FromPod.Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		dst := netip.AddrFrom4([4]byte(out[30:34]))
		if ret != 0 || !valid[dst] {
			if bad == 0 {
				t.Logf("first miss: verdict %d, destination %s", ret, dst)
			}
			bad++
		}
	}
	close(stop)
	n := <-flips
	if bad > 0 {
		t.Errorf("%d of %d new connections were not translated to a backend while the Service changed %d times", bad, runs, n)
	}
	t.Logf("%d connections, %d Service updates", runs, n)
}
