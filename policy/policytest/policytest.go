// Package policytest holds the test helpers shared by the packages that
// run real policies through the engine: a repository filled from YAML, the
// proxy snapshot of its endpoints, and the policy frame most tests use (pods
// app=server accepting pods app=client on one port) from a short call.
//
// It imports policy and proxy, so it serves their external test packages
// (policy_test, proxy_test) and everything above them, not their internal
// ones.
package policytest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"portcullis.dev/portcullis/apis/policy/validation"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/loader"
	"portcullis.dev/portcullis/proxy"
)

// Apply loads each YAML text (named policy1.yaml, policy2.yaml, ... in
// errors) and applies its documents to r: a Namespace becomes a namespace
// (labels and audit mode), anything else is upserted as a policy. Documents
// are validated as the apiserver admits them. A document that does not
// load or that the repository refuses fails the test, named.
func Apply(t testing.TB, r *policy.Repository, yamls ...string) {
	t.Helper()
	var l loader.Loader
	l.Validate = validation.Validate
	for i, y := range yamls {
		res, err := l.LoadBytes(fmt.Sprintf("policy%d.yaml", i+1), []byte(y))
		if err != nil {
			t.Fatalf("loading policy%d.yaml: %v", i+1, err)
		}
		apply(t, r, res)
	}
}

// ApplyFiles is Apply for files (or directories) on disk.
func ApplyFiles(t testing.TB, r *policy.Repository, paths ...string) {
	t.Helper()
	l := loader.Loader{Validate: validation.Validate}
	res, err := l.Load(paths...)
	if err != nil {
		t.Fatalf("loading %s: %v", strings.Join(paths, ", "), err)
	}
	apply(t, r, res)
}

func apply(t testing.TB, r *policy.Repository, res *loader.Result) {
	t.Helper()
	for _, d := range res.Documents {
		if errs := r.ApplyObject(d.Object); len(errs) > 0 {
			t.Fatalf("%s: %v", d.Source, errs.ToAggregate())
		}
	}
}

// Pod is the endpoint of a pod name in namespace default, labelled
// app=name, at ip.
func Pod(name string, ip netip.Addr) *policy.Endpoint {
	return &policy.Endpoint{Namespace: "default", Name: name, Labels: map[string]string{"app": name}, IPs: []netip.Addr{ip}}
}

// Snapshot is the proxy's view of r with local as the node's endpoints, as
// the agent builds it after a sync: each endpoint at its first address
// with its policy now, and r's ipcache.
func Snapshot(r *policy.Repository, local ...*policy.Endpoint) *proxy.Snapshot {
	s := &proxy.Snapshot{Revision: r.Revision(), Endpoints: make(map[netip.Addr]*proxy.Endpoint, len(local)), Identities: r.IdentityOfIP}
	for _, ep := range local {
		s.Endpoints[ep.IPs[0]] = &proxy.Endpoint{Namespace: ep.Namespace, Name: ep.Name, IP: ep.IPs[0], Policy: r.EndpointPolicy(ep.Namespace, ep.Name)}
	}
	return s
}

// Ingress is the YAML of TrafficPolicy name in namespace default by which
// pods app=server accept TCP port (a number, or a placeholder a test
// replaces) from pods app=client, under rules: the YAML of the port rule's
// rules map (such as "http: [{method: GET}]", block style allowed, at any
// indentation), or "" for none.
func Ingress(name, port, rules string) string {
	return frame(name, "server", "ingress", "fromEndpoints", "client", port, rules)
}

// Egress is Ingress's counterpart: pods app=client may open TCP port on
// pods app=server, under rules.
func Egress(name, port, rules string) string {
	return frame(name, "client", "egress", "toEndpoints", "server", port, rules)
}

func frame(name, subject, direction, peerField, peer, port, rules string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: %s, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: %s}}
  %s:
  - %s: [{matchLabels: {app: %s}}]
    toPorts:
    - ports: [{port: %q, protocol: TCP}]
`, name, subject, direction, peerField, peer, port)
	if rules = strings.Trim(rules, "\n"); rules != "" {
		b.WriteString("      rules:\n")
		b.WriteString(indent(rules, "        "))
	}
	return b.String()
}

// indent moves the lines of s from their common leading white space
// (spaces or a Go source's tabs) to prefix.
func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	common, first := "", true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		lead := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first {
			common, first = lead, false
			continue
		}
		for !strings.HasPrefix(lead, common) {
			common = common[:len(common)-1]
		}
	}
	var b strings.Builder
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			b.WriteString(prefix)
			b.WriteString(l[len(common):])
		}
		b.WriteString("\n")
	}
	return b.String()
}
