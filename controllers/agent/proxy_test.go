package agent

import (
	"net/netip"
	"testing"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/proxy"
)

// TestIPCacheView: the proxy's address → identity view answers as the
// datapath's ipcache (host entries, then the longest prefix, a miss is
// world) and does not follow later changes of the agent's map.
func TestIPCacheView(t *testing.T) {
	ids := map[policy.NumericIdentity]*policy.Identity{
		policy.IdentityWorld: {ID: policy.IdentityWorld},
		300:                  {ID: 300},
		1 << 24:              {ID: 1 << 24},
		1<<24 + 1:            {ID: 1<<24 + 1},
	}
	cache := map[netip.Prefix]policy.NumericIdentity{
		netip.MustParsePrefix("10.244.0.5/32"): 300,
		netip.MustParsePrefix("192.0.2.0/24"):  1 << 24,
		netip.MustParsePrefix("192.0.2.0/28"):  1<<24 + 1,
		netip.MustParsePrefix("10.244.0.6/32"): 999, // an identity the engine no longer has
	}
	v := newIPCacheView(cache, func(n policy.NumericIdentity) *policy.Identity { return ids[n] })
	cache[netip.MustParsePrefix("10.244.0.7/32")] = 300 // after the copy
	for _, tc := range []struct {
		addr string
		want policy.NumericIdentity
	}{
		{"10.244.0.5", 300},
		{"192.0.2.3", 1<<24 + 1},
		{"192.0.2.200", 1 << 24},
		{"198.51.100.1", policy.IdentityWorld},
		{"10.244.0.6", 999},
		{"10.244.0.7", policy.IdentityWorld},
	} {
		got := v.lookup(netip.MustParseAddr(tc.addr))
		if got == nil || got.ID != tc.want {
			t.Errorf("%s: %v, want %d", tc.addr, got, tc.want)
		}
	}
}

func TestProxyRequestCount(t *testing.T) {
	m, err := proxy.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	before := ProxyRequestCount("grpc", monitor.VerdictDenied)
	m.Observe(monitor.Event{Verdict: monitor.VerdictDenied, L7: &monitor.L7{Protocol: "grpc"}})
	if got := ProxyRequestCount("grpc", monitor.VerdictDenied); got != before+1 {
		t.Errorf("count %v, want %v", got, before+1)
	}
}
