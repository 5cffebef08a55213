package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/internal/localcluster"
)

// remoteIP is the address of remote pod i: 10.244.1.1 onwards, 254 per
// /24, never .0 or .255 (the local cluster hands this node's pods
// 10.244.0.x here, and nothing is plumbed for these).
func remoteIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 244, byte(1 + i/254), byte(1 + i%254)})
}

// createRemotePod creates Pod object i on another node with its status
// (Running, podIP), as that node's kubelet would.
func createRemotePod(ctx context.Context, e *env, ns string, i int) error {
	pods := e.c.Clientset().CoreV1().Pods(ns)
	ip := remoteIP(i).String()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("remote-%d", i), Labels: labels("app", appLabel(i), "tier", fmt.Sprint(i%3))},
		Spec: corev1.PodSpec{NodeName: fmt.Sprintf("remote-node-%d", i%20), AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "main", Image: localcluster.PlaceholderImage}}},
	}
	created, err := pods.Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "10.244.255.254"}
	_, err = pods.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// remote measures one agent's view of a cluster of many nodes: n remote
// Pod objects (no network namespaces), the agent started after them; then
// its ipcache size and memory, and for samples more remote pods the time
// from the start of a pod's creation (Create, then the status with its
// podIP) to its /32 in the pinned ipcache.
func remote(ctx context.Context, e *env, n, samples, workers int) error {
	const ns = "remote"
	if err := e.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	t0 := time.Now()
	if err := parallel(ctx, n, workers, func(ctx context.Context, i int) error { return createRemotePod(ctx, e, ns, i) }); err != nil {
		return fmt.Errorf("remote pods: %w", err)
	}
	logf("%d remote pods in %v", n, time.Since(t0).Round(time.Millisecond))
	t1 := time.Now()
	if err := e.startAgent(ctx); err != nil {
		return err
	}
	last := remoteIP(n - 1)
	if _, err := poll(ctx, 10*time.Millisecond, 10*time.Minute, func() error {
		if _, ok, err := e.maps.identity(last); err != nil || !ok {
			return orNotYet(err)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("waiting for the last remote pod in the ipcache: %w", err)
	}
	loaded := time.Since(t1)
	time.Sleep(3 * time.Second) // let the caches and reports settle
	st, err := e.agent.stats()
	if err != nil {
		return err
	}
	ipc, err := bpf.ReadPinnedIPCache(filepath.Join(e.bpffs, "portcullis"))
	if err != nil {
		return err
	}
	var ds []time.Duration
	for i := n; i < n+samples; i++ {
		start := time.Now()
		if err := createRemotePod(ctx, e, ns, i); err != nil {
			return err
		}
		ip := remoteIP(i)
		tDone, err := poll(ctx, time.Millisecond, 30*time.Second, func() error {
			if _, ok, err := e.maps.identity(ip); err != nil || !ok {
				return orNotYet(err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("remote pod %d (%s) not in the ipcache: %w", i, ip, err)
		}
		ds = append(ds, tDone.Sub(start))
	}
	mb := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Printf("agent with %d remote pods (Pod objects on 20 other nodes):\n", n)
	fmt.Printf("  ipcache entries: %d (start to the last pod's entry: %v)\n", len(ipc), loaded.Round(10*time.Millisecond))
	fmt.Printf("  heap in use %s (live %s), Go runtime total %s, RSS %s, %d goroutines\n", mb(st.HeapInuse), mb(st.HeapAlloc), mb(st.Sys), mb(st.RSS), st.Goroutines)
	report(fmt.Sprintf("remote pod created -> its ipcache entry (%d remote pods)", n), ds)
	return nil
}
