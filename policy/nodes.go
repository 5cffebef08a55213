package policy

import (
	"net/netip"
)

type nodeInfo struct {
	ips []netip.Addr
	id  NumericIdentity
}

// UpsertNode records a node's addresses. The agent's own node (local)
// gets the reserved identity host, every other node remote-node, as in
// Cilium, so that the entities host and remote-node (and cluster, which
// includes both) select traffic from them. A pod's address wins over a
// node's; nothing else changes, since the reserved identities and their
// entries always exist.
func (r *Repository) UpsertNode(name string, ips []netip.Addr, local bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	r.deleteNodeLocked(name)
	id := IdentityRemoteNode
	if local {
		id = IdentityHost
	}
	n := nodeInfo{id: id}
	for _, ip := range ips {
		ip = ip.Unmap()
		n.ips = append(n.ips, ip)
		r.byNodeIP[ip] = id
	}
	r.nodes[name] = n
}

// DeleteNode forgets a node's addresses.
func (r *Repository) DeleteNode(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	r.deleteNodeLocked(name)
}

func (r *Repository) deleteNodeLocked(name string) {
	n, ok := r.nodes[name]
	if !ok {
		return
	}
	delete(r.nodes, name)
	for _, ip := range n.ips {
		delete(r.byNodeIP, ip)
	}
	// Another node may share an address (a misconfiguration); keep its.
	for _, o := range r.nodes {
		for _, ip := range o.ips {
			r.byNodeIP[ip] = o.id
		}
	}
}

// NodeAddrs returns every known node address with its identity (host or
// remote-node), for the datapath's ipcache.
func (r *Repository) NodeAddrs() map[netip.Addr]NumericIdentity {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netip.Addr]NumericIdentity, len(r.byNodeIP))
	for ip, id := range r.byNodeIP {
		out[ip] = id
	}
	return out
}
