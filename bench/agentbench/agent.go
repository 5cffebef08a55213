package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/internal/localcluster"
)

// agentMode is the hidden subcommand that runs the agent in a child
// process. The child is agent.Run, the code of cmd/portcullis-agent, with
// its flags' defaults, plus a line protocol on stdin/stdout: it prints
// "ready" once the first full sync is done, answers "stats" with one JSON
// line of memStats, and stops when stdin closes or on SIGTERM.
const agentMode = "__agent"

// memStats is the agent's memory, measured after a forced GC.
type memStats struct {
	HeapInuse  uint64 `json:"heapInuse"`  // bytes in in-use heap spans
	HeapAlloc  uint64 `json:"heapAlloc"`  // bytes of live heap objects
	Sys        uint64 `json:"sys"`        // bytes obtained from the OS by the Go runtime
	RSS        uint64 `json:"rss"`        // resident set size (VmRSS)
	Goroutines int    `json:"goroutines"` // goroutines running
}

func runAgentChild(args []string) error {
	fs := flag.NewFlagSet(agentMode, flag.ExitOnError)
	bpffs := fs.String("bpffs", "", "bpf filesystem")
	port := fs.Uint("proxy-port", 0, "proxy port")
	node := fs.String("node", "", "node name")
	_ = fs.Parse(args)
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	// As cmd/portcullis-agent: the kubeconfig from $KUBECONFIG, with
	// controller-runtime's client rate limits.
	rc, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	// Not the signal context's own cancel for stdin: that would restore
	// the signals' default action, and a SIGTERM would then kill the
	// agent before it returns.
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	ctx, cancel := context.WithCancel(sigCtx)
	defer cancel()
	ready := make(chan struct{})
	go func() {
		select {
		case <-ready:
			fmt.Println("ready")
		case <-ctx.Done():
		}
	}()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "stats" {
				b, _ := json.Marshal(readMemStats())
				fmt.Println(string(b))
			}
		}
		cancel() // stdin closed: the parent is gone or done
	}()
	return agent.Run(ctx, agent.Config{
		RESTConfig: rc, NodeName: *node, BPFFS: *bpffs, ProxyPort: uint16(*port),
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Ready: ready,
	})
}

func readMemStats() memStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memStats{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, Sys: ms.Sys, Goroutines: runtime.NumGoroutine()}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				s.RSS = kb * 1024
			}
		}
	}
	return s
}

// agentProc is a running agent child.
type agentProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	log   *os.File
	done  chan error
}

func startAgentProc(ctx context.Context, c *localcluster.Cluster, bpffs string, port uint16, out io.Writer) (*agentProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log, err := os.CreateTemp("", "portcullis-bench-agent-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, agentMode, "-bpffs", bpffs, "-proxy-port", strconv.Itoa(int(port)), "-node", c.NodeName())
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.KubeconfigPath())
	cmd.Stderr = io.MultiWriter(log, out)
	// Die with the parent, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &agentProc{cmd: cmd, log: log, lines: make(chan string, 16), done: make(chan error, 1)}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case l, ok := <-p.lines:
		if ok && l == "ready" {
			logf("agent ready in %v (pid %d, log %s)", time.Since(start).Round(time.Millisecond), cmd.Process.Pid, log.Name())
			return p, nil
		}
		err = fmt.Errorf("agent said %q", l)
	case <-time.After(60 * time.Second):
		err = errors.New("agent not ready after 60s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	return nil, errors.Join(err, p.stop())
}

// stats asks the agent for its memory after a GC.
func (p *agentProc) stats() (memStats, error) {
	var s memStats
	if _, err := io.WriteString(p.stdin, "stats\n"); err != nil {
		return s, err
	}
	select {
	case l, ok := <-p.lines:
		if !ok {
			return s, errors.New("agent exited")
		}
		return s, json.Unmarshal([]byte(l), &s)
	case <-time.After(30 * time.Second):
		return s, errors.New("no stats from the agent after 30s")
	}
}

// stop ends the agent (closing its stdin; SIGKILL after 20 s) and keeps
// its log only if it failed.
func (p *agentProc) stop() error {
	_ = p.stdin.Close()
	var err error
	select {
	case err = <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		err = errors.Join(errors.New("agent did not stop within 20s"), <-p.done)
	}
	_ = p.log.Close()
	if err != nil {
		return fmt.Errorf("agent (log in %s): %w", p.log.Name(), err)
	}
	_ = os.Remove(p.log.Name())
	return nil
}
