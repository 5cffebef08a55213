package main

import (
	"bytes"
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
		{"through a Service", agentclient.Event{Time: at, Verdict: "FORWARDED", Reason: "policy", Direction: "ingress", Protocol: "TCP",
			Source: tie, Destination: ds, Policy: "TrafficPolicy default/rule1 spec.ingress[0].toPorts[0]", Service: "default/deathstar 10.96.0.20:80"},
			`13:04:05.006 FORWARDED  default/tiefighter (class=tiefighter,org=empire) -> default/deathstar:80 (class=deathstar,org=empire) ingress TCP reason=policy policy="TrafficPolicy default/rule1 spec.ingress[0].toPorts[0]" service="default/deathstar 10.96.0.20:80"`},
		{"default deny from the world", agentclient.Event{Time: at, Verdict: "DROPPED", Reason: "policy", Direction: "ingress", Protocol: "UDP",
			Source: agentclient.FlowEndpoint{IP: "192.0.2.1", Identity: 2, Labels: []string{"reserved:world"}}, Destination: ds},
			`13:04:05.006 DROPPED    192.0.2.1 (reserved:world) -> default/deathstar:80 (class=deathstar,org=empire) ingress UDP reason=policy`},
		{"l7 denial", agentclient.Event{Time: at, Verdict: "DENIED", Direction: "ingress", Protocol: "TCP", Source: tie, Destination: ds,
			L7: &agentclient.FlowL7{Protocol: "http/1.1", Method: "PUT", Path: "/v1/exhaust-port", Status: 403}},
			`13:04:05.006 DENIED     default/tiefighter (class=tiefighter,org=empire) -> default/deathstar:80 (class=deathstar,org=empire) ingress TCP http/1.1 PUT /v1/exhaust-port status=403`},
		{"kafka denial", agentclient.Event{Time: at, Verdict: "DENIED", Reason: "topics not allowed: deathstar-plans", Direction: "ingress", Protocol: "TCP",
			Source:      agentclient.FlowEndpoint{IP: "10.244.0.4", Port: 40000, Namespace: "default", Pod: "empire-outpost", Labels: []string{"app=empire-outpost"}},
			Destination: agentclient.FlowEndpoint{IP: "10.244.0.2", Port: 9092, Namespace: "default", Pod: "kafka-broker", Labels: []string{"app=kafka"}},
			Policy:      "TrafficPolicy default/secure-empire-kafka",
			L7: &agentclient.FlowL7{Protocol: "kafka", Latency: 250 * time.Microsecond,
				Kafka: &agentclient.FlowKafka{APIKey: "fetch", APIVersion: 12, ClientID: "rdkafka", Topics: []string{"deathstar-plans"}, ErrorCode: 29}}},
			`13:04:05.006 DENIED     default/empire-outpost (app=empire-outpost) -> default/kafka-broker:9092 (app=kafka) ingress TCP kafka fetch v12 client=rdkafka topics=deathstar-plans error=29 latency=250µs reason=topics not allowed: deathstar-plans policy="TrafficPolicy default/secure-empire-kafka"`},
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

func TestMonitorVerdictFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Execute([]string{"monitor", "--verdict", "DROPPED,ALLOWED", "--socket", filepath.Join(t.TempDir(), "none.sock")}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `unknown verdict "ALLOWED"`) {
		t.Errorf("status %d, stderr %q: want a usage error naming ALLOWED", code, stderr.String())
	}
}
