package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/loader"
)

// FuzzPolicyDecode feeds arbitrary policy files through the loader and the
// engine: nothing may panic, a policy the engine refuses must leave the
// repository unchanged, and an accepted one must give map state that
// agrees with the decision function.
func FuzzPolicyDecode(f *testing.F) {
	for _, dir := range []string{"../examples/starwars", "../examples/kafka", "../examples/grpc", "../examples/dns", "../examples/admin"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(denyPrecedence))
	f.Add([]byte(l7Union))
	f.Add([]byte(egressCIDR))
	eps := []*policy.Endpoint{
		{Namespace: "default", Name: "a", Labels: map[string]string{"org": "empire", "class": "deathstar", "app": "kafka"}},
		{Namespace: "default", Name: "b", Labels: map[string]string{"org": "alliance", "class": "xwing"}},
		{Namespace: "kube-system", Name: "c", Labels: map[string]string{"k8s-app": "kube-dns"}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var l loader.Loader
		res, err := l.LoadBytes("fuzz.yaml", data)
		if err != nil {
			return
		}
		r := policy.NewRepository(policy.Options{})
		for _, ep := range eps {
			r.UpsertEndpoint(ep)
		}
		for _, d := range res.Documents {
			rev := r.Revision()
			if errs := r.ApplyObject(d.Object); len(errs) > 0 && r.Revision() != rev {
				t.Fatalf("a refused policy changed the repository: %v", errs)
			}
		}
		ids := r.Identities()
		for _, ep := range eps {
			pol := r.EndpointPolicy(ep.Namespace, ep.Name)
			for d := range 2 {
				for _, peer := range ids {
					for _, port := range []uint16{0, 53, 80, 443, 9092, 50051, 65535} {
						dec, _ := r.Decide(ep.Namespace, ep.Name, policy.Direction(d), peer.ID, policy.ProtoTCP, port)
						e := pol.State[d].Lookup(peer.ID, policy.ProtoTCP, port)
						if e.Decision.Verdict != dec.Verdict || e.Decision.Rule != dec.Rule {
							t.Fatalf("%s %s peer %s port %d: map state %s, decision %s", ep.Key(), policy.Direction(d), peer, port, e.Decision.Verdict, dec.Verdict)
						}
					}
				}
			}
		}
	})
}
