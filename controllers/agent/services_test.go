package agent

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/policy"
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
