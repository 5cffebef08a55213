package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	corev1 "k8s.io/api/core/v1"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/monitor"
)

// The environment is the one of e2e/datapath (a local cluster, the
// operator's status reconcilers, the agent in-process on a bpffs of its
// own), duplicated in its minimal form rather than shared: the two
// packages evolve separately.

// env is one run: the cluster, the agent, what it reported.
type env struct {
	t     *testing.T
	c     *localcluster.Cluster
	k8s   client.Client
	bpffs string
	port  uint16

	mu     sync.Mutex
	drops  map[netip.Addr]int
	events []monitor.Event
}

// newEnv starts a local cluster, the proxy routing and a bpffs, all
// removed on cleanup (also on failure).
func newEnv(t *testing.T) *env {
	t.Helper()
	c, k8s := harness.Cluster(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: make deps installs it")
	}
	return &env{t: t, c: c, k8s: k8s, bpffs: harness.MountBPFFS(t), port: harness.FreePort(t), drops: map[netip.Addr]int{}}
}

// startAgent runs agent.Run in-process until the test ends, recording
// DROPPED events by source address and every flow event of its hub (what
// `portcullis monitor` shows).
func (e *env) startAgent() {
	var sub *monitor.Subscription
	e.t.Cleanup(func() {
		if sub != nil {
			sub.Close()
		}
	})
	harness.RunAgent(e.t, agent.Config{
		RESTConfig: e.c.RESTConfig(), NodeName: e.c.NodeName(),
		BPFFS: e.bpffs, ProxyPort: e.port,
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		LeaseDuration: 10 * time.Second, RenewInterval: time.Second,
		OnEvent: func(ev bpf.Event) {
			if ev.Verdict == bpf.EventDrop {
				e.mu.Lock()
				e.drops[ev.Src.Addr()]++
				e.mu.Unlock()
			}
		},
		Started: func(a *agent.Agent) {
			sub = a.Monitor().Subscribe(4096)
			go func() {
				for ev := range sub.C {
					e.mu.Lock()
					e.events = append(e.events, ev)
					e.mu.Unlock()
				}
			}()
		},
	})
}

func (e *env) dropsFrom(a netip.Addr) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.drops[a]
}

// l7Event waits for an L7 event of the agent's hub that satisfies match.
func (e *env) l7Event(t *testing.T, what string, match func(monitor.Event) bool) monitor.Event {
	t.Helper()
	var found monitor.Event
	harness.Eventually(t, what, 5*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.Type == monitor.TypeL7 && ev.L7 != nil && match(ev) {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(e.events))
	})
	return found
}

// addPod adds a pod (a network namespace registered as a Pod object).
func (e *env) addPod(ns, name string, labels map[string]string) *localcluster.Pod {
	e.t.Helper()
	p, err := e.c.AddPod(context.Background(), localcluster.PodSpec{Namespace: ns, Name: name, Labels: labels})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// addService adds a Service on one TCP port in front of the pods that
// selector picks, and returns its name as pods resolve it.
func (e *env) addService(ns, name string, selector map[string]string, port int32) string {
	e.t.Helper()
	_, err := e.c.AddService(context.Background(), localcluster.ServiceSpec{
		Namespace: ns, Name: name, Selector: selector,
		Ports: []corev1.ServicePort{{Port: port, Protocol: corev1.ProtocolTCP}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return name + "." + ns + ".svc." + localcluster.ClusterDomain
}

// curlResult is what curl did, as a user sees it.
type curlResult struct {
	// Exit is curl's exit status (0 ok, 7 connection refused/reset, 28
	// timeout, 52 empty reply, 56 receive failure).
	Exit int
	// Code is the HTTP status (0 without a response); Version the HTTP
	// version of the response ("1.1", "2").
	Code    int
	Version string
	Body    string
	Stderr  string
}

func (r curlResult) String() string {
	if r.Exit != 0 {
		return fmt.Sprintf("curl exit %d (%s)", r.Exit, strings.TrimSpace(r.Stderr))
	}
	return fmt.Sprintf("HTTP/%s %d %q", r.Version, r.Code, r.Body)
}

// curl runs the real curl in pod with args (the URL among them).
func curl(t *testing.T, pod *localcluster.Pod, args ...string) curlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	argv := append([]string{"curl", "-sS", "--connect-timeout", "2", "--max-time", "5",
		"--write-out", "%{stderr}\nportcullis-e2e %{http_code} %{http_version}\n"}, args...)
	cmd := pod.CommandContext(ctx, argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	r := curlResult{Body: out.String()}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running curl: %v", err)
		}
		r.Exit = ee.ExitCode()
	}
	r.Body = out.String()
	stderr := errb.String()
	if i := strings.LastIndex(stderr, "\nportcullis-e2e "); i >= 0 {
		f := strings.Fields(stderr[i+len("\nportcullis-e2e "):])
		if len(f) == 2 {
			r.Code, _ = strconv.Atoi(f[0])
			r.Version = f[1]
		}
		stderr = stderr[:i]
	}
	r.Stderr = stderr
	return r
}

// hostPort is "ip:port" of a pod.
func hostPort(p *localcluster.Pod, port uint16) string {
	return net.JoinHostPort(p.IP.String(), strconv.Itoa(int(port)))
}
