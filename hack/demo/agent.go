package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/controllers/agent"
)

// nodeLockPath is the lock the root e2e packages take around node-wide
// state (the proxy's ip rule, bpffs mounts); the demo takes it too, so that
// it never runs its agent at the same time as one of them.
const nodeLockPath = "/run/portcullis-e2e.lock"

// agentRun is the in-process agent and what it needs on the node, each
// with its undo, run in reverse order by stop.
type agentRun struct {
	agent  *agent.Agent
	socket string
	// lockWait is how long the demo waited for the node lock.
	lockWait time.Duration
	logPath  string
	undo     []func() error
}

// startAgent runs agent.Run (the code of cmd/portcullis-agent) in-process,
// as e2e/datapath does: its pins on a bpffs mounted in a temporary
// directory, its own proxy port, the API socket in the cluster's temporary
// directory, its log in agent.log there.
func (d *demo) startAgent(ctx context.Context) error {
	r := &agentRun{}
	d.agentRun = r
	lock, err := os.OpenFile(nodeLockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("opening the node lock %s: %w", nodeLockPath, err)
	}
	// Polled, so that Ctrl-C while waiting still reaches the teardown.
	for t0, told := time.Now(), false; ; {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			r.lockWait = time.Since(t0)
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = lock.Close()
			return fmt.Errorf("locking %s: %w", nodeLockPath, err)
		}
		if !told {
			fmt.Fprintf(d.out, "  waiting for the node lock %s (an e2e test is using the datapath)\n", nodeLockPath)
			told = true
		}
		select {
		case <-ctx.Done():
			_ = lock.Close()
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.undo = append(r.undo, lock.Close) // closing releases the lock

	r.logPath = filepath.Join(d.cluster.TempDir(), "agent.log")
	logf, err := os.Create(r.logPath)
	if err != nil {
		return fmt.Errorf("creating the agent log: %w", err)
	}
	r.undo = append(r.undo, logf.Close)
	ctrl.SetLogger(zap.New(zap.WriteTo(logf)))

	// The demo owns the proxy routing (the agent finds it and adds
	// nothing), so that teardown removes exactly what was added.
	teardownRouting, err := bpf.SetupProxyRouting()
	if err != nil {
		return fmt.Errorf("proxy routing: %w", err)
	}
	r.undo = append(r.undo, teardownRouting)

	bpffs, err := os.MkdirTemp("", "portcullis-demo-bpffs-")
	if err != nil {
		return err
	}
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		_ = os.Remove(bpffs)
		return fmt.Errorf("mounting a bpffs on %s: %w", bpffs, err)
	}
	pins := filepath.Join(bpffs, "portcullis")
	r.undo = append(r.undo, func() error {
		// Detach the programs and unpin the maps the agent left (it keeps
		// them on exit, by design), then unmount.
		var errs []error
		if dp, err := bpf.Load(bpf.Options{PinPath: pins}); err == nil {
			errs = append(errs, dp.Remove())
		}
		if err := unix.Unmount(bpffs, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", bpffs, err))
		}
		errs = append(errs, os.Remove(bpffs))
		return errors.Join(errs...)
	})

	r.socket = filepath.Join(d.cluster.TempDir(), "agent.sock")
	actx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	started := make(chan *agent.Agent, 1)
	cfg := agent.Config{
		RESTConfig: d.cluster.RESTConfig(), NodeName: d.cluster.NodeName(),
		// Below the ephemeral range (32768-60999 by default), so that no
		// client connection holds the port when the proxy binds it.
		BPFFS: bpffs, ProxyPort: uint16(20000 + rand.IntN(12000)),
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		APISocket: r.socket,
		Ready:     ready,
		Started:   func(a *agent.Agent) { started <- a },
	}
	go func() { done <- agent.Run(actx, cfg) }()
	r.undo = append(r.undo, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("the agent did not stop within 15s")
		}
	})
	fmt.Fprintf(d.out, "  agent.Run in-process: node %s, bpffs %s, proxy port %d\n  API socket %s, log %s\n",
		cfg.NodeName, bpffs, cfg.ProxyPort, r.socket, r.logPath)
	t0 := time.Now()
	select {
	case <-ready:
	case err := <-done:
		done <- err // for the undo
		return fmt.Errorf("the agent exited: %v (log %s)", err, r.logPath)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the agent was not ready after 30s (log %s)", r.logPath)
	}
	r.agent = <-started
	fmt.Fprintf(d.out, "  first full sync after %v: every pod's policy is in the kernel\n", time.Since(t0).Round(10*time.Millisecond))
	// The reconcilers re-apply what the start-up pass fed (regenerating for
	// a moment): show the table once it has settled.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		settled := true
		for _, e := range r.agent.Endpoints() {
			settled = settled && e.State == agent.StateReady
		}
		if settled {
			break
		}
	}
	return nil
}

// stop undoes startAgent in reverse order and reports what failed.
func (r *agentRun) stop() error {
	var errs []error
	for i := len(r.undo) - 1; i >= 0; i-- {
		if err := r.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	r.undo = nil
	return errors.Join(errs...)
}

// procAttr makes a child die with the demo and keeps it out of the
// terminal's Ctrl-C (the demo stops it in order).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
