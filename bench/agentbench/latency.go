package main

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/policy"
)

const (
	benchNS = "bench"
	// pollEvery is the map polling interval: the resolution of the
	// latency figures (plus the cost of one lookup syscall).
	pollEvery = 100 * time.Microsecond
	// ports the policy alternates between.
	portA, portB = 8080, 8081
)

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// serverPolicy lets app=client reach app=server on TCP port.
func serverPolicy(port int) *v1alpha1.Rule {
	return &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: labels("app", "server")}},
		Ingress: []v1alpha1.IngressRule{{
			IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: labels("app", "client")}}}},
			ToPorts:           []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: strconv.Itoa(port), Protocol: v1alpha1.ProtoTCP}}}},
		}},
	}
}

// latency times policy changes and pod additions/removals, each from just
// before the API write to the moment the pinned maps show the result.
func latency(ctx context.Context, e *env, changes, podChanges, extraPods int) error {
	add := func(name string, l map[string]string) (*localcluster.Pod, error) {
		return e.c.AddPod(ctx, localcluster.PodSpec{Namespace: benchNS, Name: name, Labels: l})
	}
	server, err := add("server", labels("app", "server"))
	if err != nil {
		return err
	}
	clientPod, err := add("client", labels("app", "client"))
	if err != nil {
		return err
	}
	for i := range extraPods {
		if _, err := add(fmt.Sprintf("other-%d", i), labels("app", fmt.Sprintf("other-%d", i))); err != nil {
			return err
		}
	}
	// The pod whose object comes and goes: its network namespace stays,
	// so that each addition times the API and the agent, not the plumbing.
	churn, err := add("churn", labels("app", "client", "rev", "0"))
	if err != nil {
		return err
	}
	tp := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: "server"}, Spec: serverPolicy(portA)}
	if err := e.k8s.Create(ctx, tp); err != nil {
		return err
	}
	if err := e.startAgent(ctx); err != nil {
		return err
	}
	m := e.maps
	var srvEP uint32
	// The client's identity as the ipcache has it now: looked up on every
	// poll, because the agent may renumber it (see docs/benchmarks.md).
	clientAllowed := func(port int) func() error {
		return func() error {
			id, ok, err := m.identity(clientPod.IP)
			if err != nil || !ok {
				return orNotYet(err)
			}
			return allowed(m, srvEP, id, port)
		}
	}
	if _, err := poll(ctx, 10*time.Millisecond, 10*time.Second, func() error {
		ep, ok, err := m.endpoint(server.IP)
		if err != nil || !ok {
			return orNotYet(err)
		}
		srvEP = ep.EpID
		return clientAllowed(portA)()
	}); err != nil {
		return fmt.Errorf("initial policy not in the map: %w", err)
	}
	// The reconcilers re-apply at start what the agent's first pass fed;
	// let that settle.
	time.Sleep(2 * time.Second)
	logf("server endpoint %d; %d policy changes", srvEP, changes)
	renumbered, lastID := 0, uint32(0)
	noteID := func() {
		if id, ok, _ := m.identity(clientPod.IP); ok {
			if lastID != 0 && id != lastID {
				renumbered++
			}
			lastID = id
		}
	}
	noteID()

	// Policy changes: the port alternates, so every change adds one entry
	// and removes one. A merge patch has no resourceVersion, so the
	// agent's status writes cannot make it conflict.
	var present, complete []time.Duration
	for i := range changes {
		from, to := portA, portB
		if i%2 == 1 {
			from, to = portB, portA
		}
		patch := []byte(fmt.Sprintf(`{"spec":{"ingress":[{"fromEndpoints":[{"matchLabels":{"app":"client"}}],"toPorts":[{"ports":[{"port":"%d","protocol":"TCP"}]}]}]}}`, to))
		t0 := time.Now()
		if err := e.k8s.Patch(ctx, tp, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		t1, err := poll(ctx, pollEvery, 10*time.Second, clientAllowed(to))
		if err != nil {
			var got v1alpha1.TrafficPolicy
			_ = e.k8s.Get(ctx, client.ObjectKeyFromObject(tp), &got)
			return fmt.Errorf("change %d: port %d not allowed in the map: %w; policy generation %d, ingress %+v, status %+v; now server %+v, client identity %v; map:%s", i, to, err, got.Generation, got.Spec.Ingress, got.Status.Nodes, must(m.endpoint(server.IP)), must(m.identity(clientPod.IP)), m.dump(0))
		}
		t2, err := poll(ctx, pollEvery, 10*time.Second, func() error {
			id, ok, err := m.identity(clientPod.IP)
			if err != nil || !ok {
				return orNotYet(err)
			}
			return notAllowed(m, srvEP, id, from)
		})
		if err != nil {
			return fmt.Errorf("change %d: port %d still in the map: %w", i, from, err)
		}
		noteID()
		present = append(present, t1.Sub(t0))
		complete = append(complete, t2.Sub(t0))
	}
	report("policy change → new entry in the policy map", present)
	report("policy change → old entry gone too", complete)
	fmt.Printf("(the client's identity number changed %d times during the policy changes)\n", renumbered)

	if podChanges == 0 {
		return nil
	}
	// Pod additions and removals. Each addition carries a new label set
	// (rev=i), so it is a new identity: the server's policy map needs an
	// entry for it (the policy selects app=client) and the ipcache the
	// pod's /32. The agent writes policy entries before the ipcache, and
	// the benchmark checks both.
	tmpl := churn.Object.DeepCopy()
	if err := e.c.Clientset().CoreV1().Pods(benchNS).Delete(ctx, churn.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		return err
	}
	if _, err := poll(ctx, pollEvery, 10*time.Second, func() error { return gone(m, churn.IP) }); err != nil {
		return fmt.Errorf("churn pod still in the maps: %w", err)
	}
	logf("%d pod additions and removals", podChanges)
	var adds, removes []time.Duration
	pods := e.c.Clientset().CoreV1().Pods(benchNS)
	for i := range podChanges {
		obj := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: churn.Name, Labels: labels("app", "client", "rev", strconv.Itoa(i+1))},
			Spec:       tmpl.Spec,
		}
		// What a kubelet does: the object, then its status with the IP.
		t0 := time.Now()
		created, err := pods.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("pod addition %d: %w", i, err)
		}
		created.Status = tmpl.Status
		if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("pod addition %d: status: %w", i, err)
		}
		t1, err := poll(ctx, pollEvery, 10*time.Second, func() error {
			id, ok, err := m.identity(churn.IP)
			if err != nil || !ok || id == 0 {
				return orNotYet(err)
			}
			if _, ok, err := m.endpoint(churn.IP); err != nil || !ok {
				return orNotYet(err)
			}
			return allowed(m, srvEP, id, portA+(changes%2))
		})
		if err != nil {
			return fmt.Errorf("pod addition %d not in the maps: %w", i, err)
		}
		adds = append(adds, t1.Sub(t0))

		t0 = time.Now()
		if err := pods.Delete(ctx, churn.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			return fmt.Errorf("pod removal %d: %w", i, err)
		}
		t1, err = poll(ctx, pollEvery, 10*time.Second, func() error { return gone(m, churn.IP) })
		if err != nil {
			return fmt.Errorf("pod removal %d: still in the maps: %w", i, err)
		}
		removes = append(removes, t1.Sub(t0))
	}
	report("pod added (new identity) → ipcache, endpoint and policy entry", adds)
	report("pod removed → ipcache and endpoint entries gone", removes)
	return nil
}

func orNotYet(err error) error {
	if err != nil {
		return err
	}
	return errNotYet
}

func allowed(m *pinnedMaps, ep, id uint32, port int) error {
	v, ok, err := m.verdict(ep, policy.Ingress, id, policy.ProtoTCP, uint16(port))
	if err != nil || !ok || v != policy.Allow {
		return orNotYet(err)
	}
	return nil
}

func notAllowed(m *pinnedMaps, ep, id uint32, port int) error {
	v, ok, err := m.verdict(ep, policy.Ingress, id, policy.ProtoTCP, uint16(port))
	if err != nil || (ok && v == policy.Allow) {
		return orNotYet(err)
	}
	return nil
}

func gone(m *pinnedMaps, ip netip.Addr) error {
	if _, ok, err := m.identity(ip); err != nil || ok {
		return orNotYet(err)
	}
	if _, ok, err := m.endpoint(ip); err != nil || ok {
		return orNotYet(err)
	}
	return nil
}

// report prints p50, p99 and max of ds.
func report(what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	// Nearest rank: the smallest value with at least p of the samples at
	// or below it.
	q := func(p float64) time.Duration { return s[max(0, int(math.Ceil(p*float64(len(s))))-1)] }
	fmt.Printf("%-62s n=%-5d p50=%-9v p99=%-9v max=%v\n", what, len(s), q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}

func must[T any](v T, _ bool, _ error) T { return v }
