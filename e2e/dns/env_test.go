package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/dnstest"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
	"portcullis.dev/portcullis/monitor"
)

// env is one run: a local cluster with CoreDNS as kube-dns, the
// operator's status reconcilers and the agent in-process on a bpffs of
// its own, and the events of the agent's hub.
type env struct {
	t     *testing.T
	c     *localcluster.Cluster
	k8s   client.Client
	bpffs string
	port  uint16

	mu     sync.Mutex
	events []monitor.Event
	// stateDir is the agents' state directory, the test's own, and
	// apiSocket their API socket.
	stateDir, apiSocket string
	// drops counts the datapath's drops by destination.
	drops map[netip.AddrPort]int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	for _, bin := range []string{"dig", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: make deps installs it", bin)
		}
	}
	c, k8s := harness.Cluster(t)
	harness.StartOperator(t, c)
	if _, err := c.StartDNS(context.Background()); err != nil {
		t.Fatalf("starting cluster DNS: %v", err)
	}
	return &env{t: t, c: c, k8s: k8s, bpffs: harness.MountBPFFS(t), port: harness.FreePort(t), stateDir: t.TempDir(), apiSocket: filepath.Join(t.TempDir(), "agent.sock"), drops: map[netip.AddrPort]int{}}
}

// startAgent runs agent.Run in-process with cfg's DNS settings until the
// returned stop is called or the test ends, recording its hub's events.
func (e *env) startAgent(cfg agent.Config) (stop func()) {
	t := e.t
	t.Helper()
	cfg.RESTConfig, cfg.NodeName = e.c.RESTConfig(), e.c.NodeName()
	if cfg.StateDir == "" {
		cfg.StateDir = e.stateDir
	}
	cfg.APISocket = e.apiSocket
	cfg.BPFFS, cfg.ProxyPort = e.bpffs, e.port
	cfg.MetricsBindAddress, cfg.HealthProbeBindAddress = "0", "0"
	cfg.LeaseDuration, cfg.RenewInterval = 10*time.Second, time.Second
	var sub *monitor.Subscription
	cfg.OnEvent = func(ev bpf.Event) {
		if ev.Verdict == bpf.EventDrop {
			e.mu.Lock()
			e.drops[ev.Dst]++
			e.mu.Unlock()
		}
	}
	cfg.Started = func(a *agent.Agent) {
		sub = a.Monitor().Subscribe(4096)
		go func() {
			for ev := range sub.C {
				e.mu.Lock()
				e.events = append(e.events, ev)
				e.mu.Unlock()
			}
		}()
	}
	stopAgent := harness.RunAgent(t, cfg)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stopAgent()
			if sub != nil {
				sub.Close()
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// dnsEvent waits for a DNS event of the agent's hub for name (with its
// trailing dot), query type and verdict.
func (e *env) dnsEvent(t *testing.T, name, qtype, verdict string) monitor.Event {
	t.Helper()
	var found monitor.Event
	harness.Eventually(t, "DNS event "+verdict+" "+name+" "+qtype, 5*time.Second, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range e.events {
			if ev.L7 != nil && ev.L7.DNS != nil && ev.L7.DNS.Query == name && ev.L7.DNS.Type == qtype && ev.Verdict == verdict {
				found = ev
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(e.events))
	})
	return found
}

// dropsTo counts the datapath's drops of packets to dst so far.
func (e *env) dropsTo(dst netip.AddrPort) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.drops[dst]
}

func (e *env) addPod(ns, name string, labels map[string]string) *localcluster.Pod {
	e.t.Helper()
	p, err := e.c.AddPod(context.Background(), localcluster.PodSpec{Namespace: ns, Name: name, Labels: labels})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// addHTTPHost adds an "external" host named name (resolvable through
// CoreDNS) serving HTTP on port 443.
func (e *env) addHTTPHost(name string) *localcluster.Pod {
	t := e.t
	t.Helper()
	h, err := e.c.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := workloads.Start(h.Command(exe), workloads.RoleDeathstar, "0.0.0.0:443")
	if err != nil {
		t.Fatalf("HTTP server on %s: %v", name, err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return h
}

// dig runs the real dig in pod against its resolv.conf's server (kube-dns'
// ClusterIP) unless args name one.
func dig(t *testing.T, pod *localcluster.Pod, args ...string) dnstest.Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := pod.CommandContext(ctx, dnstest.DigArgv(args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Fatalf("dig %v in %s: %v", args, pod.Name, err)
	}
	as := dnstest.ParseDig(string(out))
	if len(as) == 0 {
		return dnstest.Answer{Output: string(out)}
	}
	return as[0]
}

// curl fetches url in pod (curl resolving the name itself through the
// pod's resolv.conf) and returns the HTTP status, 0 when it got none, and
// curl's error output.
func curl(t *testing.T, pod *localcluster.Pod, url string) (int, string) {
	t.Helper()
	return curlTimeout(t, pod, url, 2)
}

// curlTimeout is curl with a connect timeout of seconds.
func curlTimeout(t *testing.T, pod *localcluster.Pod, url string, seconds int) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := pod.CommandContext(ctx, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", fmt.Sprint(seconds), "--max-time", fmt.Sprint(2*seconds), "--write-out", "%{http_code}", url)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running curl: %v", err)
		}
	}
	var code int
	_, _ = fmt.Sscan(strings.TrimSpace(out.String()), &code)
	return code, strings.TrimSpace(errb.String())
}
