package dns

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/dnstest"
	"portcullis.dev/portcullis/monitor"
)

// TestDNSPerf measures the proxy with dnsperf (Debian's dnsperf) on
// loopback, direct to dnsmasq and through the proxy, in one run so that
// the ratios hold: the most queries per second for 10 s, and the latency
// percentiles at a fixed 1,000 queries per second. It runs only with
// PORTCULLIS_DNSPERF=1 (go test -run TestDNSPerf -v ./proxy/dns/).
func TestDNSPerf(t *testing.T) {
	if os.Getenv("PORTCULLIS_DNSPERF") != "1" {
		t.Skip("set PORTCULLIS_DNSPERF=1 to run dnsperf")
	}
	if _, err := exec.LookPath("dnsperf"); err != nil {
		t.Skip("dnsperf not installed (Debian package dnsperf)")
	}
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), records...)
	// Events are counted, not kept: the agent publishes them to its hub.
	var n atomic.Int64
	e := newEnv(t, up, func(o *Options) { o.Record = func(monitor.Event) { n.Add(1) } })
	queries := t.TempDir() + "/queries"
	if err := os.WriteFile(queries, []byte("api.example.com A\nallowed.test A\nwww.example.com A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, target := range []struct {
		name string
		addr netip.AddrPort
	}{{"direct", up}, {"proxy", e.addr}} {
		qps := dnsperf(t, target.addr, queries, "-l", "10", "-c", "8", "-q", "200")
		lat := dnsperfLatencies(t, target.addr, queries, "-l", "10", "-Q", "1000", "-v")
		t.Logf("%s: %s queries/s (max, -c 8 -q 200); at 1000 qps: p50 %s p99 %s p99.9 %s of %d",
			target.name, qps, pct(lat, 50), pct(lat, 99), pct(lat, 99.9), len(lat))
	}
}

func dnsperf(t *testing.T, to netip.AddrPort, queries string, args ...string) string {
	t.Helper()
	out, err := exec.Command("dnsperf", append([]string{"-s", to.Addr().String(), "-p", fmt.Sprint(to.Port()), "-d", queries}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "Queries" && f[1] == "per" {
			return f[3]
		}
	}
	t.Fatalf("no queries per second in:\n%s", out)
	return ""
}

// dnsperfLatencies runs dnsperf -v and returns each answer's latency.
func dnsperfLatencies(t *testing.T, to netip.AddrPort, queries string, args ...string) []time.Duration {
	t.Helper()
	out, err := exec.Command("dnsperf", append([]string{"-s", to.Addr().String(), "-p", fmt.Sprint(to.Port()), "-d", queries}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf: %v\n%s", err, out)
	}
	var lat []time.Duration
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 5 && f[0] == ">" {
			s, err := strconv.ParseFloat(f[4], 64)
			if err == nil {
				lat = append(lat, time.Duration(s*float64(time.Second)))
			}
		}
	}
	if len(lat) == 0 {
		t.Fatalf("no latencies in:\n%s", out)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i].Round(time.Microsecond)
}
