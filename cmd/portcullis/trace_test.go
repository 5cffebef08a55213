package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/policy"
)

// fakeAgent serves the trace path of the agent's API on a unix socket:
// it records the request it got and answers resp.
func fakeAgent(t *testing.T, resp agentclient.TraceResponse) (socket string, got *agentclient.TraceRequest) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	got = &agentclient.TraceRequest{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentclient.PathTrace, func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(got); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(agentclient.Error{Error: err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket, got
}

// starwarsExhaustPort is what the agent answers for the tiefighter's
// PUT /v1/exhaust-port to the deathstar under examples/starwars.
func starwarsExhaustPort() agentclient.TraceResponse {
	podLabels := func(class string) []agentclient.Label {
		return []agentclient.Label{
			{Source: "k8s", Key: "class", Value: class},
			{Source: "k8s", Key: "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name", Value: "default"},
			{Source: "k8s", Key: "io.cilium.k8s.policy.cluster", Value: "default"},
			{Source: "k8s", Key: "io.kubernetes.pod.namespace", Value: "default"},
			{Source: "k8s", Key: "org", Value: "empire"},
		}
	}
	rule1 := agentclient.PolicyRef{Kind: "TrafficPolicy", Namespace: "default", Name: "rule1"}
	decided := agentclient.RuleRef{Policy: rule1, Path: "spec.ingress[0].toPorts[0]"}
	return agentclient.TraceResponse{
		Node: "n1", Mode: "default",
		Src: agentclient.ResolvedPeer{Kind: "pod", Value: "default/tiefighter (10.244.0.3)"},
		Dst: agentclient.ResolvedPeer{Kind: "pod", Value: "default/deathstar (10.244.0.2)"},
		Result: &agentclient.TraceResult{
			Src: &agentclient.Identity{ID: 256, Labels: podLabels("tiefighter")},
			Dst: &agentclient.Identity{ID: 257, Labels: podLabels("deathstar")},
			Egress: agentclient.TraceSide{
				Direction: "egress", Applies: true,
				Decision: agentclient.Decision{Verdict: "allow", Tier: "default", Reason: "no policy selects the endpoint in this direction"},
				Verdict:  policy.VerdictAllowed,
			},
			Ingress: agentclient.TraceSide{
				Direction: "ingress", Applies: true, Enforced: true, SelectedBy: []agentclient.PolicyRef{rule1},
				Decision: agentclient.Decision{Verdict: "redirect", Tier: "namespace", Rule: decided, Rules: []agentclient.RuleRef{decided},
					Parser: "http", Reason: "allowed at L4, subject to L7 rules"},
				L7:      &agentclient.L7Verdict{Parser: "http", Reason: "no L7 rule matches the request"},
				Verdict: policy.VerdictDenied,
			},
			Verdict: policy.VerdictDenied,
		},
	}
}

// TestLiveTraceRendersLikeFiles: a live trace is explained exactly as the
// same trace from files (the starwars golden files), except that the
// peers are named as the agent resolved them; the agent gets the flow
// and the request in its API's terms.
func TestLiveTraceRendersLikeFiles(t *testing.T) {
	socket, got := fakeAgent(t, starwarsExhaustPort())
	asResolved := strings.NewReplacer(
		"pod "+tiefighter, "pod default/tiefighter (10.244.0.3)",
		"pod "+deathstar, "pod default/deathstar (10.244.0.2)",
		`"value": "`+tiefighter+`"`, `"value": "default/tiefighter (10.244.0.3)"`,
		`"value": "`+deathstar+`"`, `"value": "default/deathstar (10.244.0.2)"`,
	)
	for _, c := range []struct{ golden, output string }{
		{"starwars-exhaust-port.golden", "text"},
		{"starwars-exhaust-port.json.golden", "json"},
	} {
		args := append([]string{"policy", "trace", "--live", "--socket", socket, "-o", c.output},
			flowArgs(tiefighter, deathstar, "80", "--http", "PUT /v1/exhaust-port")...)
		stdout, stderr, code := run(args...)
		if code != exitOK {
			t.Fatalf("-o %s: status %d, stderr %q", c.output, code, stderr)
		}
		fromFiles, err := os.ReadFile(filepath.Join("testdata", c.golden))
		if err != nil {
			t.Fatal(err)
		}
		if want := asResolved.Replace(string(fromFiles)); stdout != want {
			t.Errorf("-o %s: the live trace differs from %s with the peers as resolved:\n--- got\n%s\n--- want\n%s", c.output, c.golden, stdout, want)
		}
	}
	want := agentclient.TraceRequest{
		Src:   agentclient.TracePeer{Labels: []agentclient.Label{{Source: "k8s", Key: "class", Value: "tiefighter"}, {Source: "k8s", Key: "org", Value: "empire"}}},
		Dst:   agentclient.TracePeer{Labels: []agentclient.Label{{Source: "k8s", Key: "class", Value: "deathstar"}, {Source: "k8s", Key: "org", Value: "empire"}}},
		Proto: policy.ProtoTCP, Port: 80,
		HTTP: &agentclient.HTTPRequest{Method: "PUT", Path: "/v1/exhaust-port"},
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("the agent got %+v\nwant %+v", *got, want)
	}
}

// TestLiveTraceBadAnswer: an answer the CLI cannot read is an input
// error naming the agent's socket, with nothing on stdout.
func TestLiveTraceBadAnswer(t *testing.T) {
	resp := starwarsExhaustPort()
	resp.Result.Ingress.Decision.Tier = "galactic"
	socket, _ := fakeAgent(t, resp)
	var stdout, stderr strings.Builder
	args := append([]string{"policy", "trace", "--live", "--socket", socket}, flowArgs(tiefighter, deathstar, "80")...)
	code := ExecuteContext(context.Background(), args, &stdout, &stderr)
	if code != exitInput || stdout.Len() != 0 || !strings.Contains(stderr.String(), socket) || !strings.Contains(stderr.String(), `"galactic"`) {
		t.Errorf("status %d, stdout %q, stderr %q: want an input error naming the socket and the tier", code, stdout.String(), stderr.String())
	}
}

func TestLiveTraceFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--live", "-f", "x.yaml"}, "-f cannot be used"},
		{[]string{"--live", "--mode", "always"}, "--mode and --audit cannot be used"},
		{[]string{"--socket", "/tmp/x.sock", "-f", "x.yaml"}, "--socket needs --live"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"policy", "trace", "--src", "a=b", "--dst", "c=d", "--dport", "80"}, tc.args...)
		if code := Execute(args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: status %d, stderr %q, want %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestLiveTraceService: --dst svc:NS/NAME asks the agent to trace the
// Service's translation, and the output names the backend and the port
// the agent traced instead of the Service port given.
func TestLiveTraceService(t *testing.T) {
	resp := starwarsExhaustPort()
	resp.Dst = agentclient.ResolvedPeer{Kind: "service", Value: "default/deathstar 10.96.0.20:80/TCP -> default/deathstar (10.244.0.2:8080), backend 1 of 1"}
	resp.Port = 8080
	socket, got := fakeAgent(t, resp)
	stdout, stderr, code := run("policy", "trace", "--live", "--socket", socket, "--src", "org=empire,class=tiefighter", "--dst", "svc:default/deathstar", "--dport", "80")
	if code != exitOK {
		t.Fatalf("status %d, stderr %q", code, stderr)
	}
	if !reflect.DeepEqual(got.Dst, agentclient.TracePeer{Service: "default/deathstar"}) || got.Port != 80 {
		t.Errorf("the agent got dst %+v port %d, want the Service and its port 80", got.Dst, got.Port)
	}
	for _, want := range []string{"service default/deathstar 10.96.0.20:80/TCP -> default/deathstar (10.244.0.2:8080)", "8080/TCP"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", "x.yaml", "--src", "a=b", "--dst", "svc:default/x"}, "needs --live"},
		{[]string{"--live", "--src", "svc:default/x", "--dst", "a=b"}, "destination only"},
		{[]string{"--live", "--src", "a=b", "--dst", "svc:a/b/c"}, "not svc:NAMESPACE/NAME"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Execute(append([]string{"policy", "trace", "--dport", "80"}, c.args...), &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: status %d, stderr %q, want %q", c.args, code, stderr.String(), c.want)
		}
	}
}
