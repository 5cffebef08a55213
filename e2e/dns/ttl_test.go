package dns

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/workloads"
)

// TestTTLExpiry: with --tofqdns-min-ttl below the answer's TTL (CoreDNS
// gives the hosts 5 s), a learned address stays selected past the TTL
// while a keep-alive connection uses it, and stops being selected once
// it is idle for the in-use window (2 s here): a new connection is then
// dropped and the cache is empty; a new lookup opens it again. The agent runs with
// --dns-reject-response-code=nameError: a denied name gets NXDOMAIN.
func TestTTLExpiry(t *testing.T) {
	e := newEnv(t)
	api := e.addHTTPHost("api.example.com")
	bot := e.addPod("default", "mediabot", map[string]string{"org": "alliance", "class": "mediabot"})
	other := e.addHTTPHost("www.example.org")
	e.startAgent(agent.Config{ToFQDNsMinTTL: time.Second, ToFQDNsInUseWindow: 2 * time.Second, DNSRejectResponseCode: "nameError"})
	var p v1alpha1.TrafficPolicy
	if err := yaml.UnmarshalStrict([]byte(mediabotPolicy), &p); err != nil {
		t.Fatal(err)
	}
	if err := e.k8s.Create(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammed(t, e.c, e.k8s, &p)
	if a := dig(t, bot, "www.example.org", "A"); a.Status != "NXDOMAIN" || len(a.Addrs) != 0 {
		t.Errorf("denied www.example.org (%s) under nameError: %q %v, want NXDOMAIN and no address", other.IP, a.Status, a.Addrs)
	}
	byIP := fmt.Sprintf("http://%s:443/v1/", api.IP)
	if a := dig(t, bot, "api.example.com", "A"); a.Status != "NOERROR" {
		t.Fatalf("dig: %q", a.Status)
	}
	learned := time.Now()
	if code, msg := curl(t, bot, byIP); code != 200 {
		t.Fatalf("after the lookup: HTTP %d (%s), want 200", code, msg)
	}
	cache := func() []agentclient.FQDNCacheEntry {
		es, err := agentclient.NewClient(e.apiSocket).FQDNCache(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	if es := cache(); len(es) != 1 || es[0].TTL > 5 {
		t.Errorf("cache %+v: want api.example.com with at most the answer's 5 s", es)
	}
	// A keep-alive connection in use across the TTL keeps the address.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	client, err := workloads.Start(bot.Command(exe), workloads.RoleHTTPClient)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Stop() })
	for time.Now().Before(learned.Add(8 * time.Second)) {
		r, err := client.Do(workloads.Command{Method: "GET", URL: byIP}, 5*time.Second)
		if err != nil || r.Status != 200 || r.Conns != 1 {
			t.Fatalf("keep-alive request %s after the lookup: %+v %v, want 200 on one connection", time.Since(learned).Round(time.Millisecond), r, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if es := cache(); len(es) != 1 {
		t.Errorf("cache past the TTL with a connection in use: %+v, want the address kept", es)
	}
	// Idle now: forgotten after the in-use window and the next expiry.
	time.Sleep(3500 * time.Millisecond)
	if es := cache(); len(es) != 0 {
		t.Errorf("cache after the TTL: %+v, want empty", es)
	}
	if code, _ := curl(t, bot, byIP); code != 0 {
		t.Errorf("after the TTL ran out: HTTP %d, want no connection", code)
	}
	if code, msg := curl(t, bot, "http://api.example.com:443/v1/"); code != 200 {
		t.Errorf("after a new lookup: HTTP %d (%s), want 200", code, msg)
	}
}
