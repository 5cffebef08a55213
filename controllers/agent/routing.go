package agent

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/bpf"
)

// proxyRuleExists reports whether the node already has the rule
// `fwmark 0x200/0xf00 lookup 100`.
func proxyRuleExists() (bool, error) {
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		if r.Mark == uint32(bpf.MarkToProxy) && r.Mask != nil && *r.Mask == uint32(bpf.MarkMask) && r.Table == bpf.ProxyRouteTable {
			return true, nil
		}
	}
	return false, nil
}

// ensureProxyRouting sets up the proxy's ip rule and local route once:
// the kernel accepts duplicate ip rules, so a restarted agent must not add
// the rule again. Nothing is removed on shutdown (the redirect path keeps
// working while the agent is away).
func ensureProxyRouting() error {
	exists, err := proxyRuleExists()
	if err != nil {
		return fmt.Errorf("listing ip rules: %w", err)
	}
	if !exists {
		_, err := bpf.SetupProxyRouting()
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.RouteReplace(&netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Table:     bpf.ProxyRouteTable,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	})
}
