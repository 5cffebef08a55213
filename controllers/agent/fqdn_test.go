package agent

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/dns"
)

// TestFQDNLearnerHolds: an answer for a toFQDNs name teaches the engine
// and is held until a sync pass has written that revision; names no
// selector of the endpoint matches teach nothing and are not held;
// expiry makes the engine forget.
func TestFQDNLearnerHolds(t *testing.T) {
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, false)
	policytest.ApplyFiles(t, repo, "../../examples/dns")
	bot := &policy.Endpoint{Namespace: "default", Name: "mediabot", Labels: map[string]string{"org": "alliance", "class": "mediabot"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.0.9")}}
	repo.UpsertEndpoint(bot)
	a := &Agent{repo: repo, trigger: make(chan struct{}, 1)}
	l := newFQDNLearner(a, 2*time.Second, 10)
	id := repo.EndpointPolicy("default", "mediabot").Identity.ID
	ip := netip.MustParseAddr("10.96.200.1")
	obs := dns.Observation{Endpoint: &proxy.Endpoint{Namespace: "default", Name: "mediabot"}, Identity: id, Names: []string{"api.github.com"}, Addrs: []netip.Addr{ip}, TTL: time.Second}

	done := make(chan error, 1)
	go func() {
		names, err := l.Observe(context.Background(), obs)
		if err == nil && strings.Join(names, ",") != "api.github.com" {
			err = context.Canceled
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Observe returned (%v) before any sync pass", err)
	case <-a.trigger:
	case <-time.After(2 * time.Second):
		t.Fatal("Observe asked for no sync pass")
	}
	if got := repo.IdentityOfIP(ip); got == nil || !got.IsCIDR() {
		t.Fatalf("the engine has no identity for %s: %v", ip, got)
	}
	a.syncs.passed(repo.Revision())
	if err := <-done; err != nil {
		t.Fatalf("Observe: %v", err)
	}
	var gm dto.Metric
	if err := FQDNLearned.WithLabelValues("names").Write(&gm); err != nil || gm.GetGauge().GetValue() != 1 {
		t.Errorf("portcullis_fqdn_learned{kind=names} = %v (%v), want 1", gm.GetGauge().GetValue(), err)
	}

	other := obs
	other.Names = []string{"github.com"}
	if names, err := l.Observe(context.Background(), other); len(names) != 0 || err != nil {
		t.Errorf("github.com: %v %v, want nothing taken and no hold", names, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Observe(ctx, obs); err != nil {
		t.Errorf("a known address after its sync: %v, want no hold", err)
	}

	verdict := func() string {
		t.Helper()
		ls, _ := policy.ParseLabels("org=alliance,class=mediabot")
		res, err := repo.Trace(policy.TraceRequest{Src: policy.TracePeer{Labels: ls}, Dst: policy.TracePeer{IP: ip}, Proto: policy.ProtoTCP, Port: 443})
		if err != nil {
			t.Fatal(err)
		}
		return res.Verdict
	}
	if v := verdict(); v != policy.VerdictAllowed {
		t.Fatalf("mediabot → %s:443 after the answer: %s, want ALLOWED", ip, v)
	}
	l.expire(time.Now().Add(time.Second))
	if v := verdict(); v != policy.VerdictAllowed {
		t.Errorf("after the TTL but within the minimum TTL: %s, want ALLOWED", v)
	}
	l.expire(time.Now().Add(3 * time.Second))
	if v := verdict(); v != policy.VerdictDenied {
		t.Errorf("after the minimum TTL: %s, want DENIED", v)
	}
	if len(a.FQDNCache()) != 0 {
		t.Errorf("cache after expiry: %v", a.FQDNCache())
	}
}

// TestFQDNStateFile: what was learned survives a restart through the
// state file (expired entries are not restored); a corrupt file is an
// error naming it.
func TestFQDNStateFile(t *testing.T) {
	newAgent := func() (*Agent, *policy.Repository) {
		repo := policy.NewRepository(policy.Options{})
		return &Agent{repo: repo, trigger: make(chan struct{}, 1)}, repo
	}
	a, _ := newAgent()
	l := newFQDNLearner(a, time.Minute, 10)
	now := time.Now()
	l.cache.Update("default/mediabot", "api.github.com", []netip.Addr{netip.MustParseAddr("10.96.200.1")}, time.Hour, now)
	l.cache.Update("default/mediabot", "old.github.com", []netip.Addr{netip.MustParseAddr("10.96.200.2")}, 0, now)
	path := t.TempDir() + "/state/" + fqdnStateFile
	if err := l.save(path); err != nil {
		t.Fatal(err)
	}
	b, _ := newAgent()
	r := newFQDNLearner(b, time.Minute, 10)
	n, err := r.restore(path, now.Add(2*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("restore: %d names, %v; want api.github.com only (old.github.com expired)", n, err)
	}
	if got := r.cache.Addrs("api.github.com"); len(got) != 1 || got[0] != netip.MustParseAddr("10.96.200.1") {
		t.Errorf("restored %v", got)
	}
	if n, err := r.restore(t.TempDir()+"/none.json", now); n != 0 || err != nil {
		t.Errorf("no state file: %d %v, want nothing and no error", n, err)
	}
	bad := t.TempDir() + "/bad.json"
	if err := os.WriteFile(bad, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.restore(bad, now); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt state file: %v, want an error naming %s", err, bad)
	}
}
