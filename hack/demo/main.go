package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
)

// policyResources are the kinds the demo applies and lists.
var policyResources = []schema.GroupVersionResource{
	{Group: "policy.portcullis.dev", Version: "v1alpha1", Resource: "trafficpolicies"},
	{Group: "policy.portcullis.dev", Version: "v1alpha1", Resource: "clustertrafficpolicies"},
	{Group: "policy.portcullis.dev", Version: "v1alpha1", Resource: "admintrafficpolicies"},
}

// exampleDirs are the examples applied with kubectl: our kinds only
// (examples/cilium needs the cilium.io CRDs, which are not installed).
// The Star Wars traffic scenario applies its L3/L4 version
// (examples/starwars-l3l4) for its steps and examples/starwars after.
var exampleDirs = []string{"examples/starwars", "examples/headers", "examples/kafka", "examples/grpc", "examples/dns", "examples/admin"}

// demoPods are the workloads of the examples, as the policies select them.
var demoPods = []localcluster.PodSpec{
	// Star Wars (examples/starwars).
	{Name: "deathstar", Labels: labels("org=empire", "class=deathstar"), Ports: tcp("http", 80)},
	{Name: "tiefighter", Labels: labels("org=empire", "class=tiefighter")},
	{Name: "xwing", Labels: labels("org=alliance", "class=xwing")},
	// Kafka (examples/kafka).
	{Name: "kafka-broker", Labels: labels("app=kafka"), Ports: tcp("kafka", 9092)},
	{Name: "empire-hq", Labels: labels("app=empire-hq")},
	{Name: "empire-outpost", Labels: labels("app=empire-outpost")},
	{Name: "empire-backup", Labels: labels("app=empire-backup")},
	// gRPC (examples/grpc).
	{Name: "cc-door-mgr", Labels: labels("app=cc-door-mgr"), Ports: tcp("grpc", 50051)},
	{Name: "public-terminal", Labels: labels("app=public-terminal")},
	// DNS (examples/dns).
	{Name: "mediabot", Labels: labels("org=alliance", "class=mediabot")},
	// Admin tiers (examples/admin).
	{Namespace: "sandbox", Name: "sandbox-client", Labels: labels("app=x")},
	{Namespace: "team-a", Name: "web", Labels: labels("app=web"), Ports: tcp("http", 80)},
}

// demoServices are the Services of the examples: every client calls its
// server by the Service's name, resolved by the cluster's CoreDNS.
var demoServices = []localcluster.ServiceSpec{
	{Name: "deathstar", Selector: labels("org=empire", "class=deathstar"), Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	{Name: "kafka-service", Selector: labels("app=kafka"), Ports: []corev1.ServicePort{{Name: "kafka", Port: 9092}}},
	{Name: "cc-door-server", Selector: labels("app=cc-door-mgr"), Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}},
}

// serviceName is the name a pod resolves a Service of namespace default
// by.
func serviceName(name string) string {
	return name + ".default.svc." + localcluster.ClusterDomain
}

// labels turns "k=v" pairs into a label map.
func labels(kv ...string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return m
}

// tcp is one named TCP container port.
func tcp(name string, port int32) []corev1.ContainerPort {
	return []corev1.ContainerPort{{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
}

func main() {
	// The demo's servers and clients are this binary, run in the pods.
	workloads.RunIfChild()
	var cfg config
	flag.StringVar(&cfg.operatorBin, "operator", "bin/portcullis-operator", "operator binary; skipped with a note if missing")
	flag.StringVar(&cfg.portcullis, "portcullis", "bin/portcullis", "portcullis CLI for hack/demo.sh")
	flag.StringVar(&cfg.kubectl, "kubectl", "", "kubectl binary (default $KUBECTL, else bin/kubectl, else $KUBEBUILDER_ASSETS/kubectl)")
	flag.DurationVar(&cfg.acceptWait, "accept-wait", 20*time.Second, "how long to wait for the operator to accept the policies")
	flag.BoolVar(&cfg.verbose, "v", false, "show the control plane's and the operator's output")
	flag.Parse()
	os.Exit(run(cfg))
}

// config is the demo's flags.
type config struct {
	operatorBin, portcullis, kubectl string
	acceptWait                       time.Duration
	verbose                          bool
}

// run runs the demo and returns the exit status. Teardown always runs.
func run(cfg config) int {
	begin := time.Now()
	ctx, stop := localcluster.SignalContext(context.Background())
	defer stop()
	d := &demo{config: cfg, out: os.Stdout}
	err := d.run(ctx)
	d.teardown()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "\ndemo: interrupted (%v); everything was torn down\n", err)
			return 130
		}
		fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %v\n", err)
		return 1
	}
	took := time.Since(begin)
	if d.agentRun != nil && d.agentRun.lockWait > 0 {
		fmt.Fprintf(d.out, "\ndemo: done in %v (plus %v waiting for the node lock)\n", (took - d.agentRun.lockWait).Round(100*time.Millisecond), d.agentRun.lockWait.Round(100*time.Millisecond))
		return 0
	}
	fmt.Fprintf(d.out, "\ndemo: done in %v\n", took.Round(100*time.Millisecond))
	return 0
}

// demo is one run: what it started, so teardown can stop it.
type demo struct {
	config
	out      io.Writer
	step     int
	cluster  *localcluster.Cluster
	operator *exec.Cmd
	opDone   chan struct{}
	opLog    string
	// workloads are the servers and clients run in pods (traffic.go).
	workloads []*workloads.Process
	agentRun  *agentRun
	// children are followers (portcullis monitor), killed at teardown.
	children []*exec.Cmd
}

// totalSteps is the number of section headers.
const totalSteps = 13 // twelve sections (one traffic scenario) and the teardown

// section prints a section header.
func (d *demo) section(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n=== [%d/%d] %s\n\n", d.step, totalSteps, title)
}

func (d *demo) run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo makes network namespaces and veth pairs: run it as root")
	}
	for _, p := range append([]string{"hack/demo.sh", d.portcullis}, exampleDirs...) {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("run from the repository root after make build (make demo does both): %w", err)
		}
	}
	kubectl, err := d.findKubectl()
	if err != nil {
		return err
	}

	d.section("Local cluster: etcd and kube-apiserver from source, CRDs, a Node")
	opts := localcluster.Options{Logf: func(format string, args ...any) { fmt.Fprintf(d.out, "  "+format+"\n", args...) }}
	if d.verbose {
		opts.Output = os.Stderr
	}
	t0 := time.Now()
	d.cluster, err = localcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  up in %v; API server %s\n  kubeconfig %s\n", time.Since(t0).Round(100*time.Millisecond), d.cluster.RESTConfig().Host, d.cluster.KubeconfigPath())

	d.section("Operator")
	if err := d.startOperator(); err != nil {
		return err
	}

	d.section("Pods: network namespaces with veth pairs, registered as Pod objects")
	for _, spec := range demoPods {
		if _, err := d.cluster.AddPod(ctx, spec); err != nil {
			return err
		}
	}
	if err := d.addTLSHosts(); err != nil {
		return err
	}
	if err := d.kubectl(ctx, kubectl, "get", "pods", "-A", "-o",
		"custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,STATUS:.status.phase,IP:.status.podIP,NODE:.spec.nodeName,LABELS:.metadata.labels"); err != nil {
		return err
	}

	d.section("Services and kube-dns: CoreDNS at 10.96.0.10, forwarding nothing off the machine")
	for _, spec := range demoServices {
		if _, err := d.cluster.AddService(ctx, spec); err != nil {
			return err
		}
	}
	if _, err := d.cluster.StartDNS(ctx); err != nil {
		return err
	}
	if err := d.kubectl(ctx, kubectl, "get", "services,endpointslices", "-A"); err != nil {
		return err
	}

	d.section("Policies: kubectl apply " + strings.Join(exampleDirs, " "))
	args := []string{"apply", "--server-side", "--field-manager=portcullis-demo"}
	for _, dir := range exampleDirs {
		args = append(args, "-f", dir)
	}
	if err := d.kubectl(ctx, kubectl, args...); err != nil {
		return err
	}

	d.section("Policy status: kubectl get tp,ctp,atp -A")
	if d.operator != nil {
		d.waitAccepted(ctx)
	}
	if err := d.kubectl(ctx, kubectl, "get", "tp,ctp,atp", "-A"); err != nil {
		return err
	}

	d.section("Agent: the kernel datapath on every pod (agent.Run, as cmd/portcullis-agent)")
	if err := d.startAgent(ctx); err != nil {
		return err
	}
	if err := d.cli(ctx, "endpoint", "list"); err != nil {
		return err
	}
	if err := d.cli(ctx, "service", "list"); err != nil {
		return err
	}

	for _, sc := range []scenario{starWarsL3L4} {
		d.section("Real traffic: " + sc.Title + ", followed by portcullis monitor")
		if err := d.runScenario(ctx, kubectl, sc); err != nil {
			return err
		}
	}

	d.section("Real L7 traffic through the proxy: HTTP/1.1, HTTP/2, gRPC, a header rule, a policy change under keep-alive")
	if err := d.l7Traffic(ctx, kubectl); err != nil {
		return err
	}

	d.section("Real Kafka traffic through the proxy: Cilium's Kafka demo with kcat and franz-go")
	if err := d.kafkaTraffic(ctx, kubectl); err != nil {
		return err
	}

	d.section("Real TLS traffic: Cilium's TLS inspection guide with curl and openssl s_client")
	if err := d.tlsTraffic(ctx, kubectl); err != nil {
		return err
	}

	d.section("Verdicts: portcullis policy trace over examples/ (hack/demo.sh)")
	cmd := exec.CommandContext(ctx, "bash", "hack/demo.sh")
	cmd.Env = append(os.Environ(), "PORTCULLIS="+d.portcullis)
	cmd.Stdout, cmd.Stderr = d.out, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/demo.sh: %w", err)
	}
	return nil
}

// cli runs the portcullis CLI against the agent's socket and shows its
// output.
func (d *demo) cli(ctx context.Context, args ...string) error {
	out, err := d.runCLI(ctx, args...)
	d.out.Write(out)
	return err
}

func (d *demo) runCLI(ctx context.Context, args ...string) ([]byte, error) {
	args = append(args, "--socket", d.agentRun.socket)
	fmt.Fprintf(d.out, "$ portcullis %s\n", strings.Join(args, " "))
	out, err := exec.CommandContext(ctx, d.portcullis, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("portcullis %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

// findKubectl picks the kubectl binary.
func (d *demo) findKubectl() (string, error) {
	candidates := []string{d.config.kubectl, os.Getenv("KUBECTL"), "bin/kubectl"}
	if a := os.Getenv("KUBEBUILDER_ASSETS"); a != "" {
		candidates = append(candidates, filepath.Join(a, "kubectl"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if info, err := os.Stat(c); err == nil && !info.IsDir() {
			return c, nil
		}
	}
	return "", errors.New("kubectl not found (tried --kubectl, $KUBECTL, bin/kubectl, $KUBEBUILDER_ASSETS/kubectl): run make tools")
}

// kubectl runs kubectl against the cluster, its output indented.
func (d *demo) kubectl(ctx context.Context, kubectl string, args ...string) error {
	fmt.Fprintf(d.out, "$ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig=" + d.cluster.KubeconfigPath()}, args...)...)
	out, err := cmd.CombinedOutput()
	d.out.Write(out)
	if err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// startOperator starts the operator binary, if it exists, with its output
// in a log file in the cluster's temporary directory.
func (d *demo) startOperator() error {
	if _, err := os.Stat(d.operatorBin); err != nil {
		fmt.Fprintf(d.out, "  NOTE: %s not found: the policies are applied without the operator,\n  so their Accepted/Programmed columns stay empty. Run make build to build it.\n", d.operatorBin)
		return nil
	}
	d.opLog = filepath.Join(d.cluster.TempDir(), "operator.log")
	logf, err := os.Create(d.opLog)
	if err != nil {
		return fmt.Errorf("creating the operator log: %w", err)
	}
	args := []string{
		"--kubeconfig=" + d.cluster.KubeconfigPath(),
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:0",
		"--secrets-namespace=" + localcluster.SecretsNamespace,
	}
	cmd := exec.Command(d.operatorBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if d.verbose {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(logf, os.Stderr), io.MultiWriter(logf, os.Stderr)
	}
	// Its own process group, so a terminal's Ctrl-C reaches only the demo,
	// which stops the operator in order; and killed with the demo if the
	// demo is killed (a later localcluster.Start cleans up the rest).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting the operator: %w", err)
	}
	d.operator = cmd
	d.opDone = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(d.opDone)
	}()
	fmt.Fprintf(d.out, "$ %s %s\n  pid %d, log %s\n", d.operatorBin, strings.Join(args, " "), cmd.Process.Pid, d.opLog)
	select {
	case <-d.opDone:
		return fmt.Errorf("the operator exited at once (%v); its log:\n%s", cmd.ProcessState, d.logTail(20))
	case <-time.After(time.Second):
	}
	return nil
}

// waitAccepted waits until every policy has an Accepted condition, up to
// acceptWait, and says how it went.
func (d *demo) waitAccepted(ctx context.Context) {
	client, err := dynamic.NewForConfig(d.cluster.RESTConfig())
	if err != nil {
		fmt.Fprintf(d.out, "  (cannot watch the policies' status: %v)\n", err)
		return
	}
	begin := time.Now()
	deadline := begin.Add(d.acceptWait)
	for {
		pending, total, err := pendingPolicies(ctx, client)
		if err == nil && len(pending) == 0 {
			fmt.Fprintf(d.out, "  the operator set Accepted on all %d policies after %v\n", total, time.Since(begin).Round(100*time.Millisecond))
			return
		}
		select {
		case <-d.opDone:
			fmt.Fprintf(d.out, "  the operator exited (%v); last lines of its log:\n%s\n", d.operator.ProcessState, d.logTail(20))
			return
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				fmt.Fprintf(d.out, "  listing policies: %v\n", err)
			}
			fmt.Fprintf(d.out, "  after %v, no Accepted condition yet on: %s\n", d.acceptWait, strings.Join(pending, ", "))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// pendingPolicies lists the policies without an Accepted condition.
func pendingPolicies(ctx context.Context, client dynamic.Interface) (pending []string, total int, err error) {
	for _, gvr := range policyResources {
		list, err := client.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, 0, fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		for _, item := range list.Items {
			total++
			if !hasCondition(item, "Accepted") {
				name := item.GetName()
				if ns := item.GetNamespace(); ns != "" {
					name = ns + "/" + name
				}
				pending = append(pending, gvr.Resource+"/"+name)
			}
		}
	}
	sort.Strings(pending)
	return pending, total, nil
}

// hasCondition reports whether obj's status has a condition of type t.
func hasCondition(obj unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == t {
			return true
		}
	}
	return false
}

// logTail returns the last n lines of the operator's log, indented.
func (d *demo) logTail(n int) string {
	f, err := os.Open(d.opLog)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, "    "+sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// teardown stops the servers, the monitor, the agent (and removes its
// datapath, bpffs, routing), the operator and the cluster; it runs
// whatever happened.
func (d *demo) teardown() {
	d.step = totalSteps - 1
	d.section("Teardown")
	for _, w := range d.workloads {
		_ = w.Stop()
	}
	for _, c := range d.children {
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
	for _, c := range d.children {
		if c.ProcessState == nil {
			_ = c.Wait()
		}
	}
	if d.agentRun != nil {
		if err := d.agentRun.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "  teardown of the agent: %v\n", err)
		} else {
			fmt.Fprintf(d.out, "  agent stopped; its programs detached, maps unpinned, bpffs unmounted, proxy ip rule removed\n")
		}
	}
	if d.operator != nil {
		select {
		case <-d.opDone:
		default:
			_ = d.operator.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.opDone:
			case <-time.After(10 * time.Second):
				_ = d.operator.Process.Kill()
				<-d.opDone
			}
		}
		fmt.Fprintf(d.out, "  operator stopped\n")
	}
	if d.cluster == nil {
		fmt.Fprintf(d.out, "  no cluster to stop\n")
		return
	}
	prefix := d.cluster.Prefix()
	if err := d.cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "  teardown: %v\n", err)
		return
	}
	fmt.Fprintf(d.out, "  removed every %s* network namespace and link, stopped etcd and kube-apiserver, removed %s\n", prefix, d.cluster.TempDir())
}
