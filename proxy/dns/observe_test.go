package dns

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"portcullis.dev/portcullis/internal/dnstest"
	"portcullis.dev/portcullis/monitor"
)

// holdObserver takes every name, and returns after delay (or when the
// hold runs out), noting when it returned.
type holdObserver struct {
	delay time.Duration
	mu    sync.Mutex
	got   []Observation
	done  time.Time
}

func (h *holdObserver) Observe(ctx context.Context, o Observation) ([]string, error) {
	select {
	case <-time.After(h.delay):
	case <-ctx.Done():
		return o.Names, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, o)
	h.done = time.Now()
	return o.Names, nil
}

// TestAnswerHeld: an allowed answer reaches the client only after the
// Observer has its addresses (for every name of the CNAME chain, with
// the endpoint and TTL); a hold that runs out releases the answer and
// is counted.
func TestAnswerHeld(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), append(records, "local-ttl=42")...)
	t.Run("held", func(t *testing.T) {
		obs := &holdObserver{delay: 200 * time.Millisecond}
		m, _ := NewMetrics(nil)
		e := newEnv(t, up, func(o *Options) { o.Observer, o.Metrics = obs, m })
		a := e.dig(t, "www.example.com")
		got := time.Now()
		if a.Status != "NOERROR" || len(a.Addrs) != 1 {
			t.Fatalf("dig: %q %v\n%s", a.Status, a.Addrs, a.Output)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if len(obs.got) != 1 || obs.done.After(got) {
			t.Fatalf("observations %v done at %v, answer at %v: want one, before the answer", obs.got, obs.done, got)
		}
		o := obs.got[0]
		if strings.Join(o.Names, ",") != "www.example.com,api2.example.com" || !sameAddrs(o.Addrs, addrs("10.96.1.2")) ||
			o.Endpoint == nil || o.Endpoint.Name != "client" || o.TTL != 42*time.Second || o.Identity == 0 {
			t.Errorf("observation %+v: want www.example.com,api2.example.com → 10.96.1.2, TTL 42s, from default/client", o)
		}
		ev := e.events.query(t, "www.example.com.", monitor.VerdictForwarded)
		if strings.Join(ev.L7.DNS.Observed, ",") != "www.example.com,api2.example.com" || ev.L7.DNS.Hold < 200*time.Millisecond {
			t.Errorf("event observed %v after a hold of %s: want both names and at least 200ms", ev.L7.DNS.Observed, ev.L7.DNS.Hold)
		}
		var hm dto.Metric
		if err := m.Holds.Write(&hm); err != nil || hm.GetHistogram().GetSampleCount() != 1 || hm.GetHistogram().GetSampleSum() < 0.2 {
			t.Errorf("hold histogram %v (%v): want one hold of at least 200ms", hm.GetHistogram(), err)
		}
		// A denied name and an answer without addresses are never held.
		if a := e.dig(t, "denied.test"); a.Status != "REFUSED" {
			t.Errorf("denied.test: %q", a.Status)
		}
		if a := e.dig(t, "nothere.example.com"); a.Status != "NXDOMAIN" {
			t.Errorf("nothere.example.com: %q", a.Status)
		}
		if len(obs.got) != 1 {
			t.Errorf("%d observations, want only the first", len(obs.got))
		}
	})
	t.Run("hold runs out", func(t *testing.T) {
		obs := &holdObserver{delay: time.Hour}
		m, _ := NewMetrics(nil)
		e := newEnv(t, up, func(o *Options) { o.Observer, o.Metrics, o.HoldTimeout = obs, m, 100*time.Millisecond })
		start := time.Now()
		if a := e.dig(t, "api.example.com"); a.Status != "NOERROR" || time.Since(start) > time.Second {
			t.Fatalf("dig: %q after %s, want NOERROR within 1s", a.Status, time.Since(start))
		}
		ev := e.events.query(t, "api.example.com.", monitor.VerdictForwarded)
		if !strings.Contains(ev.Reason, "hold ran out") {
			t.Errorf("event reason %q: want the hold that ran out", ev.Reason)
		}
		var cm dto.Metric
		if err := m.HoldTimeouts.Write(&cm); err != nil || cm.GetCounter().GetValue() != 1 {
			t.Errorf("hold timeouts %v (%v), want 1", cm.GetCounter().GetValue(), err)
		}
	})
}

// TestCache: TTLs bounded below by the minimum, the oldest address
// evicted beyond the per-name bound, names per endpoint with their union
// for the engine, expiry, restore.
func TestCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewCache(10*time.Second, 3)
	if !c.Update("default/a", "api.example.com", addrs("10.96.1.1", "10.96.1.2"), time.Second, now) {
		t.Fatal("first answer: want a change")
	}
	if c.Update("default/a", "api.example.com", addrs("10.96.1.2"), time.Minute, now.Add(time.Second)) {
		t.Error("a known address: want no change")
	}
	if !c.Update("default/b", "api.example.com", addrs("10.96.1.3"), 0, now) {
		t.Error("another endpoint's new address: want a change")
	}
	if got := c.Addrs("api.example.com"); !sameAddrs(got, addrs("10.96.1.1", "10.96.1.2", "10.96.1.3")) {
		t.Errorf("union %v", got)
	}
	// default/a now has .1 (seen at now), .2 (refreshed); two more evict .1.
	if !c.Update("default/a", "api.example.com", addrs("10.96.1.4", "10.96.1.5"), 0, now.Add(2*time.Second)) {
		t.Error("eviction: want a change")
	}
	var aHas []netip.Addr
	for _, e := range c.Entries() {
		if e.Endpoint == "default/a" {
			aHas = append(aHas, e.Addr)
		}
	}
	if !sameAddrs(aHas, addrs("10.96.1.2", "10.96.1.4", "10.96.1.5")) {
		t.Errorf("default/a keeps %v: want the 3 newest", aHas)
	}
	// Min TTL 10s: .3 (TTL 0) expires at now+10s; .2 lives a minute.
	if changed := c.Expire(now.Add(9*time.Second), nil); len(changed) != 0 {
		t.Errorf("expired early: %v", changed)
	}
	// An expired address still in use is kept.
	asked := 0
	inUse := func(exp map[netip.Addr]bool) map[netip.Addr]bool {
		asked++
		if !exp[netip.MustParseAddr("10.96.1.3")] {
			t.Errorf("asked about %v, want 10.96.1.3 among them", exp)
		}
		return map[netip.Addr]bool{netip.MustParseAddr("10.96.1.3"): true}
	}
	if changed := c.Expire(now.Add(13*time.Second), inUse); asked != 1 || !sameAddrs(c.Addrs("api.example.com"), addrs("10.96.1.2", "10.96.1.3")) {
		t.Errorf("in use: asked %d times, changed %v, kept %v; want 10.96.1.3 kept", asked, changed, c.Addrs("api.example.com"))
	}
	if changed := c.Expire(now.Add(13*time.Second), nil); strings.Join(changed, ",") != "api.example.com" {
		t.Errorf("expired %v", changed)
	}
	if got := c.Addrs("api.example.com"); !sameAddrs(got, addrs("10.96.1.2")) {
		t.Errorf("after expiry %v, want 10.96.1.2", got)
	}
	saved := c.Entries()
	r := NewCache(10*time.Second, 3)
	if names := r.Restore(saved, now.Add(20*time.Second)); strings.Join(names, ",") != "api.example.com" || !sameAddrs(r.Addrs("api.example.com"), addrs("10.96.1.2")) {
		t.Errorf("restored %v with %v", names, r.Addrs("api.example.com"))
	}
	if names := NewCache(0, 0).Restore(saved, now.Add(2*time.Minute)); len(names) != 0 {
		t.Errorf("restored expired entries %v", names)
	}
}
