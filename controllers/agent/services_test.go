package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"portcullis.dev/portcullis/agentclient"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
)

func TestTranslation(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	a, b, c := netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("10.244.0.6"), netip.MustParseAddr("10.244.0.7")
	svc := func(ip string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports}}
	}
	ep := func(ready *bool, ips ...string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: ips, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	port := func(name string, proto corev1.Protocol, n int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(n)}
	}
	// Two slices: the pods whose "http" port is 8080, and one whose is 9090.
	slices := []discoveryv1.EndpointSlice{
		{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("http", corev1.ProtocolTCP, 8080), port("dns", corev1.ProtocolUDP, 5353)},
			Endpoints: []discoveryv1.Endpoint{ep(nil, a.String()), ep(ptr.To(false), c.String())}},
		{AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("http", corev1.ProtocolTCP, 9090)},
			Endpoints: []discoveryv1.Endpoint{ep(ptr.To(true), b.String())}},
		{AddressType: discoveryv1.AddressTypeIPv6, Ports: []discoveryv1.EndpointPort{port("http", corev1.ProtocolTCP, 8080)},
			Endpoints: []discoveryv1.Endpoint{ep(nil, "fd00::1")}},
	}
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want []ServicePort
	}{
		{"named ports resolved per backend, not ready left out", svc(vip.String(),
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			corev1.ServicePort{Name: "sctp", Port: 99, Protocol: corev1.ProtocolSCTP}),
			[]ServicePort{
				{Key: bpf.ServiceKey{Addr: vip, Port: 80, Proto: policy.ProtoTCP}, Name: "http", Backends: []bpf.Backend{{Addr: a, Port: 8080}, {Addr: b, Port: 9090}}},
				{Key: bpf.ServiceKey{Addr: vip, Port: 53, Proto: policy.ProtoUDP}, Name: "dns", Backends: []bpf.Backend{{Addr: a, Port: 5353}}},
			}},
		{"a port no slice has gets no backends", svc(vip.String(), corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolTCP}),
			[]ServicePort{{Key: bpf.ServiceKey{Addr: vip, Port: 9100, Proto: policy.ProtoTCP}, Name: "metrics"}}},
		{"headless", svc(corev1.ClusterIPNone, corev1.ServicePort{Name: "http", Port: 80}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := translation(tc.svc, slices); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestServiceAPI: the service list shows each programmed port with its
// backends and their pods, and a live trace to a Service follows the
// datapath's translation (the backend, at its target port) or says that
// connections are refused.
func TestServiceAPI(t *testing.T) {
	repo := policy.NewRepository(policy.Options{})
	ds, tie := netip.MustParseAddr("10.244.0.2"), netip.MustParseAddr("10.244.0.3")
	repo.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "deathstar", Labels: map[string]string{"class": "deathstar"}, IPs: []netip.Addr{ds}})
	repo.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "tiefighter", Labels: map[string]string{"class": "tiefighter"}, IPs: []netip.Addr{tie}})
	policytest.Apply(t, repo, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: deathstar, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {class: tiefighter}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`)
	vip := netip.MustParseAddr("10.96.0.20")
	a := &Agent{repo: repo, hub: monitor.NewHub(), cfg: Config{NodeName: "n1"},
		pods: map[string]*podRecord{
			"default/deathstar":  {ip: ds, local: true, labels: map[string]string{"class": "deathstar"}},
			"default/tiefighter": {ip: tie, local: true, labels: map[string]string{"class": "tiefighter"}},
		},
		podsByIP: map[netip.Addr]string{ds: "default/deathstar", tie: "default/tiefighter"},
		services: map[types.NamespacedName][]ServicePort{
			{Namespace: "default", Name: "deathstar"}: {{Key: bpf.ServiceKey{Addr: vip, Port: 80, Proto: policy.ProtoTCP}, Name: "http",
				Backends: []bpf.Backend{{Addr: ds, Port: 8080}}}},
			{Namespace: "default", Name: "empty"}: {{Key: bpf.ServiceKey{Addr: vip.Next(), Port: 80, Proto: policy.ProtoTCP}}},
		}}
	srv := httptest.NewServer(a.APIHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + agentclient.PathServices)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []agentclient.Service
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := []agentclient.Service{
		{Namespace: "default", Name: "deathstar", PortName: "http", Frontend: "10.96.0.20:80", Protocol: "TCP",
			Backends: []agentclient.ServiceBackend{{Address: "10.244.0.2:8080", Pod: "default/deathstar"}}},
		{Namespace: "default", Name: "empty", Frontend: "10.96.0.21:80", Protocol: "TCP", Backends: []agentclient.ServiceBackend{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("services %+v\nwant %+v", got, want)
	}

	src := agentclient.TracePeer{Pod: "default/tiefighter"}
	tr, status, err := a.Trace(agentclient.TraceRequest{Src: src, Dst: agentclient.TracePeer{Service: "default/deathstar"}, Proto: policy.ProtoTCP, Port: 80})
	if err != nil {
		t.Fatalf("trace to the Service: %d %v", status, err)
	}
	if tr.Port != 8080 || tr.Dst.Kind != "service" || !strings.Contains(tr.Dst.Value, "default/deathstar (10.244.0.2:8080)") || tr.Result.Verdict != policy.VerdictAllowed {
		t.Errorf("trace %+v dst %+v verdict %s: want the backend at 8080, allowed", tr, tr.Dst, tr.Result.Verdict)
	}
	for _, c := range []struct {
		dst  string
		port uint16
		want string
	}{
		{"default/empty", 80, "refuses connections to 10.96.0.21:80/TCP"},
		{"default/deathstar", 81, "no port 81/TCP (it has 80/TCP)"},
		{"default/nothing", 80, "not a Service with a ClusterIP"},
		{"nothing", 80, "want namespace/name"},
	} {
		_, _, err := a.Trace(agentclient.TraceRequest{Src: src, Dst: agentclient.TracePeer{Service: c.dst}, Proto: policy.ProtoTCP, Port: c.port})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("trace to %s port %d: %v, want %q", c.dst, c.port, err, c.want)
		}
	}
}
