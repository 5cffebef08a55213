package localcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/clientcmd"

	"portcullis.dev/portcullis/internal/netnstest"
)

// Addresses of the extra nodes (Options.Nodes > 1). Both lie in PodCIDR:
// the cluster never uses addresses outside 10.244.0.0/16 and 10.96.0.0/12.
var (
	// NodeAddrRange holds the extra nodes' InternalIPs, on their uplinks.
	// The first node's pods may take addresses here too: the /32 route in
	// the root namespace is the lease of both.
	NodeAddrRange = netip.MustParsePrefix("10.244.255.0/24")
	// NodePodRange holds the extra nodes' pod CIDRs, one /24 each
	// (10.244.193.0/24 to 10.244.254.0/24); the first node's pods never
	// take an address of it but those of NodeAddrRange.
	NodePodRange = netip.MustParsePrefix("10.244.192.0/18")
)

// ErrNoNodeRange: every pod /24 of NodePodRange, or every address of
// NodeAddrRange, is taken by this or other clusters.
var ErrNoNodeRange = errors.New("no free node address or pod /24 in " + NodePodRange.String())

// uplinkName is the name of an extra node's link to the underlay, inside
// the node's namespace.
const uplinkName = "eth0"

// Node is one node of the cluster: the first is this machine's root
// network namespace, every other one a network namespace of its own.
type Node struct {
	// Name of the Node object.
	Name string
	// InternalIP is the node's address: on every host veth of its pods
	// (their gateway) and, for an extra node, on its uplink.
	InternalIP netip.Addr
	// PodCIDR is the node's podCIDR: 10.244.0.0/16 for the first node (so
	// that the single-node cluster stays as it was; the extra nodes' /24s
	// are carved out of it), a /24 of NodePodRange for the others.
	PodCIDR netip.Prefix
	// NetNS is the node's network namespace under /run/netns; "" for the
	// first node, which is the root namespace.
	NetNS string
	// Uplink is the root namespace's end of the extra node's veth pair to
	// the underlay (the node's own end is eth0 in NetNS); "" for the first
	// node.
	Uplink string
	// BPFFS is a bpf filesystem mounted for this node's agent alone; ""
	// for the first node, whose agent's bpffs the caller chooses.
	BPFFS string
	// Kubeconfig reaches the apiserver from inside the node's namespace
	// (through a relay on the node's loopback for an extra node) as a
	// system:masters user.
	Kubeconfig string

	side  hostSide
	ipam  *allocator
	ns    netns.NsHandle
	relay *relay
}

// Command returns a command that runs argv on the node: directly for the
// first node, with `ip netns exec NETNS` for the others. A process still
// in an extra node's namespace when the cluster stops is killed.
func (n *Node) Command(argv ...string) *exec.Cmd {
	return n.CommandContext(context.Background(), argv...)
}

// CommandContext is Command with a context that kills the process.
func (n *Node) CommandContext(ctx context.Context, argv ...string) *exec.Cmd {
	if n.NetNS == "" {
		return exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NetNS}, argv...)...)
}

// Nodes returns the cluster's nodes, the first node first.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Uplinks returns the interfaces of n's namespace that lead to the other
// nodes, where an agent on n attaches its program for their traffic: eth0
// for an extra node; for the first node (the router of the underlay) the
// root ends of every extra node's uplink.
func (c *Cluster) Uplinks(n *Node) []string {
	if n.NetNS != "" {
		return []string{uplinkName}
	}
	var out []string
	for _, o := range c.Nodes() {
		if o.Uplink != "" {
			out = append(out, o.Uplink)
		}
	}
	return out
}

// nodeFor returns the node called name, the first node for "".
func (c *Cluster) nodeFor(name string) (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, ErrStopped
	}
	for _, n := range c.nodes {
		if n.Name == name || name == "" {
			return n, nil
		}
	}
	return nil, fmt.Errorf("PodSpec.Node %q: not a node of this cluster", name)
}

// nodeNetnsName is an extra node's namespace: prefix, "_", the node's
// name (no pod's namespace name holds "_", so it cannot collide).
func (c *Cluster) nodeNetnsName(name string) string {
	n := c.prefix + "_" + name
	if len(n) > maxNetnsName {
		sum := sha256.Sum256([]byte("node:" + name))
		n = c.prefix + "_" + hex.EncodeToString(sum[:])
	}
	return n
}

// nodeVethName is the root end of an extra node's uplink: prefix and 8
// hex digits of a hash that no pod's key can produce.
func (c *Cluster) nodeVethName(name string) string {
	sum := sha256.Sum256([]byte("node:" + name))
	return c.prefix + hex.EncodeToString(sum[:])[:8]
}

// nodeDir is where an extra node's files live (its bpffs mount point).
func (c *Cluster) nodeDir(name string) string {
	return filepath.Join(stateDirOf(c.prefix), "nodes", name)
}

// addNode makes extra node name: its namespace with forwarding on and a
// blackhole for ServiceCIDR, a veth pair to the root namespace (the
// underlay, routed by the root namespace as a router would), a leased
// InternalIP and pod /24 routed to it, a bpffs, an apiserver relay with a
// kubeconfig, and a Ready Node object. On error everything is removed.
func (c *Cluster) addNode(ctx context.Context, name string) (_ *Node, err error) {
	n := &Node{Name: name, NetNS: c.nodeNetnsName(name), Uplink: c.nodeVethName(name), ns: netns.None()}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("adding node %s: %w", name, err), n.remove())
		}
	}()
	if n.ns, err = createNamedNetns(n.NetNS); err != nil {
		return nil, err
	}
	root := rootSide()
	if err := root.h.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.Uplink},
		PeerName:      uplinkName,
		PeerNamespace: netlink.NsFd(int(n.ns)),
	}); err != nil {
		return nil, fmt.Errorf("creating veth pair %s/%s: %w", n.Uplink, uplinkName, err)
	}
	up, err := root.h.LinkByName(n.Uplink)
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", n.Uplink, err)
	}
	if err := root.h.AddrAdd(up, &netlink.Addr{IPNet: hostPrefix(GatewayIP), Flags: unix.IFA_F_NOPREFIXROUTE}); err != nil {
		return nil, fmt.Errorf("adding %s to %s: %w", GatewayIP, n.Uplink, err)
	}
	if err := root.h.LinkSetUp(up); err != nil {
		return nil, fmt.Errorf("setting %s up: %w", n.Uplink, err)
	}
	// Leases, as for pods: the /32 route of the node's address and the
	// /24 route of its pods fail with EEXIST when another cluster holds
	// them, and go away with the link.
	if n.InternalIP, err = leaseRoute(NodeAddrRange, 32, func(p netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: up.Attrs().Index, Dst: prefixNet(p), Src: GatewayIP.AsSlice(), Scope: netlink.SCOPE_LINK}
	}); err != nil {
		return nil, err
	}
	var first netip.Addr
	if first, err = leaseRoute(NodePodRange, 24, func(p netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: up.Attrs().Index, Dst: prefixNet(p), Gw: n.InternalIP.AsSlice(), Src: GatewayIP.AsSlice()}
	}); err != nil {
		return nil, err
	}
	n.PodCIDR = netip.PrefixFrom(first, 24)
	n.ipam = &allocator{next: first, pool: n.PodCIDR}
	if err := configureEth0(n.ns, n.NetNS, n.InternalIP, GatewayIP); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in netns %s: %w", n.NetNS, err)
	}
	n.side = hostSide{h: h, gw: n.InternalIP}
	if err := h.RouteAdd(blackholeRoute(0)); err != nil {
		return nil, fmt.Errorf("adding the Service blackhole in %s: %w", n.NetNS, err)
	}
	if err := netnstest.Run(n.ns, enableIPForward); err != nil {
		return nil, fmt.Errorf("in netns %s: %w", n.NetNS, err)
	}

	dir := c.nodeDir(name)
	bpffs := filepath.Join(dir, "bpffs")
	if err := os.MkdirAll(bpffs, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", bpffs, err)
	}
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return nil, fmt.Errorf("mounting bpffs on %s: %w", bpffs, err)
	}
	n.BPFFS = bpffs
	if n.relay, err = startRelay(n.NetNS, c.config.Host); err != nil {
		return nil, err
	}
	n.Kubeconfig = filepath.Join(c.tempDir, "node-"+name+".kubeconfig")
	if err := c.writeNodeKubeconfig(n.Kubeconfig, n.relay.addr); err != nil {
		return nil, err
	}
	if err := c.registerNode(ctx, n); err != nil {
		return nil, err
	}
	c.logf("node %s: %s in netns %s (uplink %s), pod CIDR %s, bpffs %s", name, n.InternalIP, n.NetNS, n.Uplink, n.PodCIDR, n.BPFFS)
	return n, nil
}

// leaseRoute adds route(p) for the first prefix p of length bits in pool
// whose route is not taken (EEXIST), skipping the network's first and last
// block (.0 and .255 of a /32 lease) and returns p's address.
func leaseRoute(pool netip.Prefix, bits int, route func(netip.Prefix) *netlink.Route) (netip.Addr, error) {
	step := uint32(1) << (32 - bits)
	base := pool.Masked().Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - pool.Bits())
	for off := step; off+step < size; off += step {
		v := start + off
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		err := netlink.RouteAdd(route(netip.PrefixFrom(a, bits)))
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if err != nil {
			return netip.Addr{}, fmt.Errorf("adding route to %s/%d: %w", a, bits, err)
		}
		return a, nil
	}
	return netip.Addr{}, ErrNoNodeRange
}

// prefixNet returns p as a net.IPNet.
func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// writeNodeKubeconfig writes the admin kubeconfig with the server at
// relayAddr, an address of the node's loopback.
func (c *Cluster) writeNodeKubeconfig(path string, relayAddr netip.AddrPort) error {
	cfg, err := clientcmd.LoadFromFile(c.kubeconfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.kubeconfig, err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + relayAddr.String()
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// remove tears an extra node down: its relay, the processes in its
// namespace, its bpffs, its uplink (with the routes leased through it) and
// its namespace. The Node object goes with etcd's data. Pods on it are
// removed before.
func (n *Node) remove() error {
	if n.relay != nil {
		n.relay.close()
	}
	var errs []error
	if n.NetNS != "" {
		killNetnsProcesses(n.NetNS)
	}
	if n.BPFFS != "" {
		if err := unix.Unmount(n.BPFFS, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", n.BPFFS, err))
		}
	}
	if n.Uplink != "" {
		if err := deleteLink(n.Uplink); err != nil {
			errs = append(errs, err)
		}
	}
	if n.NetNS != "" { // the first node's handle and namespace are the process's
		if n.side.h != nil {
			n.side.h.Close()
		}
		if n.ns.IsOpen() {
			_ = n.ns.Close()
		}
		if err := deleteNamedNetns(n.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountUnder detaches every mount below dir (the extra nodes' bpffs),
// deepest first, so that dir can be removed.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	var errs []error
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", points[i], err))
		}
	}
	return errors.Join(errs...)
}
