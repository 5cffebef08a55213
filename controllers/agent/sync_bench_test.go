package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/policy"
)

// BenchmarkResyncUnchanged measures what the sync loop spends on an
// endpoint whose policy did not change: the engine's snapshot plus the
// datapath's diff writer finding nothing to write (no syscalls). It is the
// cost of resyncing every local endpoint after every change instead of
// tracking which ones changed.
//
//	go test -run '^$' -bench ResyncUnchanged ./controllers/agent/
func BenchmarkResyncUnchanged(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (BPF)")
	}
	_ = rlimit.RemoveMemlock()
	dp, err := bpf.Load(bpf.Options{})
	if errors.Is(err, ebpf.ErrNotSupported) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	repo := policy.NewRepository(policy.Options{})
	const pods = 100
	for i := range pods {
		repo.UpsertEndpoint(&policy.Endpoint{Namespace: "bench", Name: fmt.Sprint("pod-", i),
			Labels: map[string]string{"app": fmt.Sprint("app-", i%10)}, ServiceAccount: "default",
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)})}})
	}
	for i := range 10 {
		var ports []v1alpha1.PortProtocol
		for j := range 5 {
			ports = append(ports, v1alpha1.PortProtocol{Port: fmt.Sprint(8000 + 10*i + j), Protocol: v1alpha1.ProtoTCP})
		}
		p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprint("p", i)},
			Spec: &v1alpha1.Rule{
				EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("app-", i)}}},
				Ingress: []v1alpha1.IngressRule{{
					IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint("app-", (i+1)%10)}}}}},
					ToPorts:           []v1alpha1.PortRule{{Ports: ports}},
				}},
			}}
		if _, errs := repo.UpsertPolicy(p); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
	sync := func() {
		for i := range pods {
			pol := repo.EndpointPolicy("bench", fmt.Sprint("pod-", i))
			if err := dp.SyncEndpointPolicy(uint32(i+1), pol); err != nil {
				b.Fatal(err)
			}
		}
	}
	sync() // the first write
	used, _ := dp.PolicyEntries()
	b.ReportMetric(float64(used), "entries")
	b.ResetTimer()
	for b.Loop() {
		sync()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/pods, "µs/endpoint")
}
