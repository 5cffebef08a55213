// Package netnstest gives tests throwaway network namespaces, a way to run
// code inside one, a node with pods on veths, and raw IP sockets for
// protocols without ports (VRRP, IGMP), for the kernel tests of bpf and
// proxy.
package netnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// New creates an anonymous network namespace, closed on cleanup. It skips
// the test where namespaces cannot be made (not root).
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- res{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err == nil {
			if serr := netns.Set(orig); serr != nil {
				c <- res{h, serr}
				return // the thread stays locked and is discarded
			}
		}
		runtime.UnlockOSThread()
		c <- res{h, err}
	}()
	r := <-c
	if r.err != nil {
		t.Skipf("cannot create network namespaces: %v", r.err)
	}
	t.Cleanup(func() { _ = r.h.Close() })
	return r.h
}

// Run runs fn on a locked thread inside ns. The thread is discarded
// afterwards rather than returned to the pool.
func Run(ns netns.NsHandle, fn func() error) error {
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := netns.Set(ns); err != nil {
			c <- err
			return
		}
		c <- fn()
	}()
	return <-c
}

// PodLink is one pod of a node made by Node: the pod's namespace, and the
// index of its veth's host side (lxcN) in the node namespace.
type PodLink struct {
	NS          netns.NsHandle
	HostIfindex int
}

// Node creates a node namespace (standing in for the root namespace) and
// one namespace per pod address, joined by veth pairs plumbed like
// internal/localcluster: the host side lxcN has host/32 and a /32 route to
// the pod, the pod's eth0 has its address and a default route via host.
// The node forwards. Everything is removed on cleanup.
func Node(t testing.TB, host netip.Addr, pods ...netip.Addr) (netns.NsHandle, []PodLink) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("plumbing the test node: %v", err)
		}
	}
	node := New(t)
	nh, err := netlink.NewHandleAt(node)
	must(err)
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	must(err)
	must(nh.LinkSetUp(lo))
	must(Run(node, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }))
	links := make([]PodLink, len(pods))
	for i, ip := range pods {
		ns := New(t)
		ph, err := netlink.NewHandleAt(ns)
		must(err)
		la := netlink.NewLinkAttrs()
		la.Name = fmt.Sprintf("lxc%d", i)
		must(nh.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}))
		hl, err := nh.LinkByName(la.Name)
		must(err)
		links[i] = PodLink{NS: ns, HostIfindex: hl.Attrs().Index}
		must(nh.AddrAdd(hl, &netlink.Addr{IPNet: host32(host)}))
		must(nh.LinkSetUp(hl))
		must(nh.RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: host32(ip), Scope: netlink.SCOPE_LINK}))
		eth, err := ph.LinkByName("eth0")
		must(err)
		must(ph.AddrAdd(eth, &netlink.Addr{IPNet: host32(ip)}))
		must(ph.LinkSetUp(eth))
		plo, err := ph.LinkByName("lo")
		must(err)
		must(ph.LinkSetUp(plo))
		must(ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: host32(host), Scope: netlink.SCOPE_LINK}))
		must(ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(host.AsSlice())}))
		ph.Close()
	}
	return node, links
}

func host32(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}
}
