package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"portcullis.dev/portcullis/internal/workloads"
)

// scenario is a part of the demo with real traffic through the kernel
// datapath while `portcullis monitor` follows the agent's verdicts.
type scenario struct {
	Title string
	// Apply are example directories applied (kubectl apply --server-side)
	// before the steps; Restore after them.
	Apply, Restore []string
	// Servers are started in their pods for the steps and stopped after.
	Servers []scenarioServer
	Steps   []trafficStep
	// Monitor are the verdicts `portcullis monitor` must show.
	Monitor []monitorExpect
	// Traces are `portcullis policy trace --live` runs and their verdicts.
	Traces []liveTrace
}

// liveTrace is a trace against the agent: pods by labels, the port, and
// the expected final verdict.
type liveTrace struct {
	Src, Dst, Port, Want string
}

// scenarioServer is a internal/workloads server run in a pod.
type scenarioServer struct {
	Pod, Role, Addr string
}

// trafficStep is one request: curl in the From pod against the To
// Service by name, and the outcome the policies should give.
type trafficStep struct {
	// From is a pod, To a Service, both in namespace "default".
	From, To     string
	Port         int
	Method, Path string
	// Want is what the client should get, in the words of
	// curlResult.String ("dropped (curl: timeout)", "200 Ship landed").
	Want string
	// Why says which rule gives that outcome.
	Why string
}

// monitorExpect is a line `portcullis monitor` must show: a verdict for a
// flow from a pod in namespace "default", with these texts (labels, the
// policy) on the same line.
type monitorExpect struct {
	Verdict, From string
	Has           []string
}

// starWarsL3L4 is the first part of Cilium's Star Wars demo: rule1 as an
// L3/L4 policy (examples/starwars-l3l4) lets the empire land and drops the
// alliance in the kernel; examples/starwars (its L7 version) is applied
// again after.
var starWarsL3L4 = scenario{
	Title:   "Star Wars L3/L4 (examples/starwars-l3l4)",
	Apply:   []string{"examples/starwars-l3l4"},
	Restore: []string{"examples/starwars"},
	Servers: []scenarioServer{{Pod: "deathstar", Role: workloads.RoleDeathstar, Addr: "0.0.0.0:80"}},
	Steps: []trafficStep{
		{From: "tiefighter", To: "deathstar", Port: 80, Method: "POST", Path: "/v1/request-landing", Want: "200 Ship landed",
			Why: "rule1 lets org=empire reach the deathstar on 80/TCP"},
		{From: "xwing", To: "deathstar", Port: 80, Method: "POST", Path: "/v1/request-landing", Want: "dropped (curl: timeout)",
			Why: "the xwing is org=alliance: the deathstar's ingress is default deny"},
	},
	Monitor: []monitorExpect{
		{Verdict: "FORWARDED", From: "tiefighter", Has: []string{"class=tiefighter", "org=empire", "class=deathstar", "TrafficPolicy default/rule1"}},
		{Verdict: "DROPPED", From: "xwing", Has: []string{"class=xwing", "org=alliance", "class=deathstar", "TrafficPolicy default/rule1"}},
	},
	Traces: []liveTrace{
		{Src: "org=empire,class=tiefighter", Dst: "org=empire,class=deathstar", Port: "80", Want: "ALLOWED"},
		{Src: "org=alliance,class=xwing", Dst: "org=empire,class=deathstar", Port: "80", Want: "DENIED"},
	},
}

// runScenario applies the scenario's policies, starts its servers and
// `portcullis monitor`, drives the steps (each retried for a few seconds
// until it gives the expected outcome: a policy reaches the kernel a sync
// after the apiserver has it), prints the monitor's output, and fails if
// an outcome or a monitor line is missing.
func (d *demo) runScenario(ctx context.Context, kubectl string, sc scenario) error {
	apply := func(dirs []string) error {
		if len(dirs) == 0 {
			return nil
		}
		args := []string{"apply", "--server-side", "--field-manager=portcullis-demo"}
		for _, dir := range dirs {
			args = append(args, "-f", dir)
		}
		return d.kubectl(ctx, kubectl, args...)
	}
	if err := apply(sc.Apply); err != nil {
		return err
	}
	var servers []*workloads.Process
	defer func() {
		for _, s := range servers {
			_ = s.Stop()
		}
	}()
	for _, s := range sc.Servers {
		pod := d.cluster.Pod("default", s.Pod)
		if pod == nil {
			return fmt.Errorf("no pod default/%s", s.Pod)
		}
		p, err := d.startWorkload(pod, s.Role, s.Addr)
		if err != nil {
			return err
		}
		servers = append(servers, p)
		fmt.Fprintf(d.out, "  %s server in default/%s on %s\n", s.Role, s.Pod, s.Addr)
	}
	mon, err := d.startMonitor(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "$ portcullis monitor --socket %s   (in the background)\n", d.agentRun.socket)
	failed := 0
	for _, st := range sc.Steps {
		from := d.cluster.Pod("default", st.From)
		if from == nil {
			return fmt.Errorf("step %s -> %s: no such pod", st.From, st.To)
		}
		url := "http://" + net.JoinHostPort(serviceName(st.To), fmt.Sprint(st.Port)) + st.Path
		var got string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			got = curlIn(ctx, from, "-X", st.Method, url).String()
			if got == st.Want || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		mark := "as expected"
		if got != st.Want {
			mark = "<-- UNEXPECTED, want " + st.Want
			failed++
		}
		fmt.Fprintf(d.out, "  %-10s curl -X %s %s:%d%s -> %s  (%s)\n    %s\n", st.From, st.Method, st.To, st.Port, st.Path, got, mark, st.Why)
	}
	var wants []func(string) bool
	for _, m := range sc.Monitor {
		wants = append(wants, verdictLine(m))
	}
	seen := mon.waitFor(3*time.Second, wants...)
	fmt.Fprintf(d.out, "\n  portcullis monitor showed:\n%s\n", indent(mon.stop(), "  "))
	if failed > 0 {
		return fmt.Errorf("%d traffic step(s) had an unexpected outcome", failed)
	}
	if !seen {
		return errors.New("portcullis monitor did not show every expected verdict with its labels and policy")
	}
	fmt.Fprintln(d.out)
	for _, tr := range sc.Traces {
		out, err := d.runCLI(ctx, "policy", "trace", "--live", "--src", tr.Src, "--dst", tr.Dst, "--dport", tr.Port)
		if err != nil {
			d.out.Write(out)
			return err
		}
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		last := lines[len(lines)-1]
		fmt.Fprintf(d.out, "  -> %s\n", last)
		if last != "Final verdict: "+tr.Want {
			return fmt.Errorf("trace --live from %s: %s, want %s", tr.Src, last, tr.Want)
		}
	}
	return apply(sc.Restore)
}

// follower is `portcullis monitor` running against the agent's socket.
type follower struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (f *follower) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}

func (f *follower) text() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.String()
}

// startMonitor starts `portcullis monitor` and waits until the agent has
// it as a follower.
func (d *demo) startMonitor(ctx context.Context, args ...string) (*follower, error) {
	f := &follower{done: make(chan struct{})}
	f.cmd = exec.Command(d.portcullis, append([]string{"monitor", "--socket", d.agentRun.socket}, args...)...)
	f.cmd.Stdout, f.cmd.Stderr = f, f
	f.cmd.SysProcAttr = procAttr()
	hub := d.agentRun.agent.Monitor()
	before := hub.Subscribers()
	if err := f.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting portcullis monitor: %w", err)
	}
	d.children = append(d.children, f.cmd)
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	deadline := time.Now().Add(5 * time.Second)
	for hub.Subscribers() <= before {
		select {
		case <-f.done:
			return nil, fmt.Errorf("portcullis monitor exited: %s", f.text())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("portcullis monitor did not connect to the agent within 5s")
		}
	}
	return f, nil
}

// stop interrupts the monitor as Ctrl-C would and returns its output.
func (f *follower) stop() string {
	_ = f.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
	return f.text()
}

// waitFor waits up to timeout until every want holds for the output.
func (f *follower) waitFor(timeout time.Duration, want ...func(string) bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		text, ok := f.text(), true
		for _, w := range want {
			ok = ok && w(text)
		}
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// verdictLine reports whether a monitor text line shows m.
func verdictLine(m monitorExpect) func(string) bool {
	return func(text string) bool {
		for _, l := range strings.Split(text, "\n") {
			if !strings.Contains(l, " "+m.Verdict+" ") || !strings.Contains(l, "default/"+m.From+" (") {
				continue
			}
			ok := true
			for _, h := range m.Has {
				ok = ok && strings.Contains(l, h)
			}
			if ok {
				return true
			}
		}
		return false
	}
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return prefix + "(nothing)"
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
