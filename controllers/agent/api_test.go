package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// TestMonitorStream: the stream carries published events as NDJSON, and a
// follower that fell behind gets one notice with the number it lost before
// the next event.
func TestMonitorStream(t *testing.T) {
	a := &Agent{hub: monitor.NewHub(), cfg: Config{NodeName: "n1"}}
	srv := httptest.NewServer(a.APIHandler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+agentclient.PathMonitor, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for a.hub.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() agentclient.MonitorLine {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var l agentclient.MonitorLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		return l
	}
	a.hub.Publish(monitor.Event{Verdict: monitor.VerdictDropped, Source: monitor.Endpoint{Pod: "xwing"}})
	if l := next(); l.Verdict != monitor.VerdictDropped || l.Source.Pod != "xwing" || l.Lost != 0 {
		t.Errorf("first line %+v", l)
	}
	// Overfill the follower while the test does not read: its buffer and
	// the socket's fill up, the hub never waits, the rest is lost.
	const published = 100_000
	for range published {
		a.hub.Publish(monitor.Event{Verdict: monitor.VerdictForwarded})
	}
	// A marker, repeated until read (a copy may be lost too).
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			a.hub.Publish(monitor.Event{Verdict: monitor.VerdictDropped})
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	received, lost := 0, uint64(0)
	for {
		l := next()
		if l.Type == agentclient.TypeLost {
			lost += l.Lost
			continue
		}
		if l.Verdict == monitor.VerdictDropped {
			break
		}
		received++
	}
	if lost == 0 || received+int(lost) < published {
		t.Errorf("received %d, lost %d: want some lost and at least %d in all", received, lost, published)
	}
	cancel()
}

// TestListenAPI: a socket left by a dead agent is replaced, a live one is
// refused, the socket is 0600 and closing the listener removes it.
func TestListenAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "portcullis")
	path := filepath.Join(dir, "agent.sock")
	// A stale socket: bound, never unlinked.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	_ = stale.Close()

	ln, err := listenAPI(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := listenAPI(path); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second listener on a live socket: %v", err)
	}
	_ = ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after close: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenAPI(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file at the socket path: %v", err)
	}
}

func TestRuleTable(t *testing.T) {
	var rt ruleTable
	r1 := policy.RuleRef{Policy: policy.PolicyKey{Kind: "TrafficPolicy", Namespace: "default", Name: "rule1"}, Path: "spec.ingress[0]"}
	r2 := policy.RuleRef{Policy: r1.Policy, Path: "spec.ingress[1]"}
	if id := rt.id(policy.RuleRef{}); id != 0 {
		t.Errorf("no rule got id %d, want 0", id)
	}
	id1, id2 := rt.id(r1), rt.id(r2)
	if id1 == 0 || id2 == 0 || id1 == id2 || rt.id(r1) != id1 {
		t.Errorf("ids %d, %d (again %d): want distinct, stable, non-zero", id1, id2, rt.id(r1))
	}
	if got, ok := rt.ref(id2); !ok || got != r2 {
		t.Errorf("ref(%d) = %v, %v", id2, got, ok)
	}
	for _, id := range []uint32{0, 99} {
		if _, ok := rt.ref(id); ok {
			t.Errorf("ref(%d) found a rule", id)
		}
	}
}

func TestPodByLabels(t *testing.T) {
	a := &Agent{cfg: Config{NodeName: "n1"}, pods: map[string]*podRecord{
		"starwars/tiefighter":  {ip: netip.MustParseAddr("10.244.0.3"), local: true, labels: map[string]string{"org": "empire", "class": "tiefighter"}},
		"outer-rim/tiefighter": {ip: netip.MustParseAddr("10.244.0.9"), local: true, labels: map[string]string{"org": "empire", "class": "tiefighter"}},
		"away/tiefighter":      {ip: netip.MustParseAddr("10.244.1.3"), labels: map[string]string{"org": "empire", "class": "tiefighter"}},
		"starwars/xwing":       {ip: netip.MustParseAddr("10.244.0.4"), local: true, labels: map[string]string{"org": "alliance", "class": "xwing"}},
	}}
	for _, tc := range []struct{ labels, want string }{
		{"class=xwing", "starwars/xwing"},
		{"class=tiefighter", "outer-rim/tiefighter"}, // local first, then by name
		{"class=tiefighter,io.kubernetes.pod.namespace=starwars", "starwars/tiefighter"},
		{"class=tiefighter,io.kubernetes.pod.namespace=away", "away/tiefighter"},
		{"class=tiefighter,org=alliance", ""},
	} {
		ls, err := policy.ParseLabels(tc.labels)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.podByLabelsLocked(ls)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("%s: got %q, %v; want %q", tc.labels, got, err, tc.want)
		}
	}
}
