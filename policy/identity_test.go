package policy

import (
	"net/netip"
	"testing"
)

// An update that does not change a pod's identity labels must keep its
// identity number, even when the pod is the identity's only member: the
// datapath writes a new number's entries before its ipcache entry, so a
// new number would drop the pod's traffic for a moment on every update.
func TestUpsertEndpointKeepsIdentity(t *testing.T) {
	r := NewRepository(Options{})
	ip := netip.MustParseAddr("10.244.0.9")
	ep := func(labels map[string]string, ports ...NamedPort) *Endpoint {
		return &Endpoint{Namespace: "default", Name: "lone", Labels: labels, IPs: []netip.Addr{ip}, NamedPorts: ports}
	}
	first := r.UpsertEndpoint(ep(map[string]string{"app": "lone"}))
	for i := range 3 {
		if got := r.UpsertEndpoint(ep(map[string]string{"app": "lone"}, NamedPort{Name: "http", Port: 80, Proto: ProtoTCP})); got != first {
			t.Fatalf("update %d: identity %d, want %d (unchanged labels)", i, got, first)
		}
		if got := r.IdentityOfIP(ip); got == nil || got.ID != first {
			t.Fatalf("update %d: the address maps to %v, want identity %d", i, got, first)
		}
	}

	second := r.UpsertEndpoint(ep(map[string]string{"app": "other"}))
	if second == first {
		t.Fatalf("new labels kept identity %d", first)
	}
	if got := r.IdentityOfIP(ip); got == nil || got.ID != second {
		t.Fatalf("after relabelling the address maps to %v, want %d", got, second)
	}
	if r.Identity(first) != nil {
		t.Fatalf("identity %d outlived its only endpoint", first)
	}

	// Namespace labels change the identity through reidentification.
	r.UpsertNamespace("default", map[string]string{"team": "a"}, false)
	third := r.IdentityOfIP(ip)
	if third == nil || third.ID == second {
		t.Fatalf("a namespace label change kept identity %d", second)
	}
	if r.Identity(second) != nil {
		t.Fatalf("identity %d outlived the namespace relabelling", second)
	}
	r.UpsertNamespace("default", map[string]string{"team": "a"}, false)
	if got := r.IdentityOfIP(ip); got == nil || got.ID != third.ID {
		t.Fatalf("re-applying the same namespace labels moved the pod to %v, want %d", got, third.ID)
	}
}

// Node addresses map to host (the agent's own node) or remote-node, so
// that the entities select them; a pod's address wins over a node's.
func TestNodeIdentities(t *testing.T) {
	r := NewRepository(Options{})
	self, other, shared := netip.MustParseAddr("10.244.0.1"), netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("10.244.0.5")
	r.UpsertNode("self", []netip.Addr{self}, true)
	r.UpsertNode("other", []netip.Addr{other, shared}, false)
	for _, c := range []struct {
		ip   netip.Addr
		want NumericIdentity
	}{{self, IdentityHost}, {other, IdentityRemoteNode}, {shared, IdentityRemoteNode}} {
		if got := r.IdentityOfIP(c.ip); got == nil || got.ID != c.want {
			t.Errorf("IdentityOfIP(%s) = %v, want %d", c.ip, got, c.want)
		}
	}
	pod := r.UpsertEndpoint(&Endpoint{Namespace: "default", Name: "p", Labels: map[string]string{"app": "p"}, IPs: []netip.Addr{shared}})
	if got := r.IdentityOfIP(shared); got == nil || got.ID != pod {
		t.Errorf("a pod's address maps to %v, want the pod's identity %d", got, pod)
	}
	r.DeleteNode("other")
	if got := r.IdentityOfIP(other); got == nil || got.ID != IdentityWorld {
		t.Errorf("a deleted node's address maps to %v, want world", got)
	}
	if got := r.NodeAddrs(); len(got) != 1 || got[self] != IdentityHost {
		t.Errorf("NodeAddrs() = %v, want only %s as host", got, self)
	}
}
