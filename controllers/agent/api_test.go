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
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
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

// TestMonitorWireEvent: a flow event reads the same on the monitor stream
// as the engine's event marshals, so `portcullis monitor -o json` prints
// what the event model says.
func TestMonitorWireEvent(t *testing.T) {
	grpc := 14
	ev := monitor.Event{
		Time: time.Date(2026, 1, 2, 13, 4, 5, 0, time.UTC), Node: "n1", Type: monitor.TypeL7, Verdict: monitor.VerdictDenied,
		Reason: "http", Direction: "ingress", Protocol: "TCP",
		Source:      monitor.Endpoint{IP: "10.244.0.3", Port: 40000, Identity: 300, Namespace: "default", Pod: "tiefighter", Labels: []string{"org=empire"}},
		Destination: monitor.Endpoint{IP: "10.244.0.2", Port: 80, Identity: 301, Namespace: "default", Pod: "deathstar", Labels: []string{"class=deathstar"}},
		Policy:      "TrafficPolicy default/rule1 spec.ingress[0]",
		L7:          &monitor.L7{Protocol: "grpc", Method: "POST", Path: "/a.B/C", Host: "deathstar", Status: 200, GRPCStatus: &grpc, Latency: time.Millisecond},
	}
	kafkaEv := ev
	kafkaEv.L7 = &monitor.L7{Protocol: "kafka", Latency: time.Millisecond,
		Kafka: &monitor.Kafka{APIKey: "produce", APIVersion: 9, ClientID: "rdkafka", Topics: []string{"deathstar-plans"}, ErrorCode: 29}}
	for _, e := range []monitor.Event{ev, kafkaEv, {Time: ev.Time, Type: monitor.TypePolicyVerdict, Verdict: monitor.VerdictDropped}} {
		engine, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := json.Marshal(agentclient.MonitorLine{Event: wireEvent(e)})
		if err != nil {
			t.Fatal(err)
		}
		if string(wire) != string(engine) {
			t.Errorf("monitor line\n%s\nwant the event as the engine marshals it\n%s", wire, engine)
		}
	}
}

// TestLiveTrace: a trace through the socket, with the client, carries the
// engine's verdict, rules, identities and L7 parser in the API's terms.
func TestLiveTrace(t *testing.T) {
	repo := policy.NewRepository(policy.Options{})
	ds, tie := netip.MustParseAddr("10.244.0.2"), netip.MustParseAddr("10.244.0.3")
	repo.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "deathstar", ServiceAccount: "default",
		Labels: map[string]string{"org": "empire", "class": "deathstar"}, IPs: []netip.Addr{ds}})
	repo.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "tiefighter", ServiceAccount: "default",
		Labels: map[string]string{"org": "empire", "class": "tiefighter"}, IPs: []netip.Addr{tie}})
	sel := func(ls map[string]string) v1alpha1.EndpointSelector {
		return v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: ls}}
	}
	es := sel(map[string]string{"class": "deathstar"})
	rule1 := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rule1"}, Spec: &v1alpha1.Rule{
		EndpointSelector: &es,
		Ingress: []v1alpha1.IngressRule{{
			IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{sel(map[string]string{"org": "empire"})}},
			ToPorts: []v1alpha1.PortRule{{
				Ports: []v1alpha1.PortProtocol{{Port: "80", Protocol: v1alpha1.ProtoTCP}},
				Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "POST", Path: "/v1/request-landing"}}},
			}},
		}},
	}}
	if _, errs := repo.UpsertPolicy(rule1); len(errs) > 0 {
		t.Fatal(errs)
	}
	a := &Agent{repo: repo, hub: monitor.NewHub(), cfg: Config{NodeName: "n1"}, pods: map[string]*podRecord{
		"default/deathstar":  {ip: ds, local: true, labels: map[string]string{"org": "empire", "class": "deathstar"}},
		"default/tiefighter": {ip: tie, local: true, labels: map[string]string{"org": "empire", "class": "tiefighter"}},
	}}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := listenAPI(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.APIHandler(), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	c := agentclient.NewClient(sock)
	resp, err := c.Trace(context.Background(), agentclient.TraceRequest{
		Src:   agentclient.TracePeer{Labels: []agentclient.Label{{Source: policy.SourceK8s, Key: "class", Value: "tiefighter"}}},
		Dst:   agentclient.TracePeer{Pod: "default/deathstar"},
		Proto: policy.ProtoTCP, Port: 80,
		HTTP: &agentclient.HTTPRequest{Method: "PUT", Path: "/v1/exhaust-port", Header: map[string][]string{"X-Has-Force": {"true"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Node != "n1" || resp.Mode != string(policy.ModeDefault) || resp.Src != (agentclient.ResolvedPeer{Kind: "pod", Value: "default/tiefighter (10.244.0.3)"}) ||
		resp.Dst != (agentclient.ResolvedPeer{Kind: "pod", Value: "default/deathstar (10.244.0.2)"}) {
		t.Errorf("response %+v", resp)
	}
	tr := resp.Result
	if tr.Verdict != policy.VerdictDenied || tr.Src == nil || tr.Src.ID < 256 || tr.Dst == nil {
		t.Fatalf("result %+v", tr)
	}
	if !slices.Contains(tr.Src.Labels, agentclient.Label{Source: policy.SourceK8s, Key: "class", Value: "tiefighter"}) {
		t.Errorf("source identity labels %+v lack k8s:class=tiefighter", tr.Src.Labels)
	}
	if tr.Egress.Direction != "egress" || tr.Egress.Verdict != policy.VerdictAllowed || tr.Egress.Decision.Verdict != "allow" {
		t.Errorf("egress %+v", tr.Egress)
	}
	in := tr.Ingress
	wantRule := agentclient.RuleRef{Policy: agentclient.PolicyRef{Kind: "TrafficPolicy", Namespace: "default", Name: "rule1"}, Path: "spec.ingress[0]"}
	if in.Direction != "ingress" || !in.Applies || !in.Enforced || in.Verdict != policy.VerdictDenied ||
		in.Decision.Verdict != "redirect" || in.Decision.Tier != "namespace" || in.Decision.Parser != "http" ||
		!strings.HasPrefix(in.Decision.Rule.Path, wantRule.Path) || in.Decision.Rule.Policy != wantRule.Policy ||
		len(in.SelectedBy) != 1 || in.SelectedBy[0] != wantRule.Policy {
		t.Errorf("ingress %+v", in)
	}
	if in.L7 == nil || in.L7.Parser != "http" || in.L7.Allowed {
		t.Errorf("ingress L7 verdict %+v: want the http parser's denial", in.L7)
	}

	// VRRP has no ports: port 0 is its only lookup, which the deathstar's
	// default deny refuses; a port for it is a bad request.
	vrrp := agentclient.TraceRequest{Src: agentclient.TracePeer{Pod: "default/tiefighter"}, Dst: agentclient.TracePeer{Pod: "default/deathstar"}, Proto: policy.ProtoVRRP}
	if resp, err := c.Trace(context.Background(), vrrp); err != nil || resp.Result.Verdict != policy.VerdictDenied || resp.Result.Ingress.Decision.Verdict != "deny" {
		t.Errorf("VRRP trace: %+v, %v; want denied at the ingress", resp, err)
	}
	vrrp.Port = 112
	if _, err := c.Trace(context.Background(), vrrp); err == nil || !strings.Contains(err.Error(), "VRRP has no ports") {
		t.Errorf("VRRP trace with a port: %v", err)
	}

	// A request the engine refuses is reported in the API's error body.
	_, err = c.Trace(context.Background(), agentclient.TraceRequest{Src: agentclient.TracePeer{Entity: "moon"}, Dst: agentclient.TracePeer{Pod: "default/deathstar"}, Port: 80})
	if err == nil || !strings.Contains(err.Error(), `source: unknown entity "moon"`) {
		t.Errorf("trace from an unknown entity: %v", err)
	}
}
