package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// helperEnv makes the test binary a tiny TCP server instead of running
// tests; see TestMain.
const helperEnv = "LOCALCLUSTER_TEST_LISTEN"

// TestMain lets the test binary act as a TCP server inside a pod: with
// LOCALCLUSTER_TEST_LISTEN=ADDR it listens on ADDR, prints "ready", answers
// each connection with "hello from ADDR" and exits after 30 s.
func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		os.Exit(serve(addr))
	}
	os.Exit(m.Run())
}

// serve is the helper server of TestMain.
func serve(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	time.AfterFunc(30*time.Second, func() { os.Exit(0) })
	for {
		conn, err := ln.Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintf(conn, "hello from %s\n", addr)
		_ = conn.Close()
	}
}

// requireRoot skips t unless it runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("localcluster needs root for network namespaces; run as root (make e2e / make test do)")
	}
}

// startCluster starts a cluster and stops it at the end of t; binaries that
// are missing fail the test (run make tools).
func startCluster(t *testing.T) *Cluster {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	c, err := Start(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start took %v", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

// snapshot is what the package may leave on the machine.
type snapshot struct {
	netns, etc, links, routes, state, temp, procs map[string]bool
}

// takeSnapshot lists prefixed namespaces and links, state directories,
// temporary directories and processes that name one.
func takeSnapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{netns: map[string]bool{}, etc: map[string]bool{}, links: map[string]bool{}, routes: map[string]bool{}, state: map[string]bool{}, temp: map[string]bool{}, procs: map[string]bool{}}
	for _, p := range blackholePrefixes() {
		s.routes[p+"blackhole "+ServiceCIDR.String()] = true
	}
	for _, n := range netnsNames() {
		if prefixPattern.MatchString(n) {
			s.netns[n] = true
		}
	}
	etc, _ := os.ReadDir(netnsEtcDir)
	for _, e := range etc {
		if prefixPattern.MatchString(e.Name()) {
			s.etc[e.Name()] = true
		}
	}
	links, err := rootLinkNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range links {
		if prefixPattern.MatchString(n) {
			s.links[n] = true
		}
	}
	entries, _ := os.ReadDir(StateDir)
	for _, e := range entries {
		s.state[e.Name()] = true
	}
	// Only ours: envtest's k8s_test_framework_* directories may belong to
	// other tests running at the same time. TestClusterPodsTalk checks that
	// the cluster's envtest directories are inside its own.
	temps, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPattern+"*"))
	for _, d := range temps {
		s.temp[d] = true
	}
	forEachProcess(func(pid int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(b), tempDirPattern) && running(pid) {
			s.procs[fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(b), "\x00", " "))] = true
		}
	})
	return s
}

// itemPrefixPattern finds the cluster prefix in a snapshot item: a name
// that starts with it or a path through a cluster's temporary directory.
var itemPrefixPattern = regexp.MustCompile(`(?:^|` + tempDirPattern + `)(pc[0-9a-f]{4})`)

// ownedElsewhere reports whether an item belongs to a cluster whose owner
// is another live process: other test packages (e2e) run clusters at the
// same time as this one, and what they make is not ours to account for.
func ownedElsewhere(item string) bool {
	m := itemPrefixPattern.FindStringSubmatch(item)
	if m == nil {
		return false
	}
	o, ok := readOwner(m[1] + "-")
	return ok && o.PID != os.Getpid() && o.alive()
}

// newSince reports what s has that before had not, leaving out what other
// live processes' clusters made meanwhile.
func (s snapshot) newSince(before snapshot) []string {
	var out []string
	for _, pair := range []struct {
		what      string
		now, then map[string]bool
	}{{"netns", s.netns, before.netns}, {"netns etc dir", s.etc, before.etc}, {"link", s.links, before.links}, {"route", s.routes, before.routes}, {"state dir", s.state, before.state}, {"temp dir", s.temp, before.temp}, {"process", s.procs, before.procs}} {
		for k := range pair.now {
			if !pair.then[k] && !ownedElsewhere(k) {
				out = append(out, pair.what+" "+k)
			}
		}
	}
	return out
}

func TestClusterPodsTalk(t *testing.T) {
	requireRoot(t)
	before := takeSnapshot(t)
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The cluster's basics.
	node, err := c.Clientset().CoreV1().Nodes().Get(ctx, c.NodeName(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node: %v", err)
	}
	if node.Spec.PodCIDR != PodCIDR.String() || len(node.Status.Addresses) == 0 || node.Status.Addresses[0].Address != GatewayIP.String() {
		t.Errorf("node: podCIDR %q addresses %v, want %s and InternalIP %s", node.Spec.PodCIDR, node.Status.Addresses, PodCIDR, GatewayIP)
	}
	for _, ns := range []string{SystemNamespace, SecretsNamespace} {
		if _, err := c.Clientset().CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Errorf("namespace %s: %v", ns, err)
		}
	}
	// Everything on disk is inside the temporary directory Stop removes.
	cp := c.Environment().ControlPlane
	for _, p := range []string{c.KubeconfigPath(), cp.APIServer.CertDir, cp.Etcd.DataDir} {
		if !strings.HasPrefix(p, c.TempDir()+string(filepath.Separator)) {
			t.Errorf("%s is outside the cluster's temporary directory %s", p, c.TempDir())
		}
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}

	specs := []PodSpec{
		{Name: "deathstar", Labels: map[string]string{"org": "empire", "class": "deathstar"}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}},
		{Namespace: "rebels", Name: "xwing", Labels: map[string]string{"org": "alliance"}, ServiceAccount: "pilot"},
	}
	pods := make([]*Pod, len(specs))
	for i, spec := range specs {
		begin := time.Now()
		p, err := c.AddPod(ctx, spec)
		if err != nil {
			t.Fatalf("AddPod %s: %v", spec.Name, err)
		}
		t.Logf("AddPod %s took %v", spec.Name, time.Since(begin).Round(time.Millisecond))
		pods[i] = p
	}
	if pods[0].IP == pods[1].IP || !PodCIDR.Contains(pods[0].IP) || !PodCIDR.Contains(pods[1].IP) {
		t.Fatalf("pod IPs %s and %s: want distinct addresses in %s", pods[0].IP, pods[1].IP, PodCIDR)
	}
	if _, err := c.AddPod(ctx, specs[0]); !errors.Is(err, ErrPodExists) {
		t.Errorf("second AddPod of %s: got %v, want ErrPodExists", specs[0].Name, err)
	}

	for i, p := range pods {
		spec := specs[i]
		t.Run("object/"+p.Name, func(t *testing.T) {
			got, err := c.Clientset().CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("getting pod: %v", err)
			}
			wantSA := spec.ServiceAccount
			if wantSA == "" {
				wantSA = "default"
			}
			for _, check := range []struct{ what, got, want string }{
				{"phase", string(got.Status.Phase), string(corev1.PodRunning)},
				{"podIP", got.Status.PodIP, p.IP.String()},
				{"hostIP", got.Status.HostIP, GatewayIP.String()},
				{"nodeName", got.Spec.NodeName, c.NodeName()},
				{"serviceAccountName", got.Spec.ServiceAccountName, wantSA},
				{"label org", got.Labels["org"], spec.Labels["org"]},
			} {
				if check.got != check.want {
					t.Errorf("%s: got %q, want %q", check.what, check.got, check.want)
				}
			}
			if len(got.Status.PodIPs) != 1 || got.Status.PodIPs[0].IP != p.IP.String() {
				t.Errorf("podIPs: got %v, want [%s]", got.Status.PodIPs, p.IP)
			}
			if !podReady(got) {
				t.Errorf("Ready condition missing or not True: %v", got.Status.Conditions)
			}
			if len(got.Spec.Containers) != 1 || len(got.Spec.Containers[0].Ports) != len(spec.Ports) {
				t.Errorf("containers: got %+v, want one with ports %v", got.Spec.Containers, spec.Ports)
			}
		})
		t.Run("route/"+p.Name, func(t *testing.T) {
			// The datapath finds the pod's interface from this route.
			routes, err := netlink.RouteGet(p.IP.AsSlice())
			if err != nil {
				t.Fatalf("route to %s: %v", p.IP, err)
			}
			link, err := netlink.LinkByIndex(routes[0].LinkIndex)
			if err != nil {
				t.Fatal(err)
			}
			if link.Attrs().Name != p.HostVeth {
				t.Errorf("route to %s goes through %s, want %s", p.IP, link.Attrs().Name, p.HostVeth)
			}
		})
	}

	// A host: plumbed like a pod, no Pod object.
	host, err := c.AddHost("outside")
	if err != nil {
		t.Fatalf("AddHost: %v", err)
	}
	if host.IP == pods[0].IP || host.IP == pods[1].IP || !PodCIDR.Contains(host.IP) {
		t.Errorf("host IP %s: want an address of %s that no pod has", host.IP, PodCIDR)
	}
	if _, err := c.AddHost("outside"); !errors.Is(err, ErrPodExists) {
		t.Errorf("second AddHost: got %v, want ErrPodExists", err)
	}
	if list, err := c.Clientset().CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != len(specs) {
		t.Errorf("pods in the API after AddHost: %v, %v; want %d (a host has no Pod object)", list, err, len(specs))
	}

	// A server in the first pod; connections from the second pod, from
	// the host and from the root namespace; and from the pod to a server on
	// the gateway.
	server := pods[0]
	addr := netip.AddrPortFrom(server.IP, 8080).String()
	stop := startHelper(t, server, addr)
	defer stop()
	for _, tc := range []struct {
		name string
		dial func() (string, error)
	}{
		{"pod to pod", func() (string, error) { return bashConnect(ctx, pods[1], addr) }},
		{"host namespace to pod", func() (string, error) { return bashConnect(ctx, host, addr) }},
		{"host to pod", func() (string, error) { return goConnect(addr) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.dial()
			if err != nil {
				t.Fatalf("connecting to %s: %v", addr, err)
			}
			if want := "hello from " + addr; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	t.Run("pod to gateway", func(t *testing.T) {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(GatewayIP, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if conn, err := ln.Accept(); err == nil {
				fmt.Fprintf(conn, "hello from gateway\n")
				conn.Close()
			}
		}()
		got, err := bashConnect(ctx, pods[1], ln.Addr().String())
		if err != nil || got != "hello from gateway" {
			t.Errorf("got %q, %v; want hello from gateway", got, err)
		}
	})

	// DeletePod removes the object, the namespace and the link.
	if err := c.DeletePod(ctx, pods[1].Namespace, pods[1].Name); err != nil {
		t.Fatalf("DeletePod: %v", err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, pods[1].NetNS)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s still there after DeletePod (%v)", pods[1].NetNS, err)
	}
	if _, err := netlink.LinkByName(pods[1].HostVeth); err == nil {
		t.Errorf("link %s still there after DeletePod", pods[1].HostVeth)
	}
	if _, err := c.Clientset().CoreV1().Pods(pods[1].Namespace).Get(ctx, pods[1].Name, metav1.GetOptions{}); err == nil {
		t.Errorf("Pod object %s still there after DeletePod", pods[1].Name)
	}

	if err := c.DeletePod(ctx, "", host.Name); err != nil {
		t.Fatalf("DeletePod of the host: %v", err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, host.NetNS)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s still there after DeletePod (%v)", host.NetNS, err)
	}

	// Stop, twice, and nothing remains (the server process included).
	begin := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(begin).Round(time.Millisecond))
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if left := takeSnapshot(t).newSince(before); len(left) > 0 {
		t.Errorf("left behind after Stop:\n  %s", strings.Join(left, "\n  "))
	}
	if _, err := os.Stat(c.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there (%v)", c.TempDir(), err)
	}
	if _, err := c.AddPod(ctx, PodSpec{Name: "late"}); !errors.Is(err, ErrStopped) {
		t.Errorf("AddPod after Stop: got %v, want ErrStopped", err)
	}
}

// startHelper runs the test binary as a TCP server on addr inside pod and
// waits until it listens.
func startHelper(t *testing.T, pod *Pod, addr string) (stop func()) {
	t.Helper()
	cmd := pod.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting server in pod %s: %v", pod.Name, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("server in pod %s: got %q, %v; want ready", pod.Name, line, err)
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// bashConnect connects from inside pod to addr with bash's /dev/tcp and
// returns the first line it reads.
func bashConnect(ctx context.Context, pod *Pod, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := pod.Exec(ctx, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && head -n1 <&3", host, port))
	return strings.TrimSpace(string(out)), err
}

// goConnect connects from the root namespace to addr.
func goConnect(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestStartFailureLeavesNothing(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name      string
		opts      func(t *testing.T) Options
		cancelled bool // Start with a cancelled context (Ctrl-C during Start)
		wantErr   error
	}{
		{
			name:    "no binaries in the assets dir",
			opts:    func(t *testing.T) Options { return Options{AssetsDir: t.TempDir()} },
			wantErr: ErrAssetsMissing,
		},
		{
			// The control plane starts, then installing CRDs fails: etcd
			// and kube-apiserver must be stopped again.
			name: "missing CRD directory",
			opts: func(t *testing.T) Options {
				return Options{CRDDir: filepath.Join(t.TempDir(), "no-such-dir")}
			},
		},
		{
			// The control plane starts (it does not watch the context),
			// then the first API call fails.
			name:      "context cancelled",
			opts:      func(t *testing.T) Options { return Options{} },
			cancelled: true,
			wantErr:   context.Canceled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts(t)
			if tc.opts(t).AssetsDir == "" {
				if _, err := assetsDir(""); err != nil {
					t.Fatalf("this case needs the control plane binaries: %v", err)
				}
			}
			before := takeSnapshot(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			c, err := Start(ctx, opts)
			if err == nil {
				_ = c.Stop()
				t.Fatal("Start succeeded, want an error")
			}
			t.Logf("Start: %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
			if c != nil {
				t.Errorf("Start returned a cluster with its error")
			}
			if err := c.Stop(); err != nil {
				t.Errorf("Stop on the nil cluster: %v", err)
			}
			if left := takeSnapshot(t).newSince(before); len(left) > 0 {
				t.Errorf("left behind after the failed Start:\n  %s", strings.Join(left, "\n  "))
			}
		})
	}
}

// TestCleanLeftovers fakes a cluster whose process died (a state record
// with a dead owner, a pod namespace and link, a process in the namespace
// and one naming the temporary directory) and a live one, and checks that
// CleanLeftovers removes the first and keeps the second. It needs root but
// not the control plane binaries.
func TestCleanLeftovers(t *testing.T) {
	requireRoot(t)
	// A dead owner: a process that has exited and been reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.ProcessState.Pid()

	type fake struct {
		prefix, tempDir string
		pl              plumbing
		procs           []*exec.Cmd
	}
	makeFake := func(t *testing.T, ownerPID int, startTime uint64, addr netip.Addr) *fake {
		t.Helper()
		prefix, err := claimPrefix(func(p string) string {
			return filepath.Join(os.TempDir(), tempDirPattern+strings.TrimSuffix(p, "-"))
		})
		if err != nil {
			t.Fatal(err)
		}
		f := &fake{prefix: prefix, tempDir: filepath.Join(os.TempDir(), tempDirPattern+strings.TrimSuffix(prefix, "-"))}
		if err := os.Mkdir(f.tempDir, 0o700); err != nil {
			t.Fatal(err)
		}
		rec := fmt.Sprintf(`{"pid":%d,"startTime":%d,"tempDir":%q}`, ownerPID, startTime, f.tempDir)
		if err := os.WriteFile(filepath.Join(stateDirOf(prefix), stateFile), []byte(rec), 0o644); err != nil {
			t.Fatal(err)
		}
		once := false
		f.pl, err = plumbPod(prefix+"default.fake", prefix+"fake", func() (netip.Addr, bool) {
			if once {
				return netip.Addr{}, false
			}
			once = true
			return addr, true
		})
		if err != nil {
			t.Fatalf("plumbPod: %v", err)
		}
		if err := addServiceBlackhole(prefix); err != nil {
			t.Fatal(err)
		}
		inPod := exec.Command("ip", "netns", "exec", f.pl.netns, "sleep", "60")
		naming := exec.Command("bash", "-c", "sleep 60; true", f.tempDir)
		for _, cmd := range []*exec.Cmd{inPod, naming} {
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			f.procs = append(f.procs, cmd)
			go func() { _ = cmd.Wait() }()
		}
		t.Cleanup(func() {
			for _, cmd := range f.procs {
				_ = cmd.Process.Kill()
			}
			_ = removeAll(f.prefix, f.tempDir)
		})
		return f
	}
	selfStart, err := procStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadOne := makeFake(t, deadPID, 12345, netip.MustParseAddr("10.244.254.2"))
	liveOne := makeFake(t, os.Getpid(), selfStart, netip.MustParseAddr("10.244.254.3"))
	// Give the ip netns exec'd sleep time to enter the namespace.
	time.Sleep(200 * time.Millisecond)

	if err := CleanLeftovers(); err != nil {
		t.Fatalf("CleanLeftovers: %v", err)
	}
	gone := func(f *fake) []string {
		var there []string
		if _, err := os.Stat(filepath.Join(netnsDir, f.pl.netns)); err == nil {
			there = append(there, "netns "+f.pl.netns)
		}
		if _, err := netlink.LinkByName(f.pl.hostVeth); err == nil {
			there = append(there, "link "+f.pl.hostVeth)
		}
		if _, err := os.Stat(f.tempDir); err == nil {
			there = append(there, "temp dir "+f.tempDir)
		}
		if slices.Contains(blackholePrefixes(), f.prefix) {
			there = append(there, "blackhole route of "+f.prefix)
		}
		if _, err := os.Stat(stateDirOf(f.prefix)); err == nil {
			there = append(there, "state dir "+stateDirOf(f.prefix))
		}
		for _, cmd := range f.procs {
			if running(cmd.Process.Pid) {
				there = append(there, fmt.Sprintf("process %d %v", cmd.Process.Pid, cmd.Args))
			}
		}
		return there
	}
	if there := gone(deadOne); len(there) > 0 {
		t.Errorf("dead cluster's leftovers still there: %v", there)
	}
	if there := gone(liveOne); len(there) != 7 {
		t.Errorf("live cluster lost some of its things, only these remain: %v", there)
	}
}

func TestAllocator(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start string
		want  []string // then exhausted if the list ends with ""
	}{
		{"skips gateway", "10.244.0.1", []string{"10.244.0.2", "10.244.0.3"}},
		{"skips .255 and .0", "10.244.0.254", []string{"10.244.0.254", "10.244.1.1"}},
		{"exhausted", "10.244.255.254", []string{"10.244.255.254", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := allocator{next: netip.MustParseAddr(tc.start)}
			for i, want := range tc.want {
				got, ok := a.alloc()
				if want == "" {
					if ok {
						t.Errorf("alloc %d: got %s, want exhausted", i, got)
					}
					continue
				}
				if !ok || got.String() != want {
					t.Errorf("alloc %d: got %s %v, want %s", i, got, ok, want)
				}
			}
		})
	}
}

func TestNames(t *testing.T) {
	c := &Cluster{prefix: "pc0a1b-"}
	long := strings.Repeat("x", 250)
	for _, tc := range []struct {
		namespace, name string
		wantNetns       string // "" means hashed
	}{
		{"default", "deathstar", "pc0a1b-default.deathstar"},
		{"kube-system", "kube-dns.v1", "pc0a1b-kube-system.kube-dns.v1"},
		{"default", long, ""},
	} {
		t.Run(tc.name[:min(len(tc.name), 20)], func(t *testing.T) {
			veth := c.vethName(tc.namespace, tc.name)
			if len(veth) != 15 || !prefixPattern.MatchString(veth) {
				t.Errorf("veth %q: want 15 bytes with the prefix", veth)
			}
			ns := c.netnsName(tc.namespace, tc.name)
			if tc.wantNetns != "" && ns != tc.wantNetns {
				t.Errorf("netns: got %q, want %q", ns, tc.wantNetns)
			}
			if len(ns) > maxNetnsName || !prefixPattern.MatchString(ns) {
				t.Errorf("netns %q: want at most %d bytes with the prefix", ns, maxNetnsName)
			}
		})
	}
	if a, b := c.vethName("default", "a"), c.vethName("default", "b"); a == b {
		t.Errorf("veth names collide: %s", a)
	}
}

func TestProcStartTime(t *testing.T) {
	got, err := procStartTime(os.Getpid())
	if err != nil || got == 0 {
		t.Fatalf("procStartTime(self) = %d, %v", got, err)
	}
	if (owner{PID: os.Getpid(), StartTime: got}).alive() != true {
		t.Error("own record not alive")
	}
	if (owner{PID: os.Getpid(), StartTime: got + 1}).alive() {
		t.Error("record with another start time alive (PID reuse not detected)")
	}
}
