// Command podbench sets up the proxy benchmarks' pod targets and runs a
// measuring command inside them: a local cluster (internal/localcluster: real
// kube-apiserver, pods as network namespaces), the agent in-process through
// agent.Run (the code path of cmd/portcullis-agent, with its proxy) on a
// bpffs of its own, an origin pod running bench/proxy/origin and a client
// pod. It runs the command twice:
//
//	CMD... pod-l4   the policy without its L7 rules: pod to pod through the BPF datapath, no proxy
//	CMD... pod-l7   the policy as written: the datapath redirects to the agent's proxy
//
// with BENCH_CLIENT_NETNS (the client pod's network namespace),
// BENCH_ORIGIN_IP and BENCH_PROXY_PID (this process, which holds the proxy)
// in the environment, and removes everything afterwards, also on failure
// or Ctrl-C. The agent (and so the proxy) gets -proxy-cpu and GOMAXPROCS=1;
// the origin, the control plane and the command get -load-cpu.
//
// Root only. It takes the e2e node lock (the proxy's ip rule is node-wide).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/internal/localcluster"
)

// nodeLockPath is e2e/internal/nodelock's lock file (an internal package,
// so not importable from here): the e2e packages and this benchmark all
// add and remove the proxy's ip rule, so only one may run at a time.
const nodeLockPath = "/run/portcullis-e2e.lock"

func main() {
	policyFile := flag.String("policy", "bench/proxy/policy.yaml", "the TrafficPolicy (one object) to apply")
	origin := flag.String("origin", "", "the origin binary (bench/proxy/origin)")
	proxyCPU := flag.Int("proxy-cpu", 0, "CPU of the agent and its proxy")
	loadCPU := flag.Int("load-cpu", 1, "CPU of the origin, the control plane and the command")
	lockWait := flag.Duration("lock-timeout", 10*time.Minute, "how long to wait for the e2e node lock")
	maxConns := flag.Int("proxy-max-connections", 0, "the agent's --proxy-max-connections (0: the default)")
	flag.Parse()
	if *origin == "" || flag.NArg() == 0 {
		log.Fatal("usage: podbench -origin BIN [-policy FILE] -- CMD [ARGS...]")
	}
	if err := run(*policyFile, *origin, *proxyCPU, *loadCPU, *lockWait, *maxConns, flag.Args()); err != nil {
		log.Fatalf("podbench: %v", err)
	}
}

func run(policyFile, origin string, proxyCPU, loadCPU int, lockWait time.Duration, maxConns int, cmd []string) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (BPF, network namespaces)")
	}
	pol, err := readPolicy(policyFile)
	if err != nil {
		return err
	}
	ctx, stop := localcluster.SignalContext(context.Background())
	defer stop()
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))

	lock, err := os.OpenFile(nodeLockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	log.Printf("waiting for the node lock %s", nodeLockPath)
	for deadline := time.Now().Add(lockWait); ; {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("locking %s: %w", nodeLockPath, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the node lock %s is still held (e2e tests?) after %v", nodeLockPath, lockWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	log.Printf("node lock taken")
	// Everything below is undone in reverse order, also on failure.
	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()

	c, err := localcluster.Start(ctx, localcluster.Options{Logf: log.Printf})
	if err != nil {
		return fmt.Errorf("starting the local cluster: %w", err)
	}
	undo = append(undo, func() {
		if err := c.Stop(); err != nil {
			log.Printf("stopping the cluster: %v", err)
		}
	})
	// The control plane moves to the load CPU; the proxy's CPU is its own.
	if err := pinChildren(loadCPU); err != nil {
		return err
	}
	teardown, err := bpf.SetupProxyRouting()
	if err != nil {
		return err
	}
	undo = append(undo, func() {
		if err := teardown(); err != nil {
			log.Printf("proxy routing teardown: %v", err)
		}
	})
	bpffs, err := mountBPFFS()
	if err != nil {
		return err
	}
	undo = append(undo, func() { unmountBPFFS(bpffs) })

	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	k8s, err := client.New(c.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	originPod, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: pol.Namespace, Name: "bench-origin", Labels: map[string]string{"app": "bench-origin"}})
	if err != nil {
		return err
	}
	clientPod, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: pol.Namespace, Name: "bench-client", Labels: map[string]string{"app": "bench-client"}})
	if err != nil {
		return err
	}
	srv := originPod.Command("taskset", "-c", strconv.Itoa(loadCPU), origin, "-http", "0.0.0.0:28080", "-grpc", "0.0.0.0:28051")
	srv.Env = append(os.Environ(), "GOMAXPROCS=1")
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	undo = append(undo, func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("origin in its pod: %q, %v", line, err)
	}

	// The L4-only phase first: the policy without its L7 rules.
	l4 := pol.DeepCopy()
	for i := range l4.Spec.Ingress {
		for j := range l4.Spec.Ingress[i].ToPorts {
			l4.Spec.Ingress[i].ToPorts[j].Rules = nil
		}
	}
	if err := k8s.Create(ctx, l4); err != nil {
		return fmt.Errorf("creating the policy: %w", err)
	}

	// The agent and its proxy: this process, on the proxy's CPU, one P.
	if err := pinSelf(proxyCPU); err != nil {
		return err
	}
	runtime.GOMAXPROCS(1)
	agentCtx, cancelAgent := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(agentCtx, agent.Config{
			RESTConfig: c.RESTConfig(), NodeName: c.NodeName(),
			BPFFS: bpffs, ProxyPort: uint16(20000 + rand.IntN(8000)), ProxyMaxConnections: maxConns,
			MetricsBindAddress: "0", HealthProbeBindAddress: "0",
			Ready: ready,
		})
	}()
	undo = append(undo, func() {
		cancelAgent()
		if err := <-done; err != nil {
			log.Printf("agent: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- err
		return fmt.Errorf("agent exited: %w", err)
	case <-time.After(60 * time.Second):
		return errors.New("agent not ready after 60s")
	}

	env := append(os.Environ(),
		"BENCH_CLIENT_NETNS="+clientPod.NetNS,
		"BENCH_ORIGIN_IP="+originPod.IP.String(),
		"BENCH_PROXY_PID="+strconv.Itoa(os.Getpid()))
	phase := func(name string) error {
		if err := waitProgrammed(ctx, k8s, c.NodeName(), pol); err != nil {
			return err
		}
		log.Printf("phase %s", name)
		argv := append([]string{"taskset", "-c", strconv.Itoa(loadCPU)}, cmd...)
		cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], name)...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("phase %s: %w", name, err)
		}
		return nil
	}
	if err := phase("pod-l4"); err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur v1alpha1.TrafficPolicy
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(pol), &cur); err != nil {
			return err
		}
		cur.Spec = pol.Spec.DeepCopy()
		return k8s.Update(ctx, &cur)
	})
	if err != nil {
		return fmt.Errorf("updating the policy: %w", err)
	}
	return phase("pod-l7")
}

// readPolicy reads one TrafficPolicy.
func readPolicy(file string) (*v1alpha1.TrafficPolicy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s := k8sruntime.NewScheme()
	utilruntime.Must(v1alpha1.AddToScheme(s))
	obj, _, err := serializer.NewCodecFactory(s).UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	p, ok := obj.(*v1alpha1.TrafficPolicy)
	if !ok || p.Spec == nil {
		return nil, fmt.Errorf("%s: want one TrafficPolicy with a spec, got %T", file, obj)
	}
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	return p, nil
}

// waitProgrammed waits until the agent reports the policy's current
// generation as written on this node.
func waitProgrammed(ctx context.Context, k8s client.Client, node string, p *v1alpha1.TrafficPolicy) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := localcluster.NodeReported(ctx, k8s, node, p, &v1alpha1.TrafficPolicy{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("policy not programmed after 30s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func mountBPFFS() (string, error) {
	dir, err := os.MkdirTemp("", "portcullis-bench-bpffs-")
	if err != nil {
		return "", err
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("mounting bpffs: %w", err)
	}
	return dir, nil
}

// unmountBPFFS removes the agent's datapath (links and pins) and the mount.
func unmountBPFFS(dir string) {
	if dp, err := bpf.Load(bpf.Options{PinPath: filepath.Join(dir, "portcullis")}); err == nil {
		if err := dp.Remove(); err != nil {
			log.Printf("removing the datapath: %v", err)
		}
	}
	if err := unix.Unmount(dir, 0); err != nil {
		log.Printf("unmounting %s: %v", dir, err)
	}
	_ = os.Remove(dir)
}

// pinSelf binds every thread of this process to cpu (threads made later
// inherit it).
func pinSelf(cpu int) error {
	return pinProcess(os.Getpid(), cpu)
}

// pinChildren binds this process's child processes (etcd, kube-apiserver)
// to cpu.
func pinChildren(cpu int) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == self {
			if err := pinProcess(pid, cpu); err != nil {
				return err
			}
		}
	}
	return nil
}

func pinProcess(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pinning task %d of %d to CPU %d: %w", tid, pid, cpu, err)
		}
	}
	return nil
}
