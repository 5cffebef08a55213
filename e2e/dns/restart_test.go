package dns

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/localcluster"
)

// TestRestart: what a pod sees while the agent restarts. Names looked up
// before stay allowed after the restart without a new lookup (the agent
// restores them before its first sync pass); with a lookup loop and a
// connect loop running across a restart, the test reports how many of
// each failed and for how long lookups failed.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	api := e.addHTTPHost("api.example.com")
	bot := e.addPod("default", "mediabot", map[string]string{"org": "alliance", "class": "mediabot"})
	cfg := agent.Config{StateDir: e.stateDir}
	stop := e.startAgent(cfg)
	var p v1alpha1.TrafficPolicy
	if err := yaml.UnmarshalStrict([]byte(mediabotPolicy), &p); err != nil {
		t.Fatal(err)
	}
	if err := e.k8s.Create(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammed(t, e.c, e.k8s, &p)
	if code, msg := curl(t, bot, "http://api.example.com:443/v1/"); code != 200 {
		t.Fatalf("curl http://api.example.com:443/v1/: HTTP %d (%s), want 200", code, msg)
	}
	byIP := fmt.Sprintf("http://%s:443/v1/", api.IP)

	// The state file is written off the answer's path; give it its
	// interval before stopping.
	time.Sleep(300 * time.Millisecond)
	stop()
	stop = e.startAgent(cfg)
	if code, msg := curl(t, bot, byIP); code != 200 {
		t.Fatalf("after the restart, with no new lookup: curl %s: HTTP %d (%s), want 200", byIP, code, msg)
	}

	// A second restart under load.
	loops := startLoops(t, bot, byIP)
	time.Sleep(time.Second)
	down := time.Now()
	stop()
	stop = e.startAgent(cfg)
	up := time.Now()
	time.Sleep(2 * time.Second)
	lookups, conns := loops.stop()
	failedLookups, firstFail, lastFail := failures(lookups)
	failedConns, _, _ := failures(conns)
	t.Logf("agent restart: down at +0, ready after %s; lookups: %d of %d failed, failing from %s to %s after the stop; connections to the learned address: %d of %d failed",
		up.Sub(down).Round(time.Millisecond), failedLookups, len(lookups), firstFail.Sub(down).Round(time.Millisecond), lastFail.Sub(down).Round(time.Millisecond), failedConns, len(conns))
	// Connections to a learned address never depend on the agent: the
	// datapath keeps the entries, and the restart restores them.
	for _, r := range conns {
		if !r.ok && r.at.After(up.Add(500*time.Millisecond)) {
			t.Errorf("a connection %s after the agent was ready failed", r.at.Sub(up).Round(time.Millisecond))
		}
	}
	for _, r := range lookups {
		if !r.ok && r.at.After(up.Add(500*time.Millisecond)) {
			t.Errorf("a lookup %s after the agent was ready failed", r.at.Sub(up).Round(time.Millisecond))
		}
	}
	if len(lookups) < 5 || len(conns) < 5 {
		t.Errorf("only %d lookups and %d connections: the loops did not run", len(lookups), len(conns))
	}
}

// result is one try of a loop: when it started and whether it worked.
type result struct {
	at time.Time
	ok bool
}

func failures(rs []result) (n int, first, last time.Time) {
	for _, r := range rs {
		if r.ok {
			continue
		}
		if n == 0 {
			first = r.at
		}
		last = r.at
		n++
	}
	return n, first, last
}

// loops run dig and curl in a pod, one try after the other, each with a
// one second timeout.
type loops struct {
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	mu            sync.Mutex
	lookups, conn []result
}

func startLoops(t *testing.T, pod *localcluster.Pod, url string) *loops {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loops{cancel: cancel}
	run := func(try func() bool, into *[]result) {
		defer l.wg.Done()
		for ctx.Err() == nil {
			at := time.Now()
			ok := try()
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			*into = append(*into, result{at, ok})
			l.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}
	want := netip.Addr{}
	l.wg.Add(2)
	go run(func() bool {
		a := dig(t, pod, "api.example.com", "A", "+time=1")
		if a.Status == "NOERROR" && len(a.Addrs) == 1 && (!want.IsValid() || a.Addrs[0] == want) {
			want = a.Addrs[0]
			return true
		}
		return false
	}, &l.lookups)
	go run(func() bool {
		code, _ := curlTimeout(t, pod, url, 1)
		return code == 200
	}, &l.conn)
	return l
}

func (l *loops) stop() (lookups, conns []result) {
	l.cancel()
	l.wg.Wait()
	return l.lookups, l.conn
}
