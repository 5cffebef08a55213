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
