// Command agentbench measures the node agent against a real control plane
// and the real kernel datapath: the time from a policy or pod
// change to the pinned BPF map holding the result, pod-to-pod throughput
// with and without the programs, and the agent's memory with many
// policies. It needs root. Run it through the scripts in bench/, which
// take the e2e node lock and set KUBEBUILDER_ASSETS; docs/benchmarks.md
// has the commands and the figures.
//
// Everything it makes is removed on exit, also on failure or Ctrl-C: the
// local cluster (its pods' namespaces and links), the agent process, the
// datapath's links and pins, the bpffs it mounted, and the proxy routing
// it added (none if the rule was already there).
//
//	agentbench latency    [-changes 1000] [-pod-changes 1000] [-pods 4]
//	agentbench throughput [-duration 10s] [-reps 3]
//	agentbench memory     [-namespaces 100] [-per-namespace 100] [-local-pods 50] [-remote-pods 1000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"portcullis.dev/portcullis/internal/localcluster"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode, args := os.Args[1], os.Args[2:]
	if mode == agentMode {
		// The agent child process (see agent.go); not for people.
		if err := runAgentChild(args); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		return
	}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	verbose := fs.Bool("v", false, "log every step of the local cluster and the agent's output")
	var run func(context.Context, *env) error
	switch mode {
	case "latency":
		changes := fs.Int("changes", 1000, "policy changes to time")
		podChanges := fs.Int("pod-changes", 1000, "pod additions (and as many removals) to time")
		pods := fs.Int("pods", 4, "pods besides the server and the client")
		run = func(ctx context.Context, e *env) error { return latency(ctx, e, *changes, *podChanges, *pods) }
	case "throughput":
		duration := fs.Duration("duration", 10*time.Second, "length of one iperf3 run")
		reps := fs.Int("reps", 3, "iperf3 runs per configuration")
		run = func(ctx context.Context, e *env) error { return throughput(ctx, e, *duration, *reps) }
	case "memory":
		namespaces := fs.Int("namespaces", 100, "namespaces holding policies")
		perNS := fs.Int("per-namespace", 100, "TrafficPolicies per namespace")
		localPods := fs.Int("local-pods", 50, "pods on this node (network namespaces)")
		remotePods := fs.Int("remote-pods", 1000, "Pod objects on other nodes (API objects only)")
		workers := fs.Int("workers", 8, "concurrent API writers")
		run = func(ctx context.Context, e *env) error {
			return memory(ctx, e, memoryOpts{*namespaces, *perNS, *localPods, *remotePods, *workers})
		}
	case "remote":
		remotePods := fs.Int("remote-pods", 1000, "Pod objects on other nodes (API objects only)")
		samples := fs.Int("samples", 100, "remote pods created one by one and timed to their ipcache entry")
		workers := fs.Int("workers", 8, "concurrent API writers")
		run = func(ctx context.Context, e *env) error { return remote(ctx, e, *remotePods, *samples, *workers) }
	default:
		usage()
	}
	_ = fs.Parse(args)
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "agentbench needs root (BPF, network namespaces); run it through bench/*.sh")
		os.Exit(2)
	}
	ctx, stop := localcluster.SignalContext(context.Background())
	err := withEnv(ctx, *verbose, run)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: agentbench latency|throughput|memory|remote [flags]  (-h for the flags of one)")
	os.Exit(2)
}

// logf prints a progress line with the time of day.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// errNotYet is what a poll returns while the condition does not hold.
var errNotYet = errors.New("not yet")
