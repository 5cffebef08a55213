package localcluster

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// AddHost makes a network namespace plumbed exactly like a pod's (a veth
// pair, an address of PodCIDR, the same routes) but with no Pod object: an
// address the cluster knows nothing about, which policy treats as outside
// the cluster (world, or the CIDR identity of a prefix a rule names). Tests
// use it as an "external" peer that still lies in a namespace they made.
//
// With cluster DNS (StartDNS), name resolves to the host's address, as a
// name outside the cluster would.
//
// The returned Pod has an empty Namespace and a nil Object; Command and
// Exec work as for a pod, DeletePod(ctx, "", name) removes it, and Stop
// removes it with the pods. name must be a DNS-1123 subdomain, unique among
// hosts.
func (c *Cluster) AddHost(name string) (_ *Pod, err error) {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Errorf("host name %q: %s", name, strings.Join(msgs, "; "))
	}
	// A pod's namespace is never empty, so this key, and the names derived
	// from it, cannot collide with a pod's.
	key := podKey("", name)
	if err := c.reserve(key); err != nil {
		return nil, fmt.Errorf("adding host %s: %w", name, err)
	}
	// Runs after the host is registered below: cluster DNS knows its name.
	defer func() {
		if err == nil {
			err = c.writeHostsFile()
		}
	}()
	var p *Pod
	defer func() { c.settle(key, p, err) }()
	pl, err := plumbPod(c.netnsName("", name), c.vethName("", name), c.ipam.alloc)
	if err != nil {
		return nil, fmt.Errorf("adding host %s: %w", name, err)
	}
	if err := writeResolvConf(pl.netns, resolvConf("")); err != nil {
		_ = unplumbPod(pl)
		return nil, fmt.Errorf("adding host %s: %w", name, err)
	}
	p = &Pod{Name: name, IP: pl.ip, NetNS: pl.netns, HostVeth: pl.hostVeth, plumbing: pl}
	c.logf("host %s: %s in netns %s, host veth %s (no Pod object)", name, pl.ip, pl.netns, pl.hostVeth)
	return p, nil
}
