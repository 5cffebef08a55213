package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/internal/localcluster"
)

type memoryOpts struct {
	namespaces, perNS, localPods, remotePods, workers int
}

// apps is the number of distinct app labels per namespace that policies
// select and allow.
const apps = 25

func memNS(i int) string { return fmt.Sprintf("mem-%03d", i) }

func appLabel(i int) string { return fmt.Sprintf("app-%02d", i%apps) }

// memPolicy is the j-th policy of a namespace: it selects one app and
// allows it from another (every fourth also from a set-based selector) on
// its own TCP port; every fifth has an HTTP rule (a proxy redirect), every
// tenth an egress rule to a CIDR.
func memPolicy(ns string, j int) *v1alpha1.TrafficPolicy {
	from := []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: labels("app", appLabel(j*7+3))}}}
	if j%4 == 0 {
		from = append(from, v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"0", "1"}},
		}}})
	}
	pr := v1alpha1.PortRule{Ports: []v1alpha1.PortProtocol{{Port: strconv.Itoa(1000 + j), Protocol: v1alpha1.ProtoTCP}}}
	if j%5 == 0 {
		pr.Rules = &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET", Path: fmt.Sprintf("/api/v%d/.*", j)}}}
	}
	rule := &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: labels("app", appLabel(j))}},
		Ingress:          []v1alpha1.IngressRule{{IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: from}, ToPorts: []v1alpha1.PortRule{pr}}},
	}
	if j%10 == 0 {
		rule.Egress = []v1alpha1.EgressRule{{
			EgressCommonRule: v1alpha1.EgressCommonRule{ToCIDR: []v1alpha1.CIDR{v1alpha1.CIDR(fmt.Sprintf("10.%d.0.0/16", j%200))}},
			ToPorts:          []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: "443", Protocol: v1alpha1.ProtoTCP}}}},
		}}
	}
	return &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p-%03d", j)}, Spec: rule}
}

// parallel runs f(0..n-1) on workers goroutines and returns the first
// error.
func parallel(ctx context.Context, n, workers int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// memory runs the agent with opts.namespaces × opts.perNS TrafficPolicies
// and reports its memory and the time to realise them.
func memory(ctx context.Context, e *env, o memoryOpts) error {
	start := time.Now()
	for i := range o.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: memNS(i), Labels: labels("team", fmt.Sprintf("team-%d", i%10))}}
		if err := e.k8s.Create(ctx, ns); err != nil {
			return err
		}
	}
	for i := range o.localPods {
		_, err := e.c.AddPod(ctx, localcluster.PodSpec{Namespace: memNS(i % o.namespaces), Name: fmt.Sprintf("local-%d", i),
			Labels: labels("app", appLabel(i), "tier", strconv.Itoa(i%3))})
		if err != nil {
			return err
		}
	}
	// Pods on other nodes: API objects with addresses in the upper half
	// of the pod range, which the local cluster does not hand out here
	// (nothing is plumbed for them).
	pods := e.c.Clientset().CoreV1()
	if err := parallel(ctx, o.remotePods, o.workers, func(ctx context.Context, i int) error {
		ip := netip.AddrFrom4([4]byte{10, 244, byte(128 + i/250), byte(1 + i%250)}).String()
		ns := memNS(i % o.namespaces)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("remote-%d", i), Labels: labels("app", appLabel(i), "tier", strconv.Itoa(i%3))},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("remote-node-%d", i%20), AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "main", Image: localcluster.PlaceholderImage}}},
		}
		created, err := pods.Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "10.244.255.254"}
		_, err = pods.Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("remote pods: %w", err)
	}
	logf("%d namespaces, %d local and %d remote pods in %v", o.namespaces, o.localPods, o.remotePods, time.Since(start).Round(time.Millisecond))

	if err := e.startAgent(ctx); err != nil {
		return err
	}
	base, err := e.agent.stats()
	if err != nil {
		return err
	}

	total := o.namespaces * o.perNS
	logf("creating %d TrafficPolicies with %d writers", total, o.workers)
	t0 := time.Now()
	if err := parallel(ctx, total, o.workers, func(ctx context.Context, i int) error {
		return e.k8s.Create(ctx, memPolicy(memNS(i/o.perNS), i%o.perNS))
	}); err != nil {
		return fmt.Errorf("creating policies: %w", err)
	}
	created := time.Since(t0)
	logf("created in %v (%.0f/s)", created.Round(time.Millisecond), float64(total)/created.Seconds())

	// Realised: the agent reports a policy's generation in status.nodes
	// only after the sync pass that wrote it to the datapath.
	node := e.c.NodeName()
	var listTime time.Duration
	tDone, err := poll(ctx, 2*time.Second, 30*time.Minute, func() error {
		var l v1alpha1.TrafficPolicyList
		ts := time.Now()
		if err := e.k8s.List(ctx, &l); err != nil {
			return err
		}
		listTime = time.Since(ts)
		n := 0
		for _, p := range l.Items {
			for _, s := range p.Status.Nodes {
				if s.Name == node && s.ObservedGeneration == p.Generation && s.Message == "" {
					n++
				}
			}
		}
		logf("%d of %d policies realised (list took %v)", n, total, listTime.Round(time.Millisecond))
		if n < total {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the agent to realise the policies: %w", err)
	}
	realised := tDone.Sub(t0)
	// Let the last reports and caches settle before measuring.
	time.Sleep(5 * time.Second)
	st, err := e.agent.stats()
	if err != nil {
		return err
	}
	entries, err := e.maps.policyEntries()
	if err != nil {
		return err
	}
	mb := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Printf("agent with %d TrafficPolicies (%d namespaces × %d), %d local + %d remote pods:\n", total, o.namespaces, o.perNS, o.localPods, o.remotePods)
	fmt.Printf("  created in the apiserver in %v (%.0f/s, %d writers)\n", created.Round(time.Millisecond), float64(total)/created.Seconds(), o.workers)
	fmt.Printf("  realised (every policy's status.nodes reports its generation) %v after the first create (poll every 2 s; one list took %v)\n",
		realised.Round(100*time.Millisecond), listTime.Round(time.Millisecond))
	fmt.Printf("  policy map entries: %d\n", entries)
	fmt.Printf("  before the policies: heap in use %s (live %s), RSS %s, %d goroutines\n", mb(base.HeapInuse), mb(base.HeapAlloc), mb(base.RSS), base.Goroutines)
	fmt.Printf("  with the policies:   heap in use %s (live %s), Go runtime total %s, RSS %s, %d goroutines\n", mb(st.HeapInuse), mb(st.HeapAlloc), mb(st.Sys), mb(st.RSS), st.Goroutines)
	return nil
}
