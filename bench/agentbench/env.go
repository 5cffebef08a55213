package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/internal/localcluster"
)

// env is one run: the cluster, the bpffs, the agent child.
type env struct {
	c       *localcluster.Cluster
	k8s     client.Client
	bpffs   string
	port    uint16
	verbose bool
	agent   *agentProc // nil while no agent runs
	maps    *pinnedMaps
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// withEnv starts the local cluster, the proxy routing (if missing) and a
// bpffs, runs f, and removes everything again in reverse order, also when
// f fails.
func withEnv(ctx context.Context, verbose bool, f func(context.Context, *env) error) (err error) {
	var undo []func() error
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			err = errors.Join(err, undo[i]())
		}
	}()
	opts := localcluster.Options{}
	if verbose {
		opts.Logf = logf
	}
	start := time.Now()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("starting the local cluster: %w", err)
	}
	undo = append(undo, c.Stop)
	logf("local cluster up in %v", time.Since(start).Round(time.Millisecond))

	// The agent adds the proxy's ip rule only if it is missing and never
	// removes it; adding it here (if missing) lets the teardown remove
	// exactly what this run added.
	before, err := bpf.CountProxyRules()
	if err != nil {
		return err
	}
	teardown, err := bpf.SetupProxyRouting()
	if err != nil {
		return fmt.Errorf("proxy routing: %w", err)
	}
	undo = append(undo, func() error {
		err := teardown()
		if n, cerr := bpf.CountProxyRules(); cerr == nil && n != before {
			err = errors.Join(err, fmt.Errorf("%d proxy ip rules after the run, %d before", n, before))
		}
		return err
	})

	dir, err := os.MkdirTemp("", "portcullis-bench-bpffs-")
	if err != nil {
		return err
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		_ = os.Remove(dir)
		return fmt.Errorf("mounting bpffs on %s: %w", dir, err)
	}
	// The proxy port lies below the ephemeral range (32768 and up), so that
	// no client connection holds it when the agent binds it.
	e := &env{c: c, bpffs: dir, port: uint16(20000 + rand.IntN(12000)), verbose: verbose}
	undo = append(undo, func() error {
		err := e.stopAgent()
		err = errors.Join(err, e.removeDatapath())
		if uerr := unix.Unmount(dir, 0); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmounting %s: %w", dir, uerr))
		}
		_ = os.Remove(dir)
		return err
	})

	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0 // no client-side throttling: the benchmark paces itself
	if e.k8s, err = client.New(cfg, client.Options{Scheme: newScheme()}); err != nil {
		return err
	}
	return f(ctx, e)
}

// removeDatapath detaches every program and removes the pins, as if the
// node had never run the agent. The agent must not be running.
func (e *env) removeDatapath() error {
	if e.maps != nil {
		e.maps.close()
		e.maps = nil
	}
	pin := filepath.Join(e.bpffs, "portcullis")
	if _, err := os.Stat(pin); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	dp, err := bpf.Load(bpf.Options{PinPath: pin})
	if err != nil {
		return fmt.Errorf("opening the datapath to remove it: %w", err)
	}
	if err := dp.Remove(); err != nil {
		return fmt.Errorf("removing the datapath: %w", err)
	}
	return nil
}

// startAgent runs the agent in a child process (so that its memory is its
// own) and waits until it is ready; then it opens the pinned maps.
func (e *env) startAgent(ctx context.Context) error {
	var out io.Writer = io.Discard
	if e.verbose {
		out = os.Stderr
	}
	a, err := startAgentProc(ctx, e.c, e.bpffs, e.port, out)
	if err != nil {
		return err
	}
	e.agent = a
	if e.maps == nil {
		if e.maps, err = openPinnedMaps(filepath.Join(e.bpffs, "portcullis")); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) stopAgent() error {
	if e.agent == nil {
		return nil
	}
	err := e.agent.stop()
	e.agent = nil
	return err
}

// poll calls f every interval until it returns nil, an error other than
// errNotYet, or timeout passes. It returns when f first succeeded.
func poll(ctx context.Context, interval, timeout time.Duration, f func() error) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		now := time.Now()
		if err == nil {
			return now, nil
		}
		if !errors.Is(err, errNotYet) {
			return now, err
		}
		if now.After(deadline) {
			return now, fmt.Errorf("timed out after %v", timeout)
		}
		if ctx.Err() != nil {
			return now, ctx.Err()
		}
		time.Sleep(interval)
	}
}
