package bpf

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ProxyRouteTable is the routing table of the proxy's local route.
const ProxyRouteTable = 100

// SetupProxyRouting adds, in the calling thread's network namespace, what
// bpf_sk_assign needs to deliver a packet to a proxy socket instead of
// forwarding it (where ip_forward would drop it):
//
//	ip rule add fwmark 0x200/0xf00 lookup 100
//	ip route add local 0.0.0.0/0 dev lo table 100
//
// The returned teardown removes only what this call added (an existing
// rule or route is left alone). The node also needs net.ipv4.ip_forward=1
// for direct pod-to-pod traffic and must not set src_valid_mark=1 without
// accept_local=1.
func SetupProxyRouting() (teardown func() error, err error) {
	var undo []func() error
	teardown = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	rule := netlink.NewRule()
	rule.Family = unix.AF_INET
	rule.Mark = uint32(MarkToProxy)
	mask := uint32(MarkMask)
	rule.Mask = &mask
	rule.Table = ProxyRouteTable
	if err := netlink.RuleAdd(rule); err == nil {
		undo = append(undo, func() error { return ignoreMissing(netlink.RuleDel(rule)) })
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("ip rule fwmark %#x/%#x lookup %d: %w", MarkToProxy, MarkMask, ProxyRouteTable, err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		_ = teardown()
		return nil, fmt.Errorf("finding lo: %w", err)
	}
	route := &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Table:     ProxyRouteTable,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
	if err := netlink.RouteAdd(route); err == nil {
		undo = append(undo, func() error { return ignoreMissing(netlink.RouteDel(route)) })
	} else if !errors.Is(err, unix.EEXIST) {
		_ = teardown()
		return nil, fmt.Errorf("ip route add local 0.0.0.0/0 dev lo table %d: %w", ProxyRouteTable, err)
	}
	return teardown, nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}
