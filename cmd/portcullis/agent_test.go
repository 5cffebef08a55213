package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/agentclient"
)

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 1, 2, 13, 4, 5, 6_000_000, time.UTC)
	tie := agentclient.FlowEndpoint{IP: "10.244.0.3", Port: 40000, Identity: 300, Namespace: "default", Pod: "tiefighter",
		Labels: []string{"class=tiefighter", "io.cilium.k8s.policy.cluster=default", "io.kubernetes.pod.namespace=default", "org=empire"}}
	ds := agentclient.FlowEndpoint{IP: "10.244.0.2", Port: 80, Identity: 301, Namespace: "default", Pod: "deathstar",
		Labels: []string{"class=deathstar", "org=empire"}}
	for _, tc := range []struct {
		name string
		ev   agentclient.Event
		want string
	}{
		{"allowed by a rule", agentclient.Event{Time: at, Verdict: "FORWARDED", Reason: "policy", Direction: "ingress", Protocol: "TCP",
			Source: tie, Destination: ds, Policy: "TrafficPolicy default/rule1 spec.ingress[0].toPorts[0]"},
			`13:04:05.006 FORWARDED  default/tiefighter (class=tiefighter,org=empire) -> default/deathstar:80 (class=deathstar,org=empire) ingress TCP reason=policy policy="TrafficPolicy default/rule1 spec.ingress[0].toPorts[0]"`},
		{"default deny from the world", agentclient.Event{Time: at, Verdict: "DROPPED", Reason: "policy", Direction: "ingress", Protocol: "UDP",
			Source: agentclient.FlowEndpoint{IP: "192.0.2.1", Identity: 2, Labels: []string{"reserved:world"}}, Destination: ds},
			`13:04:05.006 DROPPED    192.0.2.1 (reserved:world) -> default/deathstar:80 (class=deathstar,org=empire) ingress UDP reason=policy`},
		{"l7 denial", agentclient.Event{Time: at, Verdict: "DENIED", Direction: "ingress", Protocol: "TCP", Source: tie, Destination: ds,
			L7: &agentclient.FlowL7{Protocol: "http/1.1", Method: "PUT", Path: "/v1/exhaust-port", Status: 403}},
			`13:04:05.006 DENIED     default/tiefighter (class=tiefighter,org=empire) -> default/deathstar:80 (class=deathstar,org=empire) ingress TCP http/1.1 PUT /v1/exhaust-port status=403`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatEvent(tc.ev); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	lost := formatMonitorLine(agentclient.MonitorLine{Event: agentclient.Event{Time: at, Type: agentclient.TypeLost}, Lost: 7})
	if want := "13:04:05.006 LOST 7 events: this monitor fell behind"; lost != want {
		t.Errorf("lost notice %q, want %q", lost, want)
	}
}

func TestEndpointTable(t *testing.T) {
	var b bytes.Buffer
	err := writeEndpointTable(&b, []agentclient.Endpoint{
		{ID: 1, Namespace: "default", Pod: "deathstar", IP: "10.244.0.2", Identity: 301, State: "ready", IngressEnforced: true},
		{ID: 2, Namespace: "default", Pod: "xwing", IP: "10.244.0.4", Identity: 302, State: "lockdown", IngressEnforced: true, EgressEnforced: true, Audit: true, Message: "policy map full"},
		{ID: 3, Namespace: "default", Pod: "tiefighter", IP: "10.244.0.3", Identity: 0, State: "waiting-for-identity"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `ENDPOINT ID  NAMESPACE/POD       IP          IDENTITY  STATE                 ENFORCEMENT             MESSAGE
1            default/deathstar   10.244.0.2  301       ready                 ingress
2            default/xwing       10.244.0.4  302       lockdown              ingress+egress (audit)  policy map full
3            default/tiefighter  10.244.0.3  0         waiting-for-identity  none
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestAgentNotRunning: without an agent, the commands fail with status 1
// and say which socket they tried and that the agent is not running.
func TestAgentNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	for _, args := range [][]string{
		{"endpoint", "list", "--socket", sock},
		{"monitor", "--socket", sock},
		{"policy", "trace", "--live", "--socket", sock, "--src", "org=empire", "--dst", "org=empire", "--dport", "80"},
	} {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		code := ExecuteContext(ctx, args, &stdout, &stderr)
		cancel()
		if code != exitInput || stdout.Len() != 0 || !strings.Contains(stderr.String(), sock) || !strings.Contains(stderr.String(), "agent is not running") {
			t.Errorf("%v: status %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("a client created %s", sock)
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

func TestMonitorVerdictFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Execute([]string{"monitor", "--verdict", "DROPPED,ALLOWED", "--socket", filepath.Join(t.TempDir(), "none.sock")}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `unknown verdict "ALLOWED"`) {
		t.Errorf("status %d, stderr %q: want a usage error naming ALLOWED", code, stderr.String())
	}
}
