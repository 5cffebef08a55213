package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

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
