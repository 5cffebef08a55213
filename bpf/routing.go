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

// SetupProxyRouting makes the calling thread's network namespace deliver
// the packets that the datapath assigned to a proxy socket (bpf_sk_assign,
// MarkToProxy) to that socket instead of forwarding them, where ip_forward
// would drop them:
//
//	ip rule add fwmark 0x200/0xf00 lookup 100
//	ip route replace local 0.0.0.0/0 dev lo table 100
//
// It is idempotent, so the agent calls it on every start: the kernel
// accepts duplicate ip rules, so the rule is added only if it is missing
// and surplus copies are deleted, leaving exactly one; the route is
// replaced. The returned teardown removes what this call added and nothing
// else, so that a test or the demo leaves the node as it found it; the
// agent never calls it (redirects keep working while the agent is away).
//
// The node also needs net.ipv4.ip_forward=1 for direct pod-to-pod traffic
// and must not set src_valid_mark=1 without accept_local=1.
func SetupProxyRouting() (teardown func() error, err error) {
	var undo []func() error
	teardown = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	rule := proxyRule()
	have, err := proxyRules()
	if err != nil {
		return nil, err
	}
	switch {
	case len(have) == 0:
		err := netlink.RuleAdd(rule)
		switch {
		case err == nil:
			undo = append(undo, func() error { return ignoreMissing(netlink.RuleDel(rule)) })
		case !errors.Is(err, unix.EEXIST): // EEXIST: added since the listing
			return nil, fmt.Errorf("ip rule add fwmark %#x/%#x lookup %d: %w", MarkToProxy, MarkMask, ProxyRouteTable, err)
		}
	case len(have) > 1:
		// Copies from runs that predate this check, or from two agents that
		// raced: one is enough.
		for i := range have[1:] {
			if err := ignoreMissing(netlink.RuleDel(&have[1+i])); err != nil {
				return nil, fmt.Errorf("deleting a duplicate ip rule fwmark %#x/%#x lookup %d: %w", MarkToProxy, MarkMask, ProxyRouteTable, err)
			}
		}
	}
	route, err := proxyRoute()
	if err != nil {
		_ = teardown()
		return nil, err
	}
	err = netlink.RouteAdd(route)
	switch {
	case err == nil:
		undo = append(undo, func() error { return ignoreMissing(netlink.RouteDel(route)) })
	case errors.Is(err, unix.EEXIST):
		// Make it ours if another route for 0.0.0.0/0 holds the table.
		err = netlink.RouteReplace(route)
	}
	if err != nil {
		_ = teardown()
		return nil, fmt.Errorf("ip route replace local 0.0.0.0/0 dev lo table %d: %w", ProxyRouteTable, err)
	}
	return teardown, nil
}

// CountProxyRules counts the proxy's ip rules in the calling thread's
// network namespace: 1 after SetupProxyRouting, unless its teardown ran.
func CountProxyRules() (int, error) {
	rules, err := proxyRules()
	return len(rules), err
}

// proxyRule is the ip rule that SetupProxyRouting adds.
func proxyRule() *netlink.Rule {
	rule := netlink.NewRule()
	rule.Family = unix.AF_INET
	rule.Mark = uint32(MarkToProxy)
	mask := uint32(MarkMask)
	rule.Mask = &mask
	rule.Table = ProxyRouteTable
	return rule
}

// proxyRules lists the namespace's copies of proxyRule, in priority order.
func proxyRules() ([]netlink.Rule, error) {
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("listing ip rules: %w", err)
	}
	var out []netlink.Rule
	for _, r := range rules {
		if r.Mark == uint32(MarkToProxy) && r.Mask != nil && *r.Mask == uint32(MarkMask) && r.Table == ProxyRouteTable {
			out = append(out, r)
		}
	}
	return out, nil
}

// proxyRoute is the local route of the proxy's table.
func proxyRoute() (*netlink.Route, error) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("finding lo: %w", err)
	}
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Table:     ProxyRouteTable,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}, nil
}

func ignoreMissing(err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}
