// Package datapath is the end-to-end test of the node agent with the real
// kernel datapath: a local cluster (real kube-apiserver, pods as network
// namespaces), the agent run in-process through agent.Run (the code path of
// cmd/portcullis-agent) with its pins on a bpffs the test mounts, the
// operator's status reconcilers, and real TCP connections between pods.
package datapath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/e2e/internal/nodelock"
	"portcullis.dev/portcullis/internal/localcluster"
)

const helperEnv = "PORTCULLIS_E2E_LISTEN"

// TestMain lets the test binary serve TCP inside a pod: with
// PORTCULLIS_E2E_LISTEN=ADDR it listens on ADDR, prints "ready" and answers
// each connection with "hello" until killed.
func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("ready")
		// Never outlive the test by much, even if it is killed.
		time.AfterFunc(5*time.Minute, func() { os.Exit(0) })
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			fmt.Fprintln(c, "hello")
			_ = c.Close()
		}
	}
	// Node-wide state (the proxy's ip rule) is shared with other e2e
	// packages that go test runs in parallel: one at a time.
	nodelock.RunTests(m)
}

// env is one run of the test: the cluster, the pods, the agent.
type env struct {
	t       *testing.T
	c       *localcluster.Cluster
	k8s     client.Client
	bpffs   string
	port    uint16
	drops   sync.Map // source address → count of DROPPED events
	stopAgt func()
	agent   atomic.Pointer[agent.Agent]
	// policyMapSize is the agent's policy map size; zero keeps the default.
	policyMapSize uint32
	// probeAddr is where the running agent serves /healthz and /readyz.
	probeAddr string
	// mode and audit are the agent's EnforcementMode and AuditMode.
	mode  string
	audit bool
	// events records every datapath event of every agent run.
	eventsMu sync.Mutex
	events   []bpf.Event
	// apiSocket is the agent's API socket; empty serves none.
	apiSocket string
}

func (e *env) startAgent() {
	t := e.t
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.probeAddr = ln.Addr().String()
	_ = ln.Close()
	go func() {
		done <- agent.Run(ctx, agent.Config{
			RESTConfig: e.c.RESTConfig(), NodeName: e.c.NodeName(),
			BPFFS: e.bpffs, ProxyPort: e.port, PolicyMapSize: e.policyMapSize,
			EnforcementMode: e.mode, AuditMode: e.audit,
			MetricsBindAddress: "0", HealthProbeBindAddress: e.probeAddr,
			APISocket:     e.apiSocket,
			LeaseDuration: 10 * time.Second, RenewInterval: time.Second,
			OnEvent: func(ev bpf.Event) {
				e.eventsMu.Lock()
				e.events = append(e.events, ev)
				e.eventsMu.Unlock()
				if ev.Verdict == bpf.EventDrop {
					v, _ := e.drops.LoadOrStore(ev.Src.Addr(), new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				}
			},
			Ready:   ready,
			Started: func(a *agent.Agent) { e.agent.Store(a) },
		})
	}()
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
	e.stopAgt = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
	t.Cleanup(e.stopAgt)
}

func (e *env) dropsFrom(a netip.Addr) int64 {
	if v, ok := e.drops.Load(a); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// connect opens a TCP connection from pod to addr with bash's /dev/tcp and
// reads the greeting.
func connect(pod *localcluster.Pod, addr string) error {
	return connectWithin(pod, addr, 1500*time.Millisecond)
}

func connectWithin(pod *localcluster.Pod, addr string, timeout time.Duration) error {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := pod.Exec(ctx, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && head -n1 <&3", host, port))
	if err != nil {
		return fmt.Errorf("%s -> %s: %v (%s)", pod.Name, addr, err, strings.TrimSpace(string(out)))
	}
	if s := strings.TrimSpace(string(out)); s != "hello" {
		return fmt.Errorf("%s -> %s: got %q", pod.Name, addr, s)
	}
	return nil
}

func expectReach(t *testing.T, from *localcluster.Pod, addr string) {
	t.Helper()
	harness.Eventually(t, from.Namespace+"/"+from.Name+" reaches "+addr, 10*time.Second, func() error { return connect(from, addr) })
}

func expectBlocked(t *testing.T, from *localcluster.Pod, addr string) {
	t.Helper()
	harness.Eventually(t, from.Namespace+"/"+from.Name+" blocked to "+addr, 10*time.Second, func() error {
		if connect(from, addr) == nil {
			return errors.New("connection succeeded")
		}
		return nil
	})
}

func startServer(t *testing.T, pod *localcluster.Pod, addr string) {
	t.Helper()
	cmd := pod.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("server in %s: %q, %v", pod.Name, line, err)
	}
}

// swPolicy is Cilium's sw_l3_l4_policy: the deathstar accepts TCP/80 only
// from org=<org>.
func swPolicy(org string) v1alpha1.Rule {
	return v1alpha1.Rule{
		Description:      "L3-L4 policy to restrict deathstar access to empire ships only",
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"org": "empire", "class": "deathstar"}}},
		Ingress: []v1alpha1.IngressRule{{
			IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"org": org}}}}},
			ToPorts:           []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: "80", Protocol: v1alpha1.ProtoTCP}}}},
		}},
	}
}

// setPolicy updates p to allow org (the operator writes status meanwhile,
// hence the retry on conflicts).
func (e *env) setPolicy(p *v1alpha1.TrafficPolicy, org string) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.k8s.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec = ptr.To(swPolicy(org))
		return e.k8s.Update(context.Background(), p)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// newEnv starts a local cluster, the proxy routing and a bpffs, all
// removed on cleanup (also on failure).
func newEnv(t *testing.T) *env {
	t.Helper()
	c, k8s := harness.Cluster(t)
	return &env{t: t, c: c, k8s: k8s, bpffs: harness.MountBPFFS(t), port: harness.FreePort(t)}
}

func TestStarWarsL3L4(t *testing.T) {
	begin := time.Now()
	ctx := context.Background()
	e := newEnv(t)
	c, k8s := e.c, e.k8s

	add := func(ns, name string, labels map[string]string) *localcluster.Pod {
		p, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: ns, Name: name, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	deathstar := add("starwars", "deathstar", map[string]string{"org": "empire", "class": "deathstar"})
	tiefighter := add("starwars", "tiefighter", map[string]string{"org": "empire", "class": "tiefighter"})
	xwing := add("starwars", "xwing", map[string]string{"org": "alliance", "class": "xwing"})
	// Same labels as the tiefighter, another namespace: the policy's
	// fromEndpoints means its own namespace only.
	outsider := add("outer-rim", "tiefighter", map[string]string{"org": "empire", "class": "tiefighter"})
	ds := netip.AddrPortFrom(deathstar.IP, 80).String()
	startServer(t, deathstar, "0.0.0.0:80")

	harness.StartOperator(t, c)
	e.startAgent()
	t.Logf("cluster, pods, agent ready after %v", time.Since(begin).Round(time.Millisecond))

	// Every local pod is a ready endpoint, and the gauges say so (the
	// reconcilers re-apply what the start-up pass fed, so an endpoint may
	// be regenerating for a moment).
	harness.Eventually(t, "endpoints ready", 10*time.Second, func() error {
		eps := e.agent.Load().Endpoints()
		if len(eps) != 4 {
			return fmt.Errorf("%d endpoints, want 4", len(eps))
		}
		for _, ep := range eps {
			if ep.State != agent.StateReady || ep.ID == 0 || !ep.IP.IsValid() {
				return fmt.Errorf("endpoint %+v, want ready", ep)
			}
		}
		if v := gaugeValue(t, agent.EndpointStates.WithLabelValues(agent.StateReady)); v != 4 {
			return fmt.Errorf("portcullis_endpoints{state=ready} = %v, want 4", v)
		}
		return nil
	})

	// The probes: live, and ready (the first sync is done).
	for _, path := range []string{"/healthz", "/readyz"} {
		harness.Eventually(t, path, 5*time.Second, func() error {
			resp, err := http.Get("http://" + e.probeAddr + path)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	}

	// Lease held.
	var lease coordinationv1.Lease
	harness.Eventually(t, "agent lease", 10*time.Second, func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: v1alpha1.DefaultSystemNamespace, Name: v1alpha1.AgentLeaseName(c.NodeName())}, &lease)
	})
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != c.NodeName() {
		t.Errorf("lease holder %v, want %s", lease.Spec.HolderIdentity, c.NodeName())
	}

	// No policy: everyone lands.
	expectReach(t, xwing, ds)
	expectReach(t, tiefighter, ds)

	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "starwars", Name: "rule1"}, Spec: ptr.To(swPolicy("empire"))}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Run("l3l4", func(t *testing.T) {
		expectBlocked(t, xwing, ds)
		expectReach(t, tiefighter, ds)
		harness.Eventually(t, "drop event for the xwing", 5*time.Second, func() error {
			if e.dropsFrom(xwing.IP) == 0 {
				return errors.New("none yet")
			}
			return nil
		})
		if n := agent.VerdictCount("ingress", "TCP", "DROPPED"); n < 1 {
			t.Errorf("portcullis_policy_verdicts_total{ingress,TCP,DROPPED} = %v, want >= 1", n)
		}
		if v := gaugeValue(t, agent.MapPressure.WithLabelValues("policy")); v <= 0 || v >= 1 {
			t.Errorf("portcullis_bpf_map_pressure{map=policy} = %v, want in (0, 1)", v)
		}
		harness.WaitProgrammed(t, e.c, e.k8s, p)
	})
	t.Run("namespace isolation", func(t *testing.T) {
		expectBlocked(t, outsider, ds)
	})
	t.Run("policy change", func(t *testing.T) {
		e.setPolicy(p, "alliance")
		expectReach(t, xwing, ds)
		expectBlocked(t, tiefighter, ds)
		harness.WaitProgrammed(t, e.c, e.k8s, p)
		e.setPolicy(p, "empire")
		expectBlocked(t, xwing, ds)
		expectReach(t, tiefighter, ds)
		harness.WaitProgrammed(t, e.c, e.k8s, p)
	})
	t.Run("invalid update keeps the previous version", func(t *testing.T) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
				return err
			}
			p.Spec = ptr.To(swPolicy("empire"))
			// An HTTP path that is not a valid regular expression does
			// not compile.
			p.Spec.Ingress[0].ToPorts[0].Rules = &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Path: "/["}}}
			return k8s.Update(ctx, p)
		})
		if err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, "compile error reported", 20*time.Second, func() error {
			var got v1alpha1.TrafficPolicy
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
				return err
			}
			for _, n := range got.Status.Nodes {
				if n.Name == c.NodeName() && n.Message != "" && n.ObservedGeneration == got.Generation-1 {
					t.Logf("reported: %s", n.Message)
					return nil
				}
			}
			return fmt.Errorf("nodes %+v, generation %d", got.Status.Nodes, got.Generation)
		})
		expectBlocked(t, xwing, ds)
		expectReach(t, tiefighter, ds)
		e.setPolicy(p, "empire")
		harness.WaitProgrammed(t, e.c, e.k8s, p)
	})
	t.Run("agent restart keeps enforcing", func(t *testing.T) {
		// Probe the xwing continuously across the restart.
		stop := make(chan struct{})
		var leaked atomic.Int64
		var probes atomic.Int64
		probing := make(chan struct{})
		go func() {
			defer close(probing)
			for {
				select {
				case <-stop:
					return
				default:
				}
				probes.Add(1)
				if connectWithin(xwing, ds, 300*time.Millisecond) == nil {
					leaked.Add(1)
				}
			}
		}()
		e.stopAgt()
		time.Sleep(2 * time.Second)
		if err := connect(tiefighter, ds); err != nil {
			t.Errorf("agent down: %v", err)
		}
		e.startAgent()
		expectReach(t, tiefighter, ds)
		time.Sleep(time.Second)
		close(stop)
		<-probing
		if n := leaked.Load(); n > 0 {
			t.Errorf("the xwing got through %d times of %d across the restart", n, probes.Load())
		}
		t.Logf("%d xwing probes across the restart, none through", probes.Load())
		expectBlocked(t, xwing, ds)
		eps := 0
		for _, ep := range mustEndpoints(t, e) {
			if ep.IP == deathstar.IP {
				eps++
			}
		}
		if eps != 1 {
			t.Errorf("deathstar endpoint pinned %d times after restart, want 1", eps)
		}
	})
	t.Run("delete restores access", func(t *testing.T) {
		if err := k8s.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
		expectReach(t, xwing, ds)
		expectReach(t, outsider, ds)
	})
	t.Run("pod deletion detaches", func(t *testing.T) {
		if err := c.DeletePod(ctx, "starwars", "xwing"); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, "xwing endpoint detached", 10*time.Second, func() error {
			for _, ep := range mustEndpoints(t, e) {
				if ep.IP == xwing.IP {
					return fmt.Errorf("endpoint %v still in the datapath", ep)
				}
			}
			return nil
		})
	})
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// mustEndpoints lists the datapath's endpoints from the pinned maps (a
// second handle on the same pins, as a CLI would open them).
func mustEndpoints(t *testing.T, e *env) []bpf.Endpoint {
	t.Helper()
	dp, err := bpf.Load(bpf.Options{PinPath: filepath.Join(e.bpffs, "portcullis")})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	eps, err := dp.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	return eps
}

// TestLockdown: an endpoint whose policy does not fit in the policy map is
// locked down (its allowed flows stop too: never silently open), with an
// Event on the Pod, a metric and the endpoint state; a later sync that
// fits lifts it.
func TestLockdown(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// 3 pods need 2 entries each without policies; the policy below needs
	// far more than the rest.
	e.policyMapSize = 16
	server, err := e.c.AddPod(ctx, localcluster.PodSpec{Namespace: "lockdown", Name: "server", Labels: map[string]string{"app": "server"}})
	if err != nil {
		t.Fatal(err)
	}
	clientPod, err := e.c.AddPod(ctx, localcluster.PodSpec{Namespace: "lockdown", Name: "client", Labels: map[string]string{"app": "client"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(server.IP, 8080).String()
	startServer(t, server, "0.0.0.0:8080")
	e.startAgent()
	expectReach(t, clientPod, addr)
	before := agent.LockdownCount()

	// Allow the client on 8080 and on many single ports that no range
	// merges: more entries than the map holds.
	var toPorts []v1alpha1.PortRule
	for i := range 4 {
		var ports []v1alpha1.PortProtocol
		for j := range 10 {
			ports = append(ports, v1alpha1.PortProtocol{Port: fmt.Sprint(8080 + 20*i + 2*j), Protocol: v1alpha1.ProtoTCP})
		}
		toPorts = append(toPorts, v1alpha1.PortRule{Ports: ports})
	}
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "lockdown", Name: "big"}, Spec: &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}},
		Ingress: []v1alpha1.IngressRule{{
			IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}},
			ToPorts:           toPorts,
		}},
	}}
	if err := e.k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, "server in lockdown", 10*time.Second, func() error {
		for _, ep := range e.agent.Load().Endpoints() {
			if ep.Name == "server" && ep.State == agent.StateLockdown {
				return nil
			}
		}
		return fmt.Errorf("endpoints %+v", e.agent.Load().Endpoints())
	})
	// The allowed flow is dropped too.
	expectBlocked(t, clientPod, addr)
	if n := agent.LockdownCount(); n <= before {
		t.Errorf("portcullis_endpoint_lockdowns_total = %v, want > %v", n, before)
	}
	harness.Eventually(t, "Lockdown event on the pod", 10*time.Second, func() error {
		var evs eventsv1.EventList
		if err := e.k8s.List(ctx, &evs, client.InNamespace("lockdown")); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "Lockdown" && ev.Regarding.Name == "server" && ev.Type == "Warning" {
				return nil
			}
		}
		return fmt.Errorf("%d events, none a Lockdown of the server", len(evs.Items))
	})

	harness.Eventually(t, "failure reported in status.nodes", 10*time.Second, func() error {
		var got v1alpha1.TrafficPolicy
		if err := e.k8s.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
			return err
		}
		for _, n := range got.Status.Nodes {
			if n.Name == e.c.NodeName() && n.ObservedGeneration == 0 && strings.Contains(n.Message, "policy map full") {
				t.Logf("reported: %s", n.Message)
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", got.Status.Nodes)
	})

	// The policy gone, the endpoint's entries fit again: lockdown lifted.
	if err := e.k8s.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	expectReach(t, clientPod, addr)
	harness.Eventually(t, "endpoints ready", 10*time.Second, func() error {
		for _, ep := range e.agent.Load().Endpoints() {
			if ep.State != agent.StateReady {
				return fmt.Errorf("endpoint %s/%s %s (%s), want ready", ep.Namespace, ep.Name, ep.State, ep.Message)
			}
		}
		return nil
	})
}
