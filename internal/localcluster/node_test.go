package localcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMultiNode starts three nodes, puts a pod on each, and checks what a
// kubelet and the network would give: Node objects with their address and
// pod CIDR, pods bound to their node with addresses from its CIDR, TCP
// between pods of every pair of nodes and from the root namespace (the
// first node) to a pod of another node, a bpffs per extra node, a
// kubeconfig that reaches the apiserver from inside a node; and that Stop
// leaves nothing behind.
func TestMultiNode(t *testing.T) {
	requireRoot(t)
	before := takeSnapshot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Logf: t.Logf, Nodes: 3})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()

	nodes := c.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	if nodes[0].NetNS != "" || nodes[0].InternalIP != GatewayIP || nodes[0].PodCIDR != PodCIDR {
		t.Errorf("first node %+v: want the root namespace, %s, %s", nodes[0], GatewayIP, PodCIDR)
	}
	cidrs := map[netip.Prefix]bool{}
	for _, n := range nodes[1:] {
		if !NodeAddrRange.Contains(n.InternalIP) || n.PodCIDR.Bits() != 24 || !NodePodRange.Contains(n.PodCIDR.Addr()) || cidrs[n.PodCIDR] {
			t.Errorf("node %s: address %s, pod CIDR %s: want an address of %s and a /24 of %s of its own", n.Name, n.InternalIP, n.PodCIDR, NodeAddrRange, NodePodRange)
		}
		cidrs[n.PodCIDR] = true
		var st unix.Statfs_t
		if err := unix.Statfs(n.BPFFS, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
			t.Errorf("node %s: %s is not a bpffs (%v)", n.Name, n.BPFFS, err)
		}
		obj, err := c.Clientset().CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.Status.Addresses) == 0 || obj.Status.Addresses[0].Address != n.InternalIP.String() || obj.Spec.PodCIDR != n.PodCIDR.String() {
			t.Errorf("Node object %s: addresses %v, podCIDR %s; want InternalIP %s, podCIDR %s", n.Name, obj.Status.Addresses, obj.Spec.PodCIDR, n.InternalIP, n.PodCIDR)
		}
		// A process inside the node reaches the apiserver with the node's
		// kubeconfig (what an agent there needs).
		kubectl := filepath.Join(filepath.Dir(c.Environment().ControlPlane.APIServer.Path), "kubectl")
		if _, err := os.Stat(kubectl); err == nil {
			out, err := n.CommandContext(ctx, kubectl, "--kubeconfig", n.Kubeconfig, "get", "node", n.Name, "-o", "name").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "node/"+n.Name {
				t.Errorf("kubectl inside node %s: %v: %s", n.Name, err, out)
			}
		}
	}
	if _, err := c.AddPod(ctx, PodSpec{Name: "nowhere", Node: "no-such-node"}); err == nil || !strings.Contains(err.Error(), "no-such-node") {
		t.Errorf("AddPod on an unknown node: %v, want an error naming it", err)
	}

	pods := make([]*Pod, len(nodes))
	for i, n := range nodes {
		spec := PodSpec{Name: fmt.Sprintf("p%d", i), Node: n.Name}
		if i == 0 {
			spec.Node = "" // the default: the first node
		}
		p, err := c.AddPod(ctx, spec)
		if err != nil {
			t.Fatalf("AddPod on %s: %v", n.Name, err)
		}
		pods[i] = p
		if p.Node != n.Name || p.Object.Spec.NodeName != n.Name || p.Object.Status.HostIP != n.InternalIP.String() {
			t.Errorf("pod %s: node %s, nodeName %s, hostIP %s; want %s, %s", p.Name, p.Node, p.Object.Spec.NodeName, p.Object.Status.HostIP, n.Name, n.InternalIP)
		}
		if i > 0 && !n.PodCIDR.Contains(p.IP) {
			t.Errorf("pod %s: %s outside its node's %s", p.Name, p.IP, n.PodCIDR)
		}
		if i == 0 && NodePodRange.Contains(p.IP) && !NodeAddrRange.Contains(p.IP) {
			t.Errorf("pod %s of the first node: %s inside the extra nodes' range", p.Name, p.IP)
		}
		addr := netip.AddrPortFrom(p.IP, 7000).String()
		t.Cleanup(startHelper(t, p, addr))
	}
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			addr := netip.AddrPortFrom(to.IP, 7000).String()
			got, err := bashConnect(ctx, from, addr)
			if want := "hello from " + addr; err != nil || got != want {
				t.Errorf("%s (%s) -> %s (%s): %q, %v; want %q", from.Name, from.Node, to.Name, to.Node, got, err, want)
			}
		}
	}
	for _, to := range pods[1:] {
		addr := netip.AddrPortFrom(to.IP, 7000).String()
		if got, err := goConnect(addr); err != nil || got != "hello from "+addr {
			t.Errorf("root namespace -> %s on %s: %q, %v", to.Name, to.Node, got, err)
		}
	}
	// A node's pod deleted goes with its veth in the node's namespace.
	if err := c.DeletePod(ctx, "default", pods[2].Name); err != nil {
		t.Errorf("DeletePod on node %s: %v", pods[2].Node, err)
	}

	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if left := takeSnapshot(t).newSince(before); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	for _, n := range nodes[1:] {
		if _, err := os.Stat(n.BPFFS); err == nil {
			t.Errorf("node %s: %s still there", n.Name, n.BPFFS)
		}
	}
}

// TestMultiNodeLeftovers kills nobody but lies about the owner: a cluster
// of two nodes whose owner record names a process that is gone is a dead
// cluster's leftovers, and CleanLeftovers removes all of it, the extra
// node's namespace, uplink (with its leased routes) and bpffs included.
func TestMultiNodeLeftovers(t *testing.T) {
	requireRoot(t)
	before := takeSnapshot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Logf: t.Logf, Nodes: 2})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The real cleanup has nothing left to do after CleanLeftovers; its
	// error (the control plane is already gone) is not the point here.
	defer func() { _ = c.Stop() }()
	n := c.Nodes()[1]
	if _, err := c.AddPod(ctx, PodSpec{Name: "p", Node: n.Name}); err != nil {
		t.Fatal(err)
	}
	// An exited child's PID with this process's start time: not alive.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	o, ok := readOwner(c.Prefix())
	if !ok {
		t.Fatal("no owner record")
	}
	o.PID = gone.Process.Pid
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDirOf(c.Prefix()), stateFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CleanLeftovers(); err != nil {
		t.Errorf("CleanLeftovers: %v", err)
	}
	if left := takeSnapshot(t).newSince(before); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: prefixNet(n.PodCIDR)}, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) > 0 {
		t.Errorf("route to %s left: %v", n.PodCIDR, routes)
	}
	if _, err := os.Stat(n.BPFFS); err == nil {
		t.Errorf("%s still there", n.BPFFS)
	}
}
