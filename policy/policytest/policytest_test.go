package policytest_test

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
)

var (
	clientIP = netip.MustParseAddr("10.0.0.1")
	serverIP = netip.MustParseAddr("10.0.0.2")
)

// decide judges GET path from the client to the server's port under the
// repository's snapshot.
func decide(r *policy.Repository, port uint16, path string) (denied bool, d proxy.HTTPDecision) {
	s := policytest.Snapshot(r, policytest.Pod("client", clientIP), policytest.Pod("server", serverIP))
	cp := s.Resolve(netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, port), policy.ProtoTCP)
	if cp.Denied != nil {
		return true, proxy.HTTPDecision{}
	}
	return false, cp.DecideHTTP(l7.HTTPRequest{Method: http.MethodGet, Path: path, Header: http.Header{}})
}

func newRepo() *policy.Repository {
	r := policy.NewRepository(policy.Options{})
	r.UpsertNamespace("default", nil, false)
	r.UpsertEndpoint(policytest.Pod("client", clientIP))
	r.UpsertEndpoint(policytest.Pod("server", serverIP))
	return r
}

// The frames compile to the policy they describe: rules written in block
// style with a Go source's indentation apply on the port, other ports are
// closed.
func TestFrames(t *testing.T) {
	r := newRepo()
	policytest.Apply(t, r,
		policytest.Egress("out", "80", ""),
		policytest.Ingress("in", "80", `
			http:
			- method: GET
			  path: /a`))
	if denied, d := decide(r, 80, "/a"); denied || !d.Allowed {
		t.Errorf("GET /a on 80: denied=%v allowed=%v audited=%v, want allowed", denied, d.Allowed, d.Audited)
	}
	if denied, d := decide(r, 80, "/b"); denied || d.Allowed {
		t.Errorf("GET /b on 80: denied=%v allowed=%v audited=%v, want refused by the HTTP rules", denied, d.Allowed, d.Audited)
	}
	if denied, _ := decide(r, 81, "/a"); !denied {
		t.Error("port 81 is open")
	}
}

// A Namespace document sets the namespace's audit mode; files load like
// text.
func TestApplyFilesNamespace(t *testing.T) {
	r := newRepo()
	path := filepath.Join(t.TempDir(), "p.yaml")
	y := policytest.Ingress("in", "80", "http: [{method: GET, path: /a}]") + `---
apiVersion: v1
kind: Namespace
metadata:
  name: default
  annotations: {policy.portcullis.dev/audit-mode: "true"}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	policytest.ApplyFiles(t, r, path)
	if denied, d := decide(r, 80, "/b"); denied || !d.Allowed || !d.Audited {
		t.Errorf("GET /b in audit mode: denied=%v allowed=%v audited=%v, want allowed and audited", denied, d.Allowed, d.Audited)
	}
}
