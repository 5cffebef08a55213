package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/localcluster"
)

// TestServices: the agent programs Services from their EndpointSlices, and
// a client whose egress allows only the backends (toEndpoints) reaches
// them through the ClusterIP; a Service without backends refuses at once;
// a backend that goes is not chosen again.
func TestServices(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	c := e.c
	web := map[string]string{"app": "web"}
	var backends []*localcluster.Pod
	for _, name := range []string{"web-1", "web-2"} {
		p, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: "svc", Name: name, Labels: web,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}})
		if err != nil {
			t.Fatal(err)
		}
		startServer(t, p, "0.0.0.0:8080")
		backends = append(backends, p)
	}
	client, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: "svc", Name: "client", Labels: map[string]string{"app": "client"}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.AddService(ctx, localcluster.ServiceSpec{Namespace: "svc", Name: "web", Selector: web,
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := c.AddService(ctx, localcluster.ServiceSpec{Namespace: "svc", Name: "empty", Selector: map[string]string{"app": "none"},
		Ports: []corev1.ServicePort{{Port: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "svc", Name: "client"}, Spec: &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}},
		Egress: []v1alpha1.EgressRule{{
			EgressCommonRule: v1alpha1.EgressCommonRule{ToEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: web}}}},
			ToPorts:          []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: "8080", Protocol: v1alpha1.ProtoTCP}}}},
		}},
	}}
	if err := e.k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	harness.StartOperator(t, c)
	e.startAgent()
	harness.WaitProgrammed(t, c, e.k8s, p)

	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80).String()
	t.Run("egress toEndpoints reaches the backends through the ClusterIP", func(t *testing.T) {
		expectReach(t, client, vip)
		// Straight to the ClusterIP's port on a backend is not allowed: the
		// policy saw the translated port 8080.
		expectBlocked(t, client, netip.AddrPortFrom(backends[0].IP, 80).String())
		harness.Eventually(t, "both backends chosen", 20*time.Second, func() error {
			if err := connect(client, vip); err != nil {
				return err
			}
			seen := map[netip.Addr]bool{}
			for _, ev := range e.eventsSnapshot() {
				if ev.Verdict == bpf.EventAllow && ev.Src.Addr() == client.IP && ev.Dst.Port() == 8080 {
					seen[ev.Dst.Addr()] = true
				}
			}
			if !seen[backends[0].IP] || !seen[backends[1].IP] {
				return fmt.Errorf("allowed flows to %v, want both backends", seen)
			}
			return nil
		})
	})
	t.Run("no backends refuses at once", func(t *testing.T) {
		start := time.Now()
		err := connectWithin(client, netip.AddrPortFrom(netip.MustParseAddr(empty.Spec.ClusterIP), 80).String(), 3*time.Second)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("connect to a Service without backends: %v, want connection refused", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusal took %v", d)
		}
	})
	t.Run("a deleted backend is not chosen again", func(t *testing.T) {
		if err := c.DeletePod(ctx, "svc", "web-1"); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, "the agent drops web-1", 10*time.Second, func() error {
			for _, s := range e.agent.Load().Services() {
				if s.Name == "web" && len(s.Ports) == 1 && len(s.Ports[0].Backends) == 1 && s.Ports[0].Backends[0].Addr == backends[1].IP {
					return nil
				}
			}
			return errors.New("web still has web-1")
		})
		for i := range 10 {
			if err := connect(client, vip); err != nil {
				t.Fatalf("connection %d after the backend left: %v", i, err)
			}
		}
	})
}

// eventsSnapshot copies the datapath events seen so far.
func (e *env) eventsSnapshot() []bpf.Event {
	e.eventsMu.Lock()
	defer e.eventsMu.Unlock()
	return append([]bpf.Event(nil), e.events...)
}
