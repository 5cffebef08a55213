package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/internal/localcluster"
)

// AgentBinary builds cmd/portcullis-agent into a directory of t's and
// returns its path: the binary a DaemonSet would run, started on a node by
// StartNodeAgent.
func AgentBinary(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "portcullis-agent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "portcullis.dev/portcullis/cmd/portcullis-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("building the agent: %v: %s", err, out)
	}
	return bin
}

// NodeAgent is the agent binary running on one node of a cluster, with its
// own bpffs, proxy port and API socket.
type NodeAgent struct {
	Node *localcluster.Node
	// BPFFS holds the agent's pins; ProxyPort is its proxy's port.
	BPFFS     string
	ProxyPort uint16
	// ProbePort serves /readyz on the node's loopback.
	ProbePort uint16
	// API is a client of the agent's local API socket.
	API *agentclient.Client

	bin, kubeconfig, log string
	uplinks              []string
	cmd                  *exec.Cmd
	done                 chan error
}

// StartNodeAgent runs the agent binary bin on node n: in the node's
// namespace (`ip netns exec`) with the node's bpffs and kubeconfig, or,
// on the first node, in the root namespace with a bpffs of MountBPFFS and
// the cluster's kubeconfig; its uplinks are the cluster's Uplinks(n). It waits until the agent's API answers; the
// agent is stopped (SIGTERM) when t ends, and its log is shown if t
// failed.
func StartNodeAgent(t testing.TB, c *localcluster.Cluster, n *localcluster.Node, bin string) *NodeAgent {
	t.Helper()
	dir := t.TempDir()
	a := &NodeAgent{Node: n, BPFFS: n.BPFFS, ProxyPort: FreePort(t), ProbePort: FreePort(t), bin: bin, kubeconfig: n.Kubeconfig,
		log: filepath.Join(dir, "agent.log"), uplinks: c.Uplinks(n)}
	if n.NetNS == "" {
		a.BPFFS, a.kubeconfig = MountBPFFS(t), c.KubeconfigPath()
	}
	a.API = agentclient.NewClient(filepath.Join(dir, "agent.sock"))
	a.Start(t)
	t.Cleanup(func() {
		a.Stop(t)
		if t.Failed() {
			if b, err := os.ReadFile(a.log); err == nil {
				t.Logf("agent on node %s:\n%s", n.Name, tail(b, 60))
			}
		}
	})
	return a
}

// Start (re)starts the agent process and waits until it is ready: its
// /readyz (the first full sync after start is written) answers 200, from
// inside the node, and its API answers.
func (a *NodeAgent) Start(t testing.TB) {
	t.Helper()
	log, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{a.bin,
		"--node-name=" + a.Node.Name, "--kubeconfig=" + a.kubeconfig, "--bpffs=" + a.BPFFS,
		"--proxy-port=" + strconv.Itoa(int(a.ProxyPort)), "--api-socket=" + a.API.Socket(),
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(int(a.ProbePort))}
	if len(a.uplinks) > 0 {
		argv = append(argv, "--uplink="+strings.Join(a.uplinks, ","))
	}
	a.cmd = a.Node.Command(argv...)
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		_ = log.Close()
		t.Fatalf("starting the agent on node %s: %v", a.Node.Name, err)
	}
	a.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan<- error) { done <- cmd.Wait(); _ = log.Close() }(a.cmd, a.done)
	Eventually(t, "the agent on node "+a.Node.Name+" serving its API", 60*time.Second, func() error {
		select {
		case err := <-a.done:
			a.done <- err
			b, _ := os.ReadFile(a.log)
			t.Fatalf("the agent on node %s exited: %v\n%s", a.Node.Name, err, tail(b, 40))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		out, err := a.Node.CommandContext(ctx, "curl", "-sSf", "-o", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/readyz", a.ProbePort)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("readyz: %v: %s", err, bytes.TrimSpace(out))
		}
		_, err = a.API.Endpoints(ctx)
		return err
	})
}

// Stop sends SIGTERM to the agent (through `ip netns exec`, which passes
// it on by exec'ing the agent) and waits for it; its pins and programs
// stay, as when a DaemonSet's pod goes.
func (a *NodeAgent) Stop(t testing.TB) {
	t.Helper()
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Errorf("agent on node %s: %v", a.Node.Name, err)
		}
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Errorf("agent on node %s did not stop within 20 s of SIGTERM", a.Node.Name)
	}
	a.cmd = nil
}

// Follow follows the agent's monitor stream until t ends (or the agent
// stops) and returns a function that waits up to timeout for an event
// that match accepts, among those seen since Follow was called.
func (a *NodeAgent) Follow(t testing.TB) (wait func(match func(agentclient.Event) bool, timeout time.Duration) (agentclient.Event, bool)) {
	t.Helper()
	var mu sync.Mutex
	var seen []agentclient.Event
	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		var once sync.Once
		_ = a.API.Monitor(ctx, func(l agentclient.MonitorLine) error {
			once.Do(func() { close(subscribed) })
			if l.Type != agentclient.TypeLost {
				mu.Lock()
				seen = append(seen, l.Event)
				mu.Unlock()
			}
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-ended })
	// The stream is live once the response's headers are in; give the
	// request a moment to reach the agent before traffic starts.
	select {
	case <-subscribed:
	case <-time.After(500 * time.Millisecond):
	}
	return func(match func(agentclient.Event) bool, timeout time.Duration) (agentclient.Event, bool) {
		deadline := time.Now().Add(timeout)
		for {
			mu.Lock()
			for _, e := range seen {
				if match(e) {
					mu.Unlock()
					return e, true
				}
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				return agentclient.Event{}, false
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(string(bytes.Join(lines, []byte("\n"))))
}

// String names the agent's node, for messages.
func (a *NodeAgent) String() string { return fmt.Sprintf("agent on %s", a.Node.Name) }
