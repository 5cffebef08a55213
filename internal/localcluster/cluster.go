package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/config/crd"
)

// Addresses of the pod network.
var (
	// PodCIDR is the Node's podCIDR; every pod address comes from it.
	PodCIDR = netip.MustParsePrefix("10.244.0.0/16")
	// GatewayIP is the pods' default gateway: it sits on the host side of
	// every pod's veth pair and is the Node's InternalIP.
	GatewayIP = netip.MustParseAddr("10.244.0.1")
)

// Namespaces that Start creates: the operator's and the agents' defaults.
const (
	SystemNamespace  = v1alpha1.DefaultSystemNamespace
	SecretsNamespace = v1alpha1.DefaultSecretsNamespace
)

// Errors callers may test for with errors.Is.
var (
	// ErrNotRoot: network namespaces and links need root.
	ErrNotRoot = errors.New("localcluster needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
	// ErrAssetsMissing: kube-apiserver or etcd is not in the assets directory.
	ErrAssetsMissing = errors.New("control plane binaries not found")
	// ErrNoAddresses: every address of PodCIDR is taken.
	ErrNoAddresses = errors.New("no free pod address in " + PodCIDR.String())
	// ErrPodExists: AddPod was called twice for one namespace/name.
	ErrPodExists = errors.New("pod already exists")
	// ErrStopped: the cluster has been stopped.
	ErrStopped = errors.New("cluster stopped")
)

// Options configure Start. The zero value works from inside the repository
// once `make tools` has built the binaries.
type Options struct {
	// AssetsDir holds kube-apiserver and etcd. Empty means $KUBEBUILDER_ASSETS,
	// else the newest <repository>/bin/k8s/<version>/ that has them.
	AssetsDir string
	// CRDDir holds the CRD manifests to install. Empty means
	// <repository>/config/crd/bases, else (outside the repository) the
	// manifests embedded in portcullis.dev/portcullis/config/crd.
	CRDDir string
	// NodeName names the (first) Node object. Empty means the host name,
	// lower-cased.
	NodeName string
	// Nodes is the number of nodes; 0 and 1 mean one, this machine's root
	// network namespace. Node i (from 2) is a network namespace of its own
	// named NodeName-i, with an uplink routed through the root namespace.
	Nodes int
	// StartTimeout bounds the start of etcd and of kube-apiserver, each.
	// Zero means 60 s.
	StartTimeout time.Duration
	// Output receives etcd's and kube-apiserver's stdout and stderr. Nil
	// discards them.
	Output io.Writer
	// Logf, if not nil, is called with one line per step.
	Logf func(format string, args ...any)
}

// Cluster is a running local control plane and its pods. Its methods are
// safe for concurrent use.
type Cluster struct {
	prefix     string
	tempDir    string
	nodeName   string
	kubeconfig string
	logf       func(format string, args ...any)

	env       *envtest.Environment
	config    *rest.Config
	clientset kubernetes.Interface

	ipam allocator

	// sliceMu serializes SyncEndpointSlices.
	sliceMu sync.Mutex

	mu   sync.Mutex
	pods map[string]*Pod // by namespace/name; nil value: being added
	// nodes are the cluster's nodes, the first (root namespace) first.
	nodes []*Node
	dns   *kubeDNS // nil until StartDNS
	// zoneSerial is the serial of the external names' zone file.
	zoneSerial uint32
	stopped    bool
	stopErr    error
}

// Start brings up a cluster: it removes the leftovers of dead clusters,
// claims a name prefix, starts etcd and kube-apiserver (RBAC authorization,
// client certificates, a kubeconfig file for a system:masters user), installs
// the CRDs and waits until they are established, creates the
// portcullis-system and portcullis-secrets namespaces and registers this
// machine as a Ready Node. On error everything it made is removed again and
// the Cluster is nil. Call Stop when done; programs should start from a
// SignalContext so that Ctrl-C reaches their deferred Stop.
//
// ctx bounds the Kubernetes API calls; the start of the control plane
// processes is bounded by Options.StartTimeout instead.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	assets, err := assetsDir(opts.AssetsDir)
	if err != nil {
		return nil, err
	}
	crdDir, err := crdDir(opts.CRDDir)
	if err != nil {
		return nil, err
	}
	nodeName := opts.NodeName
	if nodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("reading host name: %w", err)
		}
		nodeName = strings.ToLower(h)
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}

	if err := cleanLeftovers(logf); err != nil {
		logf("cleaning leftovers of earlier clusters: %v", err)
	}
	prefix, tempDir, err := claim()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		prefix:     prefix,
		tempDir:    tempDir,
		nodeName:   nodeName,
		kubeconfig: filepath.Join(tempDir, "kubeconfig"),
		logf:       logf,
		pods:       map[string]*Pod{},
		ipam:       allocator{next: GatewayIP.Next()},
	}
	defer func() {
		if err != nil {
			if stopErr := c.Stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("cleaning up after the failed start: %w", stopErr))
			}
		}
	}()
	logf("cluster %s: temporary directory %s", strings.TrimSuffix(prefix, "-"), tempDir)

	if err := enableIPForward(); err != nil {
		return nil, err
	}
	if err := addServiceBlackhole(prefix); err != nil {
		return nil, err
	}
	if err := c.startControlPlane(assets, crdDir, timeout, opts.Output); err != nil {
		return nil, err
	}
	if err := c.waitCRDsEstablished(ctx); err != nil {
		return nil, err
	}
	for _, ns := range []string{SystemNamespace, SecretsNamespace} {
		if err := c.ensureNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	first := &Node{Name: nodeName, InternalIP: GatewayIP, PodCIDR: PodCIDR, side: rootSide(), ipam: &c.ipam}
	if err := c.registerNode(ctx, first); err != nil {
		return nil, err
	}
	c.nodes = []*Node{first}
	logf("cluster %s: node %s registered, pod CIDR %s, gateway %s", strings.TrimSuffix(prefix, "-"), nodeName, PodCIDR, GatewayIP)
	for i := 2; i <= opts.Nodes; i++ {
		n, err := c.addNode(ctx, fmt.Sprintf("%s-%d", nodeName, i))
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.nodes = append(c.nodes, n)
		c.mu.Unlock()
	}
	return c, nil
}

// claim records this process as the owner of a fresh prefix and creates the
// cluster's temporary directory, whose name carries the prefix.
func claim() (prefix, tempDir string, err error) {
	// The temporary directory's name must be in the owner record before it
	// exists, so claim the prefix first with a provisional record, then
	// create the directory under the name recorded.
	base := os.TempDir()
	prefix, err = claimPrefix(func(p string) string {
		return filepath.Join(base, tempDirPattern+strings.TrimSuffix(p, "-"))
	})
	if err != nil {
		return "", "", fmt.Errorf("claiming a cluster prefix: %w", err)
	}
	tempDir = filepath.Join(base, tempDirPattern+strings.TrimSuffix(prefix, "-"))
	// A directory of that name can only be a dead cluster's whose state was
	// lost: the prefix is ours now.
	_ = os.RemoveAll(tempDir)
	if err := os.Mkdir(tempDir, 0o700); err != nil {
		_ = removeAll(prefix, "")
		return "", "", fmt.Errorf("creating temporary directory: %w", err)
	}
	return prefix, tempDir, nil
}

// startControlPlane runs etcd and kube-apiserver through envtest, with
// their state in the cluster's temporary directory, installs the CRDs and
// writes the kubeconfig file.
func (c *Cluster) startControlPlane(assets, crdDir string, timeout time.Duration, out io.Writer) error {
	etcdDir := filepath.Join(c.tempDir, "etcd")
	certDir := filepath.Join(c.tempDir, "apiserver")
	for _, d := range []string{etcdDir, certDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: timeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if crdDir != "" {
		env.CRDDirectoryPaths = []string{crdDir}
	} else {
		crds, err := crd.CRDs()
		if err != nil {
			return fmt.Errorf("loading embedded CRDs: %w", err)
		}
		env.CRDs = crds
	}
	// Our own directories, not envtest's random ones, so that the owner
	// record names them and a dead cluster's processes can be found.
	// Explicit binary paths: envtest would prefer $KUBEBUILDER_ASSETS over
	// BinaryAssetsDirectory, and Options.AssetsDir must win.
	env.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, "etcd"), DataDir: etcdDir, Out: out, Err: out}
	api := env.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(assets, "kube-apiserver")
	api.CertDir = certDir
	api.Out, api.Err = out, out
	// envtest defaults to RBAC too; say so, so that the RBAC tests cannot
	// silently pass against AlwaysAllow if that default ever changes.
	api.Configure().Set("authorization-mode", "RBAC")
	api.Configure().Set("service-cluster-ip-range", ServiceCIDR.String())
	// No endpoints for the kubernetes Service: envtest's apiserver
	// advertises an address off this machine, where the datapath would
	// send a pod's connection to 10.96.0.1. Without a backend it is
	// refused instead. (CoreDNS reaches the apiserver through its relay.)
	api.Configure().Set("endpoint-reconciler-type", "none")
	c.env = env

	c.logf("starting etcd and kube-apiserver from %s", assets)
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, &rest.Config{QPS: 200, Burst: 400})
	if err != nil {
		return fmt.Errorf("provisioning the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("building the kubeconfig: %w", err)
	}
	if err := os.WriteFile(c.kubeconfig, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	c.config = admin.Config()
	cs, err := kubernetes.NewForConfig(c.config)
	if err != nil {
		return fmt.Errorf("building a clientset: %w", err)
	}
	c.clientset = cs
	return nil
}

// waitCRDsEstablished waits until every installed CRD reports Established.
func (c *Cluster) waitCRDsEstablished(ctx context.Context) error {
	cs, err := apiextensionsclient.NewForConfig(c.config)
	if err != nil {
		return fmt.Errorf("building an apiextensions client: %w", err)
	}
	for _, want := range c.env.CRDs {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				return false, client404(err)
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CRD %s to be established: %w", want.Name, err)
		}
	}
	return nil
}

// client404 turns NotFound into "keep polling" and keeps other errors.
func client404(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// ensureNamespace creates namespace ns unless it exists.
func (c *Cluster) ensureNamespace(ctx context.Context, ns string) error {
	_, err := c.clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

// registerNode creates the Node object for n and sets its status as a
// kubelet would: Ready, with n's InternalIP and podCIDR.
func (c *Cluster) registerNode(ctx context.Context, n *Node) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				"kubernetes.io/hostname": n.Name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     goruntime.GOARCH,
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
	}
	created, err := c.clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating node %s: %w", n.Name, err)
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "LocalClusterReady",
			Message:            "node registered by internal/localcluster",
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.InternalIP.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: "linux",
			Architecture:    goruntime.GOARCH,
			KernelVersion:   kernelRelease(),
			KubeletVersion:  "localcluster",
		},
	}
	if _, err := c.clientset.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting status of node %s: %w", n.Name, err)
	}
	return nil
}

// kernelRelease returns the running kernel's release, or "" if unknown.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// Prefix returns the cluster's name prefix ("pcXXXX-"), which starts the
// name of every network namespace and link it makes.
func (c *Cluster) Prefix() string { return c.prefix }

// NodeName returns the name of the Node object for this machine.
func (c *Cluster) NodeName() string { return c.nodeName }

// TempDir returns the cluster's temporary directory (etcd data,
// certificates, kubeconfig); Stop removes it.
func (c *Cluster) TempDir() string { return c.tempDir }

// KubeconfigPath returns the kubeconfig file of a system:masters user.
func (c *Cluster) KubeconfigPath() string { return c.kubeconfig }

// RESTConfig returns a copy of the system:masters user's client config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Clientset returns a client for the system:masters user.
func (c *Cluster) Clientset() kubernetes.Interface { return c.clientset }

// Environment returns the envtest environment behind the cluster, for
// AddUser and for the CRDs it installed. Do not Stop it: call Cluster.Stop.
func (c *Cluster) Environment() *envtest.Environment { return c.env }

// Stop deletes every pod's network namespace and veth pair (killing the
// processes left in them), stops kube-apiserver and etcd, kills any other
// process that names the cluster's temporary directory (a client or
// operator started with its kubeconfig), and removes the temporary and
// state directories. Pod objects are not deleted one by one: they go with
// etcd's data. Stop may be called more than once, on a nil Cluster and after
// a partial Start; later calls return the first call's result.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return c.stopErr
	}
	c.stopped = true
	var errs []error
	c.dns.stop()
	for key, p := range c.pods {
		if p != nil {
			if err := unplumbPod(p.plumbing); err != nil {
				errs = append(errs, fmt.Errorf("removing pod %s: %w", key, err))
			}
		}
		delete(c.pods, key)
	}
	// Extra nodes after their pods: a pod's host veth is in its node.
	for _, n := range c.nodes {
		if err := n.remove(); err != nil {
			errs = append(errs, fmt.Errorf("removing node %s: %w", n.Name, err))
		}
	}
	c.nodes = nil
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
		}
	}
	// Whatever is left with the prefix: pods being added concurrently,
	// processes that did not stop.
	if err := removeAll(c.prefix, c.tempDir); err != nil {
		errs = append(errs, err)
	}
	c.stopErr = errors.Join(errs...)
	if c.stopErr != nil {
		c.stopErr = fmt.Errorf("stopping cluster %s: %w", strings.TrimSuffix(c.prefix, "-"), c.stopErr)
	}
	c.logf("cluster %s stopped", strings.TrimSuffix(c.prefix, "-"))
	return c.stopErr
}

// allocator hands out pod addresses in order. Addresses are not reused
// within one cluster (65,000 pods is plenty for a demo); between clusters
// the /32 route is the lease, see plumbPod.
type allocator struct {
	mu   sync.Mutex
	next netip.Addr
	// pool is an extra node's pod /24; the zero value means the first
	// node's: PodCIDR without the extra nodes' NodePodRange.
	pool netip.Prefix
}

// alloc returns the next candidate address, skipping the gateway and the
// .0 and .255 addresses; ok is false when the pool is exhausted.
func (a *allocator) alloc() (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pool := a.pool
	if !pool.IsValid() {
		pool = PodCIDR
	}
	for pool.Contains(a.next) {
		ip := a.next
		a.next = a.next.Next()
		if !a.pool.IsValid() && NodePodRange.Contains(ip) && !NodeAddrRange.Contains(ip) {
			a.next = NodeAddrRange.Addr()
			continue
		}
		b := ip.As4()
		if ip == GatewayIP || b[3] == 0 || b[3] == 255 {
			continue
		}
		return ip, true
	}
	return netip.Addr{}, false
}

// assetsDir resolves Options.AssetsDir and checks that the binaries exist.
func assetsDir(dir string) (string, error) {
	from := "Options.AssetsDir"
	if dir == "" {
		dir, from = os.Getenv("KUBEBUILDER_ASSETS"), "KUBEBUILDER_ASSETS"
	}
	if dir == "" {
		from = "bin/k8s/*"
		if root, ok := moduleRoot(); ok {
			matches, _ := filepath.Glob(filepath.Join(root, "bin", "k8s", "*", "kube-apiserver"))
			sort.Strings(matches)
			if n := len(matches); n > 0 {
				dir = filepath.Dir(matches[n-1])
			}
		}
	}
	if dir == "" {
		return "", fmt.Errorf("%w: set KUBEBUILDER_ASSETS or run make tools", ErrAssetsMissing)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		p := filepath.Join(dir, bin)
		if info, err := os.Stat(p); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: no executable %s (from %s); run make tools", ErrAssetsMissing, p, from)
		}
	}
	return dir, nil
}

// crdDir resolves Options.CRDDir; "" means the embedded manifests.
func crdDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if root, ok := moduleRoot(); ok {
		d := filepath.Join(root, "config", "crd", "bases")
		if _, err := os.Stat(d); err == nil {
			return d, nil
		}
	}
	return "", nil
}

// moduleRoot finds the repository by walking up from the working directory
// to the go.mod of portcullis.dev/portcullis.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module portcullis.dev/portcullis\n")) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
