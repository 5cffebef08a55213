package localcluster

// Network plumbing. It uses github.com/vishvananda/netlink and
// github.com/vishvananda/netns rather than the ip command: errors come back
// as typed errnos (EEXIST on a taken pod address is how concurrent clusters
// share 10.244.0.0/16 without a lock file), a pod is plumbed in a few
// milliseconds without forking a dozen processes, and the pod side is
// configured through a netlink handle opened inside the pod's namespace, so
// only namespace creation ever switches a thread. Programs are still run
// inside a pod with `ip netns exec`, which also gives them the pod's /sys and
// /etc/netns files.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// podIfName is the name of the pod side of the veth pair, inside the pod.
const podIfName = "eth0"

// netnsNames lists the named network namespaces.
func netnsNames() []string {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// prepareNetnsDir makes netnsDir a shared mount point, as `ip netns add`
// does, so namespaces mounted there are seen from every mount namespace
// (including the ones `ip netns exec` creates).
func prepareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", netnsDir, err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then share it.
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("making %s shared: %w", netnsDir, err)
	}
	return nil
}

// createNamedNetns creates a network namespace bind-mounted at
// /run/netns/NAME, like `ip netns add NAME`, and returns a handle to it that
// the caller closes. On error nothing is left behind.
func createNamedNetns(name string) (handle netns.NsHandle, err error) {
	if err := prepareNetnsDir(); err != nil {
		return netns.None(), err
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return netns.None(), fmt.Errorf("creating netns mount point: %w", err)
	}
	_ = f.Close()
	defer func() {
		if err != nil {
			_ = deleteNamedNetns(name)
		}
	}()

	// unshare(CLONE_NEWNET) moves the calling thread into a new namespace.
	// Do it on a goroutine of its own with its thread locked, and move the
	// thread back before unlocking it. If moving back fails the goroutine
	// ends still locked, and the Go runtime then terminates that thread
	// instead of reusing it in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(self, path, "none", unix.MS_BIND, "")
		if mountErr != nil {
			mountErr = fmt.Errorf("bind-mounting netns to %s: %w", path, mountErr)
		}
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(mountErr, fmt.Errorf("returning to the original netns: %w", err))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- mountErr
	}()
	if err := <-errc; err != nil {
		return netns.None(), err
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("opening %s: %w", path, err)
	}
	return h, nil
}

// deleteNamedNetns unmounts and removes /run/netns/NAME, like `ip netns
// delete NAME`. A namespace that does not exist is not an error.
func deleteNamedNetns(name string) error {
	path := filepath.Join(netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// killNetnsProcesses sends SIGKILL to every process whose network namespace
// is /run/netns/NAME (what `ip netns pids NAME` lists) and waits for them.
func killNetnsProcesses(name string) {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &want); err != nil {
		return
	}
	var pids []int
	forEachProcess(func(pid int) {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	})
	killAndWait(pids)
}

// rootLinkNames lists the links of the root network namespace.
func rootLinkNames() ([]string, error) {
	var links []netlink.Link
	var err error
	for range 3 {
		links, err = netlink.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

// deleteLinksWithPrefix deletes the root namespace's links whose name starts
// with prefix. Deleting one end of a veth pair deletes both, with their
// addresses and routes.
func deleteLinksWithPrefix(prefix string) error {
	names, err := rootLinkNames()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			if err := deleteLink(n); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// deleteLink deletes the root namespace's link NAME; a missing link is not
// an error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting link %s: %w", name, err)
	}
	return nil
}

// enableIPForward switches on IPv4 forwarding, which pod-to-pod traffic
// through the root namespace needs. It is left on at teardown: other
// clusters, or the machine's owner, may rely on it too.
func enableIPForward() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling net.ipv4.ip_forward: %w", err)
	}
	return nil
}

// hostPrefix returns addr as a /32 net.IPNet.
func hostPrefix(addr netip.Addr) *net.IPNet {
	return &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// plumbing is the network side of one pod.
type plumbing struct {
	netns    string
	hostVeth string
	ip       netip.Addr
	side     hostSide
}

// hostSide is where a pod's host veth lives: the root namespace for the
// first node, a node's namespace for the others. gw is the address every
// host veth of that side carries (the node's InternalIP) and the pods'
// default gateway.
type hostSide struct {
	h  *netlink.Handle
	gw netip.Addr
}

// rootSide is the first node's side: netlink in the root namespace (the
// zero Handle uses the calling thread's namespace, and only locked
// threads ever leave the root one).
func rootSide() hostSide { return hostSide{h: &netlink.Handle{}, gw: GatewayIP} }

// plumbPod plumbs a pod of the first node: plumbPodOn the root side.
func plumbPod(nsName, hostVeth string, alloc func() (netip.Addr, bool)) (plumbing, error) {
	return plumbPodOn(rootSide(), nsName, hostVeth, alloc)
}

// plumbPodOn creates the network namespace nsName and the veth pair
// hostVeth (on side: the root namespace or a node's) / eth0 (pod), takes
// the first free address that alloc offers and routes it. alloc returns
// ok=false when the pool is exhausted. On error whatever was made is
// removed again.
func plumbPodOn(side hostSide, nsName, hostVeth string, alloc func() (netip.Addr, bool)) (p plumbing, err error) {
	p = plumbing{netns: nsName, hostVeth: hostVeth, side: side}
	ns, err := createNamedNetns(nsName)
	if err != nil {
		return p, fmt.Errorf("creating netns %s: %w", nsName, err)
	}
	defer ns.Close()
	defer func() {
		if err != nil {
			_ = side.deleteLink(hostVeth)
			_ = deleteNamedNetns(nsName)
		}
	}()

	// The peer is created directly inside the pod's namespace: the name
	// eth0 never exists on the host side, where it may be taken.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostVeth},
		PeerName:      podIfName,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := side.h.LinkAdd(veth); err != nil {
		return p, fmt.Errorf("creating veth pair %s/%s: %w", hostVeth, podIfName, err)
	}
	host, err := side.h.LinkByName(hostVeth)
	if err != nil {
		return p, fmt.Errorf("finding %s: %w", hostVeth, err)
	}
	gw := &netlink.Addr{IPNet: hostPrefix(side.gw), Flags: unix.IFA_F_NOPREFIXROUTE}
	if err := side.h.AddrAdd(host, gw); err != nil {
		return p, fmt.Errorf("adding %s to %s: %w", side.gw, hostVeth, err)
	}
	if err := side.h.LinkSetUp(host); err != nil {
		return p, fmt.Errorf("setting %s up: %w", hostVeth, err)
	}

	// The /32 route on the host side doubles as the address lease:
	// adding it fails with EEXIST when another cluster's pod has the
	// address, and it goes away with the link.
	for {
		ip, ok := alloc()
		if !ok {
			return p, ErrNoAddresses
		}
		err := side.h.RouteAdd(&netlink.Route{
			LinkIndex: host.Attrs().Index,
			Dst:       hostPrefix(ip),
			Src:       side.gw.AsSlice(),
			Scope:     netlink.SCOPE_LINK,
		})
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if err != nil {
			return p, fmt.Errorf("adding route to %s via %s: %w", ip, hostVeth, err)
		}
		p.ip = ip
		break
	}
	if err := configureEth0(ns, nsName, p.ip, side.gw); err != nil {
		return p, err
	}
	return p, nil
}

// configureEth0 sets up the namespace side of a veth pair: lo up, addr/32
// on eth0, a link route to gw and a default route through it.
func configureEth0(ns netns.NsHandle, nsName string, addr, gw netip.Addr) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("opening netlink in netns %s: %w", nsName, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo in %s: %w", nsName, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("setting lo up in %s: %w", nsName, err)
	}
	eth, err := h.LinkByName(podIfName)
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", podIfName, nsName, err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: hostPrefix(addr), Flags: unix.IFA_F_NOPREFIXROUTE}); err != nil {
		return fmt.Errorf("adding %s to %s in %s: %w", addr, podIfName, nsName, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("setting %s up in %s: %w", podIfName, nsName, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: hostPrefix(gw), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("adding gateway route in %s: %w", nsName, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		return fmt.Errorf("adding default route in %s: %w", nsName, err)
	}
	return nil
}

// deleteLink deletes link NAME on this side; a missing link is not an
// error.
func (s hostSide) deleteLink(name string) error {
	l, err := s.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	if err := s.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting link %s: %w", name, err)
	}
	return nil
}

// unplumbPod kills the processes left in the pod's namespace, deletes its
// veth pair (with its route) and its namespace.
func unplumbPod(p plumbing) error {
	killNetnsProcesses(p.netns)
	side := p.side
	if side.h == nil {
		side = rootSide()
	}
	return errors.Join(side.deleteLink(p.hostVeth), deleteNamedNetns(p.netns), removeNetnsEtc(p.netns))
}
