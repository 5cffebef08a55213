package bpf

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/policy"
)

const (
	clientIP = "10.244.1.2"
	serverIP = "10.244.1.3"
	// How long a connection that should fail gets.
	denyTimeout = 300 * time.Millisecond
	defaultWait = time.Second
)

const serverPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}, {port: "9000", endPort: 9100, protocol: TCP}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps:
    - fields: [{type: EchoRequest, family: IPv4}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "9091", protocol: TCP}]
`

// The client accepts nothing: replies to its own connections must ride
// their flow entries.
const clientPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  ingress: [{}]
`

type fixture struct {
	tn    *testNet
	d     *Datapath
	eng   *engine
	ev    *eventLog
	epIDs map[string]uint32
	a, b  *testPod
}

func newFixture(t *testing.T, yamls ...string) *fixture {
	t.Helper()
	return newFixtureWith(t, Options{}, yamls...)
}

func newFixtureWith(t *testing.T, opts Options, yamls ...string) *fixture {
	t.Helper()
	a := &testPod{name: "client", ip: netip.MustParseAddr(clientIP), labels: map[string]string{"app": "client"}}
	b := &testPod{name: "server", ip: netip.MustParseAddr(serverIP), labels: map[string]string{"app": "server"}}
	tn := newTestNet(t, a, b)
	f := &fixture{tn: tn, a: a, b: b, epIDs: map[string]uint32{"client": 11, "server": 12}}
	f.eng = newEngine(t, []*testPod{a, b}, yamls...)
	opts.RuleID = f.eng.ruleID
	f.d = loadDP(t, opts)
	f.ev = collectEvents(t, f.d)
	for name, p := range tn.pods {
		if err := f.d.SetIPCache(netip.PrefixFrom(p.ip, 32), f.eng.ids[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.d.SetIPCache(netip.MustParsePrefix(hostAddr+"/32"), policy.IdentityHost); err != nil {
		t.Fatal(err)
	}
	f.eng.sync(t, f.d, tn.pods, f.epIDs)
	for name, p := range tn.pods {
		err := netnstest.Run(tn.node, func() error {
			idx, err := HostInterface(p.ip)
			if err != nil {
				return err
			}
			if idx != p.ifidx {
				t.Errorf("HostInterface(%s) = %d, want %d", p.ip, idx, p.ifidx)
			}
			return f.d.AttachEndpoint(idx, p.ip, f.epIDs[name], FlagEnforceIngress|FlagEnforceEgress)
		})
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skipf("attach: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func addr(ip netip.Addr, port int) string {
	return netip.AddrPortFrom(ip, uint16(port)).String()
}

func (f *fixture) mustConnect(t *testing.T, from *testPod, to string) net.Conn {
	t.Helper()
	c, err := dial(from.ns, "tcp4", to, time.Second)
	if err != nil {
		t.Fatalf("%s -> %s: %v", from.name, to, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := roundTrip(c, "hello", time.Second); err != nil {
		t.Fatalf("%s -> %s: %v", from.name, to, err)
	}
	return c
}

func (f *fixture) mustNotConnect(t *testing.T, from *testPod, to string) {
	t.Helper()
	c, err := dial(from.ns, "tcp4", to, denyTimeout)
	if err == nil {
		_ = c.Close()
		t.Fatalf("%s -> %s connected, want dropped", from.name, to)
	}
}

func TestEnforcement(t *testing.T) {
	f := newFixture(t, serverPolicy, clientPolicy)
	a, b := f.a, f.b
	for _, port := range []int{8080, 9050, 9091, 9190} {
		echo(listenTCP(t, b.ns, nil, addr(b.ip, port)))
	}
	echo(listenTCP(t, a.ns, nil, addr(a.ip, 7000)))
	idA, idB := f.eng.ids["client"], f.eng.ids["server"]

	// Allowed ports connect; the SYN-ACK and data replies reach the client
	// although its ingress allows nothing.
	open := f.mustConnect(t, a, addr(b.ip, 8080))
	f.mustConnect(t, a, addr(b.ip, 9050)) // inside the 9000-9100 range

	t.Run("default deny drops with an event", func(t *testing.T) {
		f.mustNotConnect(t, a, addr(b.ip, 9190))
		e := f.ev.wait(t, "drop 9190", func(e Event) bool { return e.Verdict == EventDrop && e.Dst.Port() == 9190 })
		if e.EndpointID != 12 || e.Direction != policy.Ingress || e.SrcIdentity != idA || e.DstIdentity != idB ||
			e.Reason != ReasonPolicy || e.Proto != policy.ProtoTCP || e.Src.Addr() != a.ip || e.Dst.Addr() != b.ip || e.RuleID != 0 {
			t.Errorf("event %+v", e)
		}
	})
	t.Run("allowed flow reported once with its rule", func(t *testing.T) {
		src := netip.MustParseAddrPort(open.LocalAddr().String())
		isOpen := func(e Event) bool { return e.Verdict == EventAllow && e.Src == src }
		e := f.ev.wait(t, "allow 8080", isOpen)
		if want := f.eng.ruleIDByPath(t, "ingress[0].toPorts[0]"); e.RuleID != want || e.EndpointID != 12 || e.Direction != policy.Ingress ||
			e.Reason != ReasonPolicy || e.SrcIdentity != idA || e.DstIdentity != idB || e.Dst.Port() != 8080 {
			t.Errorf("event %+v, want rule %d of endpoint 12's ingress", e, want)
		}
		// The same flow passes the server's to_pod and sends more packets
		// (data, replies): still one event.
		if err := roundTrip(open, "again", time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if n := f.ev.count(isOpen); n != 1 {
			t.Errorf("%d allow events for one flow, want 1", n)
		}
	})
	t.Run("deny rule drops with its rule id", func(t *testing.T) {
		f.mustNotConnect(t, a, addr(b.ip, 9091))
		e := f.ev.wait(t, "drop 9091", func(e Event) bool { return e.Verdict == EventDrop && e.Dst.Port() == 9091 })
		if want := f.eng.ruleIDByPath(t, "ingressDeny[0]"); e.RuleID != want || e.SrcIdentity != idA || e.DstIdentity != idB {
			t.Errorf("event %+v, want rule %d", e, want)
		}
	})
	t.Run("reverse direction is denied", func(t *testing.T) {
		f.mustNotConnect(t, b, addr(a.ip, 7000))
		e := f.ev.wait(t, "drop 7000", func(e Event) bool { return e.Verdict == EventDrop && e.Dst.Port() == 7000 })
		if e.EndpointID != 11 || e.Direction != policy.Ingress || e.SrcIdentity != idB || e.DstIdentity != idA {
			t.Errorf("event %+v", e)
		}
	})
	t.Run("udp", func(t *testing.T) {
		for _, c := range []struct {
			port int
			want bool
		}{{5353, true}, {5354, false}} {
			var pc net.PacketConn
			if err := netnstest.Run(b.ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr(b.ip, c.port)); return }); err != nil {
				t.Fatal(err)
			}
			conn, err := dial(a.ns, "udp4", addr(b.ip, c.port), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = conn.Write([]byte("q"))
			_ = pc.SetReadDeadline(time.Now().Add(denyTimeout))
			buf := make([]byte, 8)
			_, _, err = pc.ReadFrom(buf)
			if got := err == nil; got != c.want {
				t.Errorf("udp %d: received = %v, want %v (%v)", c.port, got, c.want, err)
			}
			_ = conn.Close()
			_ = pc.Close()
		}
	})
	t.Run("icmp", func(t *testing.T) {
		if err := ping(a.ns, b.ip, 0x4242, time.Second); err != nil {
			t.Errorf("client pings server: %v", err)
		}
		if err := ping(b.ns, a.ip, 0x4343, denyTimeout); err == nil {
			t.Errorf("server pings client: got a reply, want dropped")
		}
		f.ev.wait(t, "icmp drop", func(e Event) bool {
			return e.Verdict == EventDrop && e.Proto == policy.ProtoICMP && e.Dst.Port() == 8 && e.EndpointID == 11
		})
	})
	t.Run("audit passes and reports", func(t *testing.T) {
		if err := f.d.SetEndpointFlags(b.ip, FlagEnforceIngress|FlagEnforceEgress|FlagAudit); err != nil {
			t.Fatal(err)
		}
		f.mustConnect(t, a, addr(b.ip, 9190))
		e := f.ev.wait(t, "audit 9190", func(e Event) bool { return e.Verdict == EventAudit && e.Dst.Port() == 9190 })
		if e.EndpointID != 12 || e.SrcIdentity != idA || e.DstIdentity != idB {
			t.Errorf("event %+v", e)
		}
		if err := f.d.SetEndpointFlags(b.ip, FlagEnforceIngress|FlagEnforceEgress); err != nil {
			t.Fatal(err)
		}
		f.mustNotConnect(t, a, addr(b.ip, 9190))
	})
	t.Run("lockdown drops everything", func(t *testing.T) {
		if err := f.d.SetEndpointFlags(b.ip, FlagEnforceIngress|FlagEnforceEgress|FlagLockdown); err != nil {
			t.Fatal(err)
		}
		f.mustNotConnect(t, a, addr(b.ip, 8080))
		if err := ping(a.ns, b.ip, 0x4444, denyTimeout); err == nil {
			t.Errorf("ping passed lockdown")
		}
		f.ev.wait(t, "lockdown", func(e Event) bool { return e.Reason == ReasonLockdown && e.EndpointID == 12 })
		if err := f.d.SetEndpointFlags(b.ip, FlagEnforceIngress|FlagEnforceEgress); err != nil {
			t.Fatal(err)
		}
		f.mustConnect(t, a, addr(b.ip, 8080))
	})
	t.Run("new deny stops an established connection", func(t *testing.T) {
		if err := roundTrip(open, "before", time.Second); err != nil {
			t.Fatal(err)
		}
		f.eng.apply(t, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: deny-8080, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
`)
		f.ev.reset()
		f.eng.sync(t, f.d, f.tn.pods, f.epIDs)
		if err := roundTrip(open, "after", denyTimeout); err == nil {
			t.Fatal("established connection still passes after a deny")
		}
		f.ev.wait(t, "drop of the established flow", func(e Event) bool {
			return e.Verdict == EventDrop && e.Dst.Port() == 8080 && e.RuleID != 0
		})
	})
}

// TestPolicyMapMatchesEngine checks the engine↔map contract: the two
// lookups of the program (peer's entries, else wildcard; longest prefix)
// give the engine's own lookup for every identity, protocol and boundary
// port, and a diff sync leaves no stale keys.
func TestPolicyMapMatchesEngine(t *testing.T) {
	requireKernel(t)
	pods := []*testPod{
		{name: "client", ip: netip.MustParseAddr(clientIP), labels: map[string]string{"app": "client"}},
		{name: "server", ip: netip.MustParseAddr(serverIP), labels: map[string]string{"app": "server"}},
		{name: "other", ip: netip.MustParseAddr("10.244.1.4"), labels: map[string]string{"app": "other"}},
	}
	eng := newEngine(t, pods, serverPolicy, clientPolicy, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEndpoints: [{matchLabels: {app: other}}]
    toPorts:
    - ports: [{port: "1000", endPort: 2999, protocol: TCP}]
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*"}]
  - toCIDR: ["192.0.2.0/24"]
  - toEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{protocol: VRRP}, {protocol: IGMP}]
  egressDeny:
  - toPorts:
    - ports: [{port: "25", protocol: TCP}]
  - toEntities: [world]
    toPorts:
    - ports: [{protocol: IGMP}]
`)
	d := loadDP(t, Options{RuleID: eng.ruleID, ProxyPort: func(*policy.Decision) uint16 { return 15053 }})
	ids := []policy.NumericIdentity{0, policy.IdentityHost, policy.IdentityWorld, eng.ids["client"], eng.ids["server"], eng.ids["other"], 1 << 24, 1<<24 + 1}
	ports := []uint16{0, 1, 24, 25, 26, 52, 53, 54, 999, 1000, 1001, 1023, 1024, 2047, 2048, 2998, 2999, 3000, 5353, 8079, 8080, 8081, 8999, 9000, 9001, 9091, 9100, 9101, 65534, 65535}
	protos := []uint8{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP, policy.ProtoVRRP, policy.ProtoIGMP, 47}

	check := func(t *testing.T) {
		t.Helper()
		want := 0
		for _, name := range []string{"client", "server"} {
			ep := eng.repo.EndpointPolicy("default", name)
			want += len(policyEntries(1, ep, eng.ruleID, func(*policy.Decision) uint16 { return 15053 }))
			epID := map[string]uint32{"client": 1, "server": 2}[name]
			for dir, st := range ep.State {
				for _, id := range ids {
					for _, proto := range protos {
						for _, port := range ports {
							we := st.Lookup(id, proto, port)
							k := policyKey{Prefixlen: policyPrefixFull, EpId: epID, Identity: uint32(id), Dir: uint8(dir), Proto: proto, Port: htons(port)}
							var v policyValue
							err := d.objs.Policy.Lookup(&k, &v)
							if err != nil && id != 0 {
								k.Identity = 0
								err = d.objs.Policy.Lookup(&k, &v)
							}
							if err != nil {
								t.Fatalf("%s %v id %d proto %d port %d: no entry (%v); engine: %s", name, policy.Direction(dir), id, proto, port, err, we)
							}
							wv := policyValue{Verdict: uint8(we.Decision.Verdict), RuleId: eng.ruleID(we.Decision.Rule)}
							if we.Decision.Verdict == policy.Redirect {
								wv.ProxyPort = htons(15053)
							}
							if v != wv {
								t.Errorf("%s %v id %d proto %d port %d: map %+v, engine %+v (%s)", name, policy.Direction(dir), id, proto, port, v, wv, we)
							}
						}
					}
				}
			}
		}
		var k policyKey
		var v policyValue
		n := 0
		for it := d.objs.Policy.Iterate(); it.Next(&k, &v); {
			n++
		}
		if used, _ := d.PolicyEntries(); n != want || used != want {
			t.Errorf("policy map holds %d keys (counted %d), want %d", n, used, want)
		}
	}
	syncAll := func() {
		for name, id := range map[string]uint32{"client": 1, "server": 2} {
			if err := d.SyncEndpointPolicy(id, eng.repo.EndpointPolicy("default", name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	syncAll()
	check(t)
	// A change rewrites only the difference and leaves nothing stale.
	eng.apply(t, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEndpoints: [{matchLabels: {app: other}}]
    toPorts:
    - ports: [{port: "1024", endPort: 2047, protocol: TCP}]
`)
	syncAll()
	check(t)
	if err := d.SyncEndpointPolicy(2, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.SyncEndpointPolicy(1, nil); err != nil {
		t.Fatal(err)
	}
	if used, _ := d.PolicyEntries(); used != 0 {
		t.Errorf("%d entries left after removing both endpoints", used)
	}
}

func TestMapFullLocksDown(t *testing.T) {
	requireKernel(t)
	pods := []*testPod{{name: "server", ip: netip.MustParseAddr(serverIP), labels: map[string]string{"app": "server"}},
		{name: "client", ip: netip.MustParseAddr(clientIP), labels: map[string]string{"app": "client"}}}
	eng := newEngine(t, pods, serverPolicy)
	d := loadDP(t, Options{PolicyMapSize: 4, RuleID: eng.ruleID})
	k := addrU32(pods[0].ip)
	v := datapathEndpointInfo{EpId: 7, Flags: uint32(FlagEnforceIngress)}
	if err := d.objs.Endpoints.Put(&k, &v); err != nil {
		t.Fatal(err)
	}
	err := d.SyncEndpointPolicy(7, eng.repo.EndpointPolicy("default", "server"))
	if !errors.Is(err, ErrMapFull) {
		t.Fatalf("err = %v, want ErrMapFull", err)
	}
	eps, err := d.Endpoints()
	if err != nil || len(eps) != 1 || eps[0].Flags&FlagLockdown == 0 {
		t.Fatalf("endpoints %+v (%v), want lockdown", eps, err)
	}
}

func TestPortPrefixes(t *testing.T) {
	for _, c := range [][2]uint16{{0, 65535}, {80, 80}, {0, 0}, {65535, 65535}, {1, 65534}, {1000, 2999}, {8080, 8090}, {1024, 2047}, {3, 5}} {
		pps := PortPrefixes(c[0], c[1])
		covered := map[uint32]bool{}
		for _, pp := range pps {
			size := uint32(1) << (16 - pp.Bits)
			if uint32(pp.Port)%size != 0 {
				t.Errorf("%v: prefix %+v not aligned", c, pp)
			}
			for p := uint32(pp.Port); p < uint32(pp.Port)+size; p++ {
				if covered[p] {
					t.Errorf("%v: port %d covered twice", c, p)
				}
				covered[p] = true
			}
		}
		for p := uint32(0); p <= 65535; p++ {
			if in := p >= uint32(c[0]) && p <= uint32(c[1]); covered[p] != in {
				t.Fatalf("%v: port %d covered=%v", c, p, covered[p])
			}
		}
	}
	if got := PortPrefixes(0, 65535); len(got) != 1 || got[0].Bits != 0 {
		t.Errorf("full range: %+v", got)
	}
	if got := PortPrefixes(1, 65534); len(got) != 30 {
		t.Errorf("1-65534: %d prefixes, want 30", len(got))
	}
}
