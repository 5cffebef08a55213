package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/policy"
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
	clientPod, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: "svc", Name: "client", Labels: map[string]string{"app": "client"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: "svc", Name: "other", Labels: map[string]string{"app": "other"}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, other, "0.0.0.0:8080")
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
	e.apiSocket = filepath.Join(t.TempDir(), "run", "agent.sock")
	e.startAgent()
	harness.WaitProgrammed(t, c, e.k8s, p)

	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80).String()
	t.Run("egress toEndpoints reaches the backends through the ClusterIP", func(t *testing.T) {
		expectReach(t, clientPod, vip)
		// Straight to the ClusterIP's port on a backend is not allowed: the
		// policy saw the translated port 8080.
		expectBlocked(t, clientPod, netip.AddrPortFrom(backends[0].IP, 80).String())
		harness.Eventually(t, "both backends chosen", 20*time.Second, func() error {
			if err := connect(clientPod, vip); err != nil {
				return err
			}
			seen := map[netip.Addr]bool{}
			for _, ev := range e.eventsSnapshot() {
				if ev.Verdict == bpf.EventAllow && ev.Src.Addr() == clientPod.IP && ev.Dst.Port() == 8080 && ev.Service.String() == vip {
					seen[ev.Dst.Addr()] = true
				}
			}
			if !seen[backends[0].IP] || !seen[backends[1].IP] {
				return fmt.Errorf("allowed flows to %v, want both backends", seen)
			}
			return nil
		})
	})
	t.Run("service list and live trace follow the translation", func(t *testing.T) {
		api := agentclient.NewClient(e.apiSocket)
		svcs, err := api.Services(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for _, s := range svcs {
			if s.Namespace != "svc" {
				continue // default/kubernetes, the apiserver's own
			}
			var bes []string
			for _, be := range s.Backends {
				bes = append(bes, be.Address+"="+be.Pod)
			}
			want[s.Namespace+"/"+s.Name+" "+s.Frontend+"/"+s.Protocol] = strings.Join(bes, ",")
		}
		webKey := "svc/web " + vip + "/TCP"
		wantBes := netip.AddrPortFrom(backends[0].IP, 8080).String() + "=svc/web-1," + netip.AddrPortFrom(backends[1].IP, 8080).String() + "=svc/web-2"
		if want[webKey] != wantBes || want["svc/empty "+empty.Spec.ClusterIP+":80/TCP"] != "" || len(want) != 2 {
			t.Errorf("service list %v, want %s -> %s and svc/empty without backends", want, webKey, wantBes)
		}
		tr, err := api.Trace(ctx, agentclient.TraceRequest{Src: agentclient.TracePeer{Pod: "svc/client"}, Dst: agentclient.TracePeer{Service: "svc/web"},
			Proto: policy.ProtoTCP, Port: 80})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Port != 8080 || tr.Dst.Kind != "service" || tr.Result.Verdict != policy.VerdictAllowed || tr.Result.Egress.Decision.Verdict != "allow" {
			t.Errorf("trace to svc/web: port %d dst %+v verdict %s egress %+v", tr.Port, tr.Dst, tr.Result.Verdict, tr.Result.Egress.Decision)
		}
		_, err = api.Trace(ctx, agentclient.TraceRequest{Src: agentclient.TracePeer{Pod: "svc/client"}, Dst: agentclient.TracePeer{Service: "svc/empty"},
			Proto: policy.ProtoTCP, Port: 80})
		if err == nil || !strings.Contains(err.Error(), "refuses connections") {
			t.Errorf("trace to svc/empty: %v, want refused", err)
		}
	})
	t.Run("toServices allows the Service's backends through its ClusterIP", func(t *testing.T) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := e.k8s.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
				return err
			}
			p.Spec.Egress = []v1alpha1.EgressRule{{EgressCommonRule: v1alpha1.EgressCommonRule{
				ToServices: []v1alpha1.Service{{K8sService: &v1alpha1.K8sServiceNamespace{ServiceName: "web", Namespace: "svc"}}}}}}
			return e.k8s.Update(ctx, p)
		})
		if err != nil {
			t.Fatal(err)
		}
		harness.WaitProgrammed(t, c, e.k8s, p)
		expectReach(t, clientPod, vip)
		expectBlocked(t, clientPod, netip.AddrPortFrom(other.IP, 8080).String())
	})
	t.Run("no backends refuses at once", func(t *testing.T) {
		start := time.Now()
		err := connectWithin(clientPod, netip.AddrPortFrom(netip.MustParseAddr(empty.Spec.ClusterIP), 80).String(), 3*time.Second)
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
			if err := connect(clientPod, vip); err != nil {
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
