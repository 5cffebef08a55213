package bpf

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/internal/netnstest"
)

// proxyRouting is what a namespace holds of the proxy's routing.
type proxyRouting struct {
	rules int
	// route: the table's 0.0.0.0/0 route is local via lo.
	route bool
}

func readProxyRouting() (proxyRouting, error) {
	n, err := CountProxyRules()
	if err != nil {
		return proxyRouting{}, err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return proxyRouting{}, err
	}
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: ProxyRouteTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return proxyRouting{}, err
	}
	got := proxyRouting{rules: n}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Type == unix.RTN_LOCAL && r.LinkIndex == lo.Attrs().Index {
			got.route = true
		}
	}
	return got, nil
}

// TestSetupProxyRoutingIdempotent: a restarted agent leaves one rule, not
// two; a teardown removes only what its own call added.
func TestSetupProxyRoutingIdempotent(t *testing.T) {
	ns := netnstest.New(t)
	err := netnstest.Run(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		check := func(when string, want proxyRouting) error {
			got, err := readProxyRouting()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s: %+v, want %+v", when, got, want)
			}
			return nil
		}
		first, err := SetupProxyRouting()
		if err != nil {
			return err
		}
		if err := check("after the first setup", proxyRouting{rules: 1, route: true}); err != nil {
			return err
		}
		second, err := SetupProxyRouting()
		if err != nil {
			return err
		}
		if err := check("after the second setup", proxyRouting{rules: 1, route: true}); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		if err := check("after the second teardown", proxyRouting{rules: 1, route: true}); err != nil {
			return err
		}
		if err := first(); err != nil {
			return err
		}
		return check("after the first teardown", proxyRouting{})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSetupProxyRoutingReplaces: duplicate rules that an older agent left
// are folded into one, and another route holding the table is replaced.
func TestSetupProxyRoutingReplaces(t *testing.T) {
	ns := netnstest.New(t)
	err := netnstest.Run(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		for range 3 {
			if err := netlink.RuleAdd(proxyRule()); err != nil {
				return fmt.Errorf("adding a duplicate rule: %w", err)
			}
		}
		// A unicast route holds the table's 0.0.0.0/0.
		stale := &netlink.Route{LinkIndex: lo.Attrs().Index, Table: ProxyRouteTable, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
		if err := netlink.RouteAdd(stale); err != nil {
			return fmt.Errorf("adding a stale route: %w", err)
		}
		teardown, err := SetupProxyRouting()
		if err != nil {
			return err
		}
		got, err := readProxyRouting()
		if err != nil {
			return err
		}
		if want := (proxyRouting{rules: 1, route: true}); got != want {
			return fmt.Errorf("after setup: %+v, want %+v", got, want)
		}
		// Nothing was added: the rule and the (replaced) route stay.
		if err := teardown(); err != nil {
			return err
		}
		got, err = readProxyRouting()
		if err != nil {
			return err
		}
		if want := (proxyRouting{rules: 1, route: true}); got != want {
			return fmt.Errorf("after teardown: %+v, want %+v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
