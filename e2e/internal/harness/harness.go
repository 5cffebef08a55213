// Package harness holds what the root e2e packages (e2e/datapath,
// e2e/proxy, e2e/multinode) need alike to run an agent against a local
// cluster: the scheme, a bpffs of their own, the operator's status
// reconcilers, a proxy port, the proxy ip-rule count, a retry helper, and
// the agent binary run on a node of a multi-node cluster (nodeagent.go).
package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/controllers/operator"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
)

// WaitProgrammed waits until c's node reports p's current generation in
// force and the operator's Programmed condition is True for it.
func WaitProgrammed(t testing.TB, c *localcluster.Cluster, k8s client.Client, p v1alpha1.Policy) {
	t.Helper()
	Eventually(t, "policy "+p.GetName()+" programmed", 20*time.Second, func() error {
		got := p.DeepCopyObject().(v1alpha1.Policy)
		if err := localcluster.NodeReported(context.Background(), k8s, c.NodeName(), p, got); err != nil {
			return err
		}
		cond := apimeta.FindStatusCondition(got.PolicyStatus().Conditions, v1alpha1.ConditionProgrammed)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != got.GetGeneration() {
			return fmt.Errorf("Programmed condition %+v", cond)
		}
		return nil
	})
}

// WaitProgrammedOn is WaitProgrammed for several nodes: each of them
// reports p's current generation in force, and Programmed is True.
func WaitProgrammedOn(t testing.TB, k8s client.Client, nodes []string, p v1alpha1.Policy) {
	t.Helper()
	Eventually(t, "policy "+p.GetName()+" programmed on every node", 30*time.Second, func() error {
		got := p.DeepCopyObject().(v1alpha1.Policy)
		for _, n := range nodes {
			if err := localcluster.NodeReported(context.Background(), k8s, n, p, got); err != nil {
				return err
			}
		}
		cond := apimeta.FindStatusCondition(got.PolicyStatus().Conditions, v1alpha1.ConditionProgrammed)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != got.GetGeneration() {
			return fmt.Errorf("Programmed condition %+v", cond)
		}
		return nil
	})
}

// Scheme knows the Kubernetes kinds and ours.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	// ReferenceGrant, which the operator reads when its CRD is installed.
	utilruntime.Must(gatewayv1beta1.Install(s))
	return s
}

// FreePort picks the proxy's port below the ephemeral range (32768 and up
// by default), so that no client connection of this or a parallel test
// holds it when the agent's proxy binds it, among the ports free now.
func FreePort(t testing.TB) uint16 {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err == nil {
			_ = ln.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port for the proxy in 20000-31999")
	return 0
}

// Eventually retries f every 200 ms until it succeeds, failing the test
// with what and f's last error after timeout.
func Eventually(t testing.TB, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// MountBPFFS mounts a bpffs on a fresh directory; the cleanup removes the
// agent's datapath (links and pins) and unmounts it.
func MountBPFFS(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "portcullis-e2e-bpffs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		_ = os.Remove(dir)
		t.Fatalf("mounting bpffs: %v", err)
	}
	t.Cleanup(func() {
		if dp, err := bpf.Load(bpf.Options{PinPath: filepath.Join(dir, "portcullis")}); err == nil {
			if err := dp.Remove(); err != nil {
				t.Errorf("removing the datapath: %v", err)
			}
		}
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
		_ = os.Remove(dir)
	})
	return dir
}

// StartOperator runs the operator's status reconcilers, so that the test
// checks the agent's reports the way users see them (Programmed).
func StartOperator(t testing.TB, c *localcluster.Cluster) {
	t.Helper()
	mgr, err := ctrl.NewManager(c.RESTConfig(), ctrl.Options{
		Scheme:     Scheme(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{v1alpha1.DefaultSystemNamespace: {}}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := operator.Setup(ctx, mgr, operator.Options{AgentPollInterval: 500 * time.Millisecond}); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	})
}

// CountProxyRules counts the proxy's ip rules in the node's namespace (the
// kernel accepts duplicates, so a test compares counts before and after).
func CountProxyRules(t testing.TB) int {
	t.Helper()
	n, err := bpf.CountProxyRules()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Cluster starts a local cluster (skipping the test unless root), takes
// over the proxy's routing for the test (the agent finds it in place and
// adds nothing, so the cleanup removes exactly what was added, and checks
// that no duplicate ip rule is left), and returns a client for it.
// Everything is removed on cleanup, also on failure.
func Cluster(t testing.TB) (*localcluster.Cluster, client.Client) {
	t.Helper()
	return ClusterWith(t, localcluster.Options{})
}

// ClusterWith is Cluster with options (e.g. Nodes); Logf is the test's.
func ClusterWith(t testing.TB, opts localcluster.Options) (*localcluster.Cluster, client.Client) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF, network namespaces)")
	}
	opts.Logf = t.Logf
	c, err := localcluster.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting the local cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	rulesBefore := CountProxyRules(t)
	t.Cleanup(func() {
		if n := CountProxyRules(t); n != rulesBefore {
			t.Errorf("%d proxy ip rules after the test, %d before", n, rulesBefore)
		}
	})
	teardown, err := bpf.SetupProxyRouting()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := teardown(); err != nil {
			t.Errorf("proxy routing teardown: %v", err)
		}
	})
	k8s, err := client.New(c.RESTConfig(), client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c, k8s
}

// RunAgent runs agent.Run in-process with cfg (its Ready is set here) and
// returns once the agent is ready; the test fails if it exits or is not
// ready within 30 s. stop cancels it and waits for it to return (the
// test's cleanup calls stop too; later calls do nothing).
func RunAgent(t testing.TB, cfg agent.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	cfg.Ready = ready
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, cfg) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent exited: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("agent not ready after 30s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// StartWorkload runs an internal/workloads role in pod (this test binary
// re-executed there) until the test ends.
func StartWorkload(t testing.TB, pod *localcluster.Pod, role string, args ...string) *workloads.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := workloads.Start(pod.Command(exe), role, args...)
	if err != nil {
		t.Fatalf("%s in %s/%s: %v", role, pod.Namespace, pod.Name, err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// ExamplePolicy reads a TrafficPolicy from the repository's examples/ (the
// e2e packages run two directories below the root).
func ExamplePolicy(t testing.TB, file string) *v1alpha1.TrafficPolicy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", file))
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.TrafficPolicy
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &p
}
