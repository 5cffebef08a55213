package datapath

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/localcluster"
)

// buildCLI builds cmd/portcullis into the test's temporary directory: the
// test runs the command users run, against the agent's socket.
func buildCLI(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH: cannot build the CLI")
	}
	bin := filepath.Join(t.TempDir(), "portcullis")
	cmd := exec.Command(goBin, "build", "-o", bin, "portcullis.dev/portcullis/cmd/portcullis")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out)
	}
	return bin
}

// monitorFollower runs `portcullis monitor -o json` and collects its lines.
type monitorFollower struct {
	mu    sync.Mutex
	lines []agentclient.MonitorLine
	bad   []string
}

func (m *monitorFollower) find(match func(agentclient.MonitorLine) bool) (agentclient.MonitorLine, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.lines {
		if match(l) {
			return l, true
		}
	}
	return agentclient.MonitorLine{}, false
}

func startMonitor(t *testing.T, cli, socket string) *monitorFollower {
	t.Helper()
	cmd := exec.Command(cli, "monitor", "-o", "json", "--socket", socket)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &monitorFollower{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l agentclient.MonitorLine
			m.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				m.bad = append(m.bad, sc.Text())
			} else {
				m.lines = append(m.lines, l)
			}
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-done
		if err := cmd.Wait(); err != nil {
			t.Errorf("portcullis monitor after Ctrl-C: %v (want status 0)", err)
		}
		if len(m.bad) > 0 {
			t.Errorf("monitor lines that are not JSON: %q", m.bad)
		}
	})
	return m
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestVisibility: the CLI against a real agent's API socket. `endpoint
// list` shows the pods ready with their enforcement; `monitor` shows the
// tiefighter's allowed flow and the xwing's drop with both sides' labels
// and the policy; `policy trace --live` agrees.
func TestVisibility(t *testing.T) {
	ctx := context.Background()
	cli := buildCLI(t)
	e := newEnv(t)
	e.apiSocket = filepath.Join(t.TempDir(), "run", "agent.sock")
	add := func(name string, labels map[string]string) *localcluster.Pod {
		p, err := e.c.AddPod(ctx, localcluster.PodSpec{Namespace: "empire", Name: name, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	deathstar := add("deathstar", map[string]string{"org": "empire", "class": "deathstar"})
	tiefighter := add("tiefighter", map[string]string{"org": "empire", "class": "tiefighter"})
	xwing := add("xwing", map[string]string{"org": "alliance", "class": "xwing"})
	ds := netip.AddrPortFrom(deathstar.IP, 80).String()
	startServer(t, deathstar, "0.0.0.0:80")
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "empire", Name: "rule1"}, Spec: ptr.To(swPolicy("empire"))}
	if err := e.k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	e.startAgent()
	if fi, err := os.Stat(e.apiSocket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("API socket: %v, %v; want a 0600 socket", fi, err)
	}

	t.Run("endpoint list", func(t *testing.T) {
		harness.Eventually(t, "endpoints ready", 10*time.Second, func() error {
			var eps []agentclient.Endpoint
			if err := json.Unmarshal([]byte(run(t, cli, "endpoint", "list", "-o", "json", "--socket", e.apiSocket)), &eps); err != nil {
				return err
			}
			if len(eps) != 3 {
				return fmt.Errorf("%d endpoints, want 3: %+v", len(eps), eps)
			}
			for _, ep := range eps {
				wantIngress := ep.Pod == "deathstar"
				if ep.State != "ready" || ep.IngressEnforced != wantIngress || ep.EgressEnforced || ep.ID == 0 || ep.Identity == 0 {
					return fmt.Errorf("endpoint %+v: want ready, ingress enforced only for the deathstar", ep)
				}
			}
			return nil
		})
		text := run(t, cli, "endpoint", "list", "--socket", e.apiSocket)
		for _, want := range []string{"empire/deathstar", deathstar.IP.String(), "ready", "ingress"} {
			if !strings.Contains(text, want) {
				t.Errorf("endpoint list lacks %q:\n%s", want, text)
			}
		}
		t.Logf("portcullis endpoint list:\n%s", text)
	})

	t.Run("monitor", func(t *testing.T) {
		mon := startMonitor(t, cli, e.apiSocket)
		harness.Eventually(t, "monitor subscribed", 5*time.Second, func() error {
			if e.agent.Load().Monitor().Subscribers() == 0 {
				return fmt.Errorf("no subscriber")
			}
			return nil
		})
		expectReach(t, tiefighter, ds)
		expectBlocked(t, xwing, ds)
		has := func(ls []string, want ...string) bool {
			for _, w := range want {
				if !slices.Contains(ls, w) {
					return false
				}
			}
			return true
		}
		deathstarSide := func(l agentclient.MonitorLine) bool {
			return l.Destination.Pod == "deathstar" && l.Destination.Namespace == "empire" && l.Destination.Port == 80 &&
				l.Destination.IP == deathstar.IP.String() && has(l.Destination.Labels, "org=empire", "class=deathstar")
		}
		for _, c := range []struct {
			what, verdict string
			src           *localcluster.Pod
			labels        []string
			policy        string
		}{
			{"the tiefighter's allowed flow", "FORWARDED", tiefighter, []string{"org=empire", "class=tiefighter"}, "TrafficPolicy empire/rule1 spec.ingress[0]"},
			{"the xwing's drop", "DROPPED", xwing, []string{"org=alliance", "class=xwing"}, "TrafficPolicy empire/rule1 (default deny)"},
		} {
			harness.Eventually(t, c.what, 5*time.Second, func() error {
				l, ok := mon.find(func(l agentclient.MonitorLine) bool {
					return l.Verdict == c.verdict && l.Source.Pod == c.src.Name && deathstarSide(l)
				})
				if !ok {
					return fmt.Errorf("no %s event from %s to the deathstar:80", c.verdict, c.src.Name)
				}
				if l.Type != "policy-verdict" || l.Direction != "ingress" || l.Protocol != "TCP" || l.Reason != "policy" ||
					l.Source.IP != c.src.IP.String() || !has(l.Source.Labels, c.labels...) || !strings.HasPrefix(l.Policy, c.policy) ||
					l.Node != e.c.NodeName() || time.Since(l.Time) > time.Minute || l.Source.Identity == 0 {
					return fmt.Errorf("event %+v: want an ingress TCP %s by %q with labels %v", l, c.verdict, c.policy, c.labels)
				}
				return nil
			})
		}
	})

	t.Run("trace --live", func(t *testing.T) {
		for _, c := range []struct{ src, want, pod string }{
			{"org=empire,class=tiefighter", "ALLOWED", "empire/tiefighter"},
			{"org=alliance,class=xwing", "DENIED", "empire/xwing"},
		} {
			out := run(t, cli, "policy", "trace", "--live", "--socket", e.apiSocket, "--src", c.src, "--dst", "class=deathstar", "--dport", "80")
			if !strings.HasSuffix(out, "Final verdict: "+c.want+"\n") || !strings.Contains(out, "pod "+c.pod) || !strings.Contains(out, "TrafficPolicy empire/rule1") {
				t.Errorf("trace --live from %s: want %s, naming %s and the policy:\n%s", c.src, c.want, c.pod, out)
			}
		}
		// The running engine is not changed by a trace: no pod named
		// trace-src or trace-dst appears.
		for _, ep := range e.agent.Load().Endpoints() {
			if strings.HasPrefix(ep.Name, "trace-") {
				t.Errorf("trace left endpoint %+v", ep)
			}
		}
	})

	t.Run("socket removed with the agent", func(t *testing.T) {
		e.stopAgt()
		if _, err := os.Stat(e.apiSocket); !os.IsNotExist(err) {
			t.Errorf("API socket after the agent stopped: %v", err)
		}
		out, err := exec.Command(cli, "endpoint", "list", "--socket", e.apiSocket).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "agent is not running") || !strings.Contains(string(out), e.apiSocket) {
			t.Errorf("endpoint list without the agent: %v\n%s", err, out)
		}
	})
}
