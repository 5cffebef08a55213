package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// tcpPacket builds an Ethernet/IPv4/TCP packet (checksums left zero: the
// program does not check them).
func tcpPacket(src, dst netip.Addr, sport, dport uint16, flags byte) []byte {
	p := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(p[12:], 0x0800)
	ip := p[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = 6
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12] = 5 << 4
	tcp[13] = flags
	return p
}

// BenchmarkFromPod measures the program per packet with BPF_PROG_TEST_RUN:
// an established flow (conntrack hit plus the per-packet policy re-check)
// and a new flow's first packet (a pure SYN is always decided anew:
// policy lookups and a conntrack write), each straight to the pod and
// through a Service address (translation to a backend before policy).
// Figures are in docs/benchmarks.md; the translation's design is
// docs/design/services.md.
func BenchmarkFromPod(b *testing.B) {
	if testing.Short() {
		b.Skip("short")
	}
	d, err := Load(Options{})
	if err != nil {
		b.Skipf("load: %v", err)
	}
	defer d.Close()
	src, dst := netip.MustParseAddr(clientIP), netip.MustParseAddr(serverIP)
	k := addrU32(src)
	v := datapathEndpointInfo{EpId: 1, Flags: uint32(FlagEnforceEgress)}
	if err := d.objs.Endpoints.Put(&k, &v); err != nil {
		b.Fatal(err)
	}
	pk := policyKey{Prefixlen: policyPrefixEntrySet, EpId: 1, Dir: 1}
	if err := d.objs.Policy.Put(&pk, &policyValue{}); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, pkt []byte, perCall bool) {
		ret, err := d.objs.FromPod.Run(&ebpf.RunOptions{Data: pkt, Repeat: 1})
		if err != nil {
			b.Skipf("BPF_PROG_TEST_RUN: %v", err)
		}
		if ret != 0 {
			b.Fatalf("verdict %d, want TC_ACT_OK", ret)
		}
		b.ResetTimer()
		if !perCall {
			_, per, err := d.objs.FromPod.Benchmark(pkt, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			return
		}
		// One run per call: the program rewrites a Service packet in place,
		// so a repeated run would see the backend's address from the
		// second time on. The kernel times each run (with the test run's
		// own overhead); the mean is reported.
		var total time.Duration
		for range b.N {
			_, took, err := d.objs.FromPod.Benchmark(pkt, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			total += took
		}
		b.ReportMetric(float64((total / time.Duration(b.N)).Nanoseconds()), "ns/pkt")
	}
	svc := netip.MustParseAddr("10.96.0.10")
	if err := d.SetService(ServiceKey{Addr: svc, Port: 80, Proto: 6}, []Backend{{Addr: dst, Port: 80}}); err != nil {
		b.Fatal(err)
	}
	b.Run("established", func(b *testing.B) { run(b, tcpPacket(src, dst, 40000, 80, 0x10), false) })
	b.Run("new-syn", func(b *testing.B) { run(b, tcpPacket(src, dst, 40001, 80, 0x02), false) })
	// Straight and through a Service, measured alike.
	b.Run("per-call/established", func(b *testing.B) { run(b, tcpPacket(src, dst, 40002, 80, 0x10), true) })
	b.Run("per-call/new-syn", func(b *testing.B) { run(b, tcpPacket(src, dst, 40003, 80, 0x02), true) })
	b.Run("per-call/service-established", func(b *testing.B) { run(b, tcpPacket(src, svc, 40004, 80, 0x10), true) })
	b.Run("per-call/service-new-syn", func(b *testing.B) { run(b, tcpPacket(src, svc, 40005, 80, 0x02), true) })
}
