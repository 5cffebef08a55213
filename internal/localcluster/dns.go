package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeDNSIP is the ClusterIP of kube-system/kube-dns, every pod's
// nameserver, as kubeadm sets it up.
var KubeDNSIP = netip.MustParseAddr("10.96.0.10")

// ClusterDomain is the cluster's DNS domain.
const ClusterDomain = "cluster.local"

// resolvConf is a pod's /etc/resolv.conf as the kubelet writes it for
// dnsPolicy ClusterFirst. namespace is empty for a host (AddHost): it
// searches nothing but may still ask cluster DNS, never the machine's own
// resolver.
func resolvConf(namespace string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "nameserver %s\n", KubeDNSIP)
	if namespace != "" {
		fmt.Fprintf(&b, "search %s.svc.%s svc.%s %s\n", namespace, ClusterDomain, ClusterDomain, ClusterDomain)
	}
	b.WriteString("options ndots:5\n")
	return b.String()
}

// netnsEtcDir is where `ip netns exec NAME` finds the files it bind-mounts
// over /etc (resolv.conf) for processes in namespace NAME.
const netnsEtcDir = "/etc/netns"

// writeResolvConf makes processes started in the namespace with `ip netns
// exec` read conf as /etc/resolv.conf.
func writeResolvConf(nsName, conf string) error {
	dir := filepath.Join(netnsEtcDir, nsName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("writing %s/resolv.conf: %w", dir, err)
	}
	return nil
}

// removeNetnsEtc removes what writeResolvConf wrote.
func removeNetnsEtc(nsName string) error {
	if err := os.RemoveAll(filepath.Join(netnsEtcDir, nsName)); err != nil {
		return fmt.Errorf("removing %s/%s: %w", netnsEtcDir, nsName, err)
	}
	return nil
}

// kubeDNS is the running cluster DNS.
type kubeDNS struct {
	pod   *Pod
	cmd   *exec.Cmd
	relay *relay
	done  chan struct{}
}

// DNS is what StartDNS started.
type DNS struct {
	// Pod is kube-system/coredns.
	Pod *Pod
	// Service is kube-system/kube-dns, at KubeDNSIP.
	Service *corev1.Service
}

// corefile serves cluster.local (and reverse lookups of pods and
// Services) from the apiserver, every other name from a root zone with the
// hosts added with AddHost and nothing else: no forward plugin, so an
// unknown name is NXDOMAIN (the zone's SOA says so authoritatively) and no
// query leaves the machine.
const corefile = `{{cluster}} in-addr.arpa ip6.arpa {
    errors
    health :8080
    ready :8181
    kubernetes {{cluster}} in-addr.arpa ip6.arpa {
        kubeconfig {{kubeconfig}}
        pods insecure
        ttl 5
    }
    cache 5
}
. {
    errors
    file {{hosts}} . {
        reload 1s
    }
}
`

// StartDNS runs the cluster's kube-dns the way kubeadm clusters do:
// CoreDNS (bin/coredns, or $COREDNS) as pod kube-system/coredns (labels
// k8s-app=kube-dns) behind Service kube-system/kube-dns at KubeDNSIP,
// serving cluster.local from the apiserver with its kubernetes plugin and
// the hosts of AddHost by name. It returns once CoreDNS answers. Every pod's
// resolv.conf already names KubeDNSIP; reaching that ClusterIP takes the
// datapath's Service translation. CoreDNS reaches the apiserver through a
// relay on its pod's loopback, standing in for the kubernetes Service.
func (c *Cluster) StartDNS(ctx context.Context) (*DNS, error) {
	bin, err := corednsPath()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	started := c.dns != nil
	c.mu.Unlock()
	if started {
		return nil, errors.New("cluster DNS already started")
	}
	if err := c.ensureNamespace(ctx, "kube-system"); err != nil {
		return nil, err
	}
	if err := c.grantCoreDNS(ctx); err != nil {
		return nil, err
	}
	pod, err := c.AddPod(ctx, PodSpec{
		Namespace: "kube-system", Name: "coredns", ServiceAccount: "coredns",
		Labels: map[string]string{"k8s-app": "kube-dns"},
		Ports: []corev1.ContainerPort{
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("starting cluster DNS: %w", err)
	}
	d := &kubeDNS{pod: pod, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			d.stop()
			_ = c.DeletePod(context.Background(), pod.Namespace, pod.Name)
		}
	}()

	dir := filepath.Join(c.tempDir, "coredns")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	d.relay, err = startRelay(pod.NetNS, c.config.Host)
	if err != nil {
		return nil, fmt.Errorf("starting cluster DNS: %w", err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.writeCoreDNSKubeconfig(kubeconfig, d.relay.addr); err != nil {
		return nil, err
	}
	if err := c.writeHostsFile(); err != nil {
		return nil, err
	}
	conf := strings.NewReplacer("{{cluster}}", ClusterDomain, "{{kubeconfig}}", kubeconfig, "{{hosts}}", c.hostsFile()).Replace(corefile)
	confPath := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", confPath, err)
	}
	log, err := os.Create(filepath.Join(dir, "coredns.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = pod.Command(bin, "-conf", confPath)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { _ = d.cmd.Wait(); _ = log.Close(); close(d.done) }()

	svc, err := c.createKubeDNSService(ctx)
	if err != nil {
		return nil, err
	}
	if err := waitDNSAnswers(ctx, d, netip.AddrPortFrom(pod.IP, 53), filepath.Join(dir, "coredns.log")); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.dns = d
	c.mu.Unlock()
	ok = true
	c.logf("cluster DNS: coredns at %s, Service kube-system/kube-dns at %s", pod.IP, KubeDNSIP)
	return &DNS{Pod: pod, Service: svc}, nil
}

// corednsPath finds the CoreDNS binary: $COREDNS, else bin/coredns of the
// repository.
func corednsPath() (string, error) {
	if p := os.Getenv("COREDNS"); p != "" {
		return p, nil
	}
	if root, ok := moduleRoot(); ok {
		p := filepath.Join(root, "bin", "coredns")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no CoreDNS binary: set $COREDNS or run `make tools` (it builds bin/coredns)")
}

// waitDNSAnswers waits until CoreDNS answers the kubernetes Service's
// name, which proves it has synced with the apiserver.
func waitDNSAnswers(ctx context.Context, d *kubeDNS, server netip.AddrPort, logPath string) error {
	m := new(dns.Msg)
	m.SetQuestion("kubernetes.default.svc."+ClusterDomain+".", dns.TypeA)
	cl := &dns.Client{Timeout: time.Second}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-d.done:
			return false, errors.New("coredns exited")
		default:
		}
		r, _, err := cl.Exchange(m, server.String())
		if err != nil {
			last = err
			return false, nil
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			last = fmt.Errorf("answer %s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("cluster DNS at %s does not answer (%v, last: %v); coredns log:\n%s", server, err, last, out)
	}
	return nil
}

// grantCoreDNS creates the coredns ServiceAccount's access as kubeadm
// does (ClusterRole system:coredns): read Services, EndpointSlices,
// namespaces and pods.
func (c *Cluster) grantCoreDNS(ctx context.Context) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{discoveryv1.GroupName}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "coredns"}},
	}
	rbac := c.clientset.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ClusterRoleBinding %s: %w", binding.Name, err)
	}
	return nil
}

// writeCoreDNSKubeconfig writes a kubeconfig for CoreDNS as the coredns
// ServiceAccount's user, reaching the apiserver at relayAddr.
func (c *Cluster) writeCoreDNSKubeconfig(path string, relayAddr netip.AddrPort) error {
	u, err := c.env.AddUser(envtest.User{Name: "system:serviceaccount:kube-system:coredns", Groups: []string{"system:serviceaccounts"}}, nil)
	if err != nil {
		return fmt.Errorf("provisioning CoreDNS's user: %w", err)
	}
	raw, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("building CoreDNS's kubeconfig: %w", err)
	}
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return fmt.Errorf("reading CoreDNS's kubeconfig: %w", err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + relayAddr.String()
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// createKubeDNSService creates Service kube-system/kube-dns at KubeDNSIP
// in front of the CoreDNS pod.
func (c *Cluster) createKubeDNSService(ctx context.Context) (*corev1.Service, error) {
	return c.AddService(ctx, ServiceSpec{
		Namespace: "kube-system", Name: "kube-dns",
		Labels:    map[string]string{"k8s-app": "kube-dns"},
		Selector:  map[string]string{"k8s-app": "kube-dns"},
		ClusterIP: KubeDNSIP.String(),
		Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("dns-tcp")},
		},
	})
}

// hostsFile is the zone file of names outside the cluster.
func (c *Cluster) hostsFile() string { return filepath.Join(c.tempDir, "coredns", "external.zone") }

// writeHostsFile writes the root zone with an A record for every host of
// AddHost, atomically and with a new serial (CoreDNS checks the serial
// every second). Without cluster DNS there is no file to keep.
func (c *Cluster) writeHostsFile() error {
	dir := filepath.Dir(c.hostsFile())
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	c.mu.Lock()
	var lines []string
	for _, p := range c.pods {
		if p != nil && p.Namespace == "" {
			lines = append(lines, fmt.Sprintf("%s. 5 IN A %s", p.Name, p.IP))
		}
	}
	c.zoneSerial++
	serial := c.zoneSerial
	c.mu.Unlock()
	sort.Strings(lines)
	zone := fmt.Sprintf(". 5 IN SOA ns.dns.%s. hostmaster.%s. %d 60 60 3600 5\n%s\n", ClusterDomain, ClusterDomain, serial, strings.Join(lines, "\n"))
	tmp := c.hostsFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(zone), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, c.hostsFile()); err != nil {
		return fmt.Errorf("writing %s: %w", c.hostsFile(), err)
	}
	return nil
}

// stop ends CoreDNS and the relay.
func (d *kubeDNS) stop() {
	if d == nil {
		return
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if d.relay != nil {
		d.relay.close()
	}
}
