package agentclient

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// wireFixtures are one value of each message, every field set, so that a
// renamed or dropped field changes a golden file.
func wireFixtures() map[string]any {
	at := time.Date(2026, 1, 2, 13, 4, 5, 6_000_000, time.UTC)
	grpc := 7
	tie := FlowEndpoint{IP: "10.244.0.3", Port: 40000, Identity: 300, Namespace: "empire", Pod: "tiefighter",
		Labels: []string{"class=tiefighter", "org=empire"}}
	ds := FlowEndpoint{IP: "10.244.0.2", Port: 80, Identity: 301, Namespace: "empire", Pod: "deathstar",
		Labels: []string{"class=deathstar", "org=empire"}}
	rule := RuleRef{Policy: PolicyRef{Kind: "TrafficPolicy", Namespace: "empire", Name: "rule1"}, Path: "spec.ingress[0]"}
	pass := RuleRef{Policy: PolicyRef{Kind: "AdminTrafficPolicy", Name: "pass-empire"}, Path: "spec.ingress[1]"}
	return map[string]any{
		"endpoints": []Endpoint{{
			ID: 12, Namespace: "empire", Pod: "deathstar", IP: "10.244.0.2", Identity: 301,
			Labels: []string{"class=deathstar", "org=empire"}, State: "ready",
			IngressEnforced: true, EgressEnforced: true, Audit: true, IfIndex: 42, Message: "regenerating after a policy change",
		}},
		"monitor-event": MonitorLine{Event: Event{
			Time: at, Node: "node-1", Type: "l7", Verdict: "DENIED", Reason: "http", Direction: "ingress", Protocol: "TCP",
			Source: tie, Destination: ds, Policy: "TrafficPolicy empire/rule1 spec.ingress[0]", Service: "empire/deathstar 10.96.0.20:80",
			L7: &FlowL7{Protocol: "grpc", Method: "POST", Path: "/empire.Deathstar/Exhaust", Host: "deathstar",
				Status: 403, GRPCStatus: &grpc, Latency: 1500 * time.Microsecond},
		}},
		"monitor-dns-event": MonitorLine{Event: Event{
			Time: at, Node: "node-1", Type: "l7", Verdict: "FORWARDED", Reason: "allowed by default/p", Direction: "egress", Protocol: "UDP",
			Source: tie, Destination: ds, Policy: "TrafficPolicy empire/dns",
			L7: &FlowL7{Protocol: "dns", Latency: 300 * time.Microsecond, DNS: &FlowDNS{Query: "api.example.com.", Type: "A", RCode: "NOERROR",
				Answers: []string{"10.96.1.1"}, Observed: []string{"api.example.com"}, Hold: 400 * time.Microsecond}},
		}},
		"fqdn-cache": []FQDNCacheEntry{{Name: "api.example.com", Endpoint: "default/mediabot", IP: "10.96.1.1", Expires: at, TTL: 3599}},
		"monitor-event-kafka": MonitorLine{Event: Event{
			Time: at, Node: "node-1", Type: "l7", Verdict: "DENIED", Reason: "topics not allowed: deathstar-plans", Direction: "ingress", Protocol: "TCP",
			Source: tie, Destination: ds, Policy: "TrafficPolicy empire/secure-empire-kafka",
			L7: &FlowL7{Protocol: "kafka", Latency: 250 * time.Microsecond,
				Kafka: &FlowKafka{APIKey: "fetch", APIVersion: 12, ClientID: "rdkafka", Topics: []string{"deathstar-plans"}, ErrorCode: 29}},
		}},
		"monitor-lost": MonitorLine{Event: Event{Time: at, Node: "node-1", Type: TypeLost}, Lost: 17},
		"trace-request": TraceRequest{
			Src: TracePeer{Labels: []Label{{Source: "k8s", Key: "class", Value: "tiefighter"}, {Source: "k8s", Key: "org", Value: "empire"}}},
			Dst: TracePeer{Pod: "empire/deathstar"}, Proto: 6, Port: 80,
			HTTP: &HTTPRequest{Method: "PUT", Path: "/v1/exhaust-port", Host: "deathstar",
				Header: map[string][]string{"X-Has-Force": {"True"}}, ServerName: "deathstar.empire"},
			Kafka: &KafkaRequest{APIKey: 0, APIVersion: 9, ClientID: "empire-hq", Topics: []string{"empire-announce"}, ServerName: "kafka"},
			DNS:   "deathstar.empire.svc", SNI: "deathstar.empire",
		},
		"trace-request-peers": []TracePeer{{IP: "192.0.2.1"}, {Entity: "world"}, {Service: "empire/deathstar"}},
		"services": []Service{
			{Namespace: "empire", Name: "deathstar", PortName: "http", Frontend: "10.96.0.20:80", Protocol: "TCP",
				Backends: []ServiceBackend{{Address: "10.244.0.2:8080", Pod: "empire/deathstar-1"}, {Address: "10.244.0.9:8080"}}},
			{Namespace: "empire", Name: "empty", Frontend: "10.96.0.21:53", Protocol: "UDP", Backends: []ServiceBackend{}},
		},
		"trace-response": TraceResponse{
			Node: "node-1", Mode: "default", Audit: true,
			Src: ResolvedPeer{Kind: "pod", Value: "empire/tiefighter (10.244.0.3)"},
			Dst: ResolvedPeer{Kind: "ip", Value: "192.0.2.1"}, Port: 8080,
			Result: &TraceResult{
				Src: &Identity{ID: 300, Labels: []Label{{Source: "k8s", Key: "class", Value: "tiefighter"}, {Source: "k8s", Key: "org", Value: "empire"}}},
				Dst: &Identity{ID: 16777217, Labels: []Label{{Source: "cidr", Key: "192.0.2.0/24"}}, Prefixes: []string{"192.0.2.0/24"}},
				Egress: TraceSide{
					Direction: "egress", Endpoint: "k8s:class=tiefighter,k8s:org=empire", Applies: true, Enforced: true,
					SelectedBy: []PolicyRef{rule.Policy},
					Decision: Decision{Verdict: "redirect", Tier: "namespace", Rule: rule, Rules: []RuleRef{rule},
						Parser: "http", DefaultDeny: true, Reason: "allowed by TrafficPolicy empire/rule1", PassedBy: &pass},
					L7: &L7Verdict{Parser: "http", Allowed: true, Rule: "empire/rule1: egress[0].toPorts[0].rules.http[0]",
						Reason: "request matches empire/rule1: egress[0].toPorts[0].rules.http[0]", Actions: []string{"ADD X-Checked: yes"}},
					Audit: true, Verdict: "ALLOWED",
				},
				Ingress: TraceSide{Direction: "ingress", Decision: Decision{Verdict: "allow", Tier: "none"}, Verdict: "SKIPPED"},
				Verdict: "ALLOWED",
			},
		},
		"error": Error{Error: "source: unknown entity \"moon\""},
	}
}

// TestWireGolden pins the API's JSON: each fixture marshals to its file
// in testdata, and the file decodes back to the fixture.
func TestWireGolden(t *testing.T) {
	for name, v := range wireFixtures() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run go test -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wire format differs from %s: a changed field changes the API (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
			}
			back := reflect.New(reflect.TypeOf(v))
			dec := json.NewDecoder(bytes.NewReader(want))
			dec.DisallowUnknownFields()
			if err := dec.Decode(back.Interface()); err != nil {
				t.Fatalf("decoding %s: %v", path, err)
			}
			if !reflect.DeepEqual(back.Elem().Interface(), v) {
				t.Errorf("%s decodes to\n%+v\nwant\n%+v", path, back.Elem().Interface(), v)
			}
		})
	}
}
