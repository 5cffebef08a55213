package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/tlstest"
)

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxyTLSInterception: `portcullis proxy` takes the terminating and
// originating secrets from Secret objects in its --policy files; curl
// trusting the internal CA gets 200 on an allowed path and 403 on a denied
// one, the access log shows the request lines, and no key material is
// printed.
func TestProxyTLSInterception(t *testing.T) {
	dir := t.TempDir()
	tlstest.OpenSSL(t, dir, "internal-ca", "api.example.com")
	updir := filepath.Join(dir, "up")
	if err := os.Mkdir(updir, 0o700); err != nil {
		t.Fatal(err)
	}
	tlstest.OpenSSL(t, updir, "upstream-ca", "api.example.com")
	upCert, err := tls.LoadX509KeyPair(filepath.Join(updir, "api.example.com.crt"), filepath.Join(updir, "api.example.com.key"))
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s %s sni=%s\n", r.Proto, r.URL.Path, r.TLS.ServerName)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{upCert}}
	up.StartTLS()
	t.Cleanup(up.Close)

	b64 := func(p string) string { return base64.StdEncoding.EncodeToString(readFile(t, p)) }
	front, frontKey := filepath.Join(dir, "api.example.com.crt"), filepath.Join(dir, "api.example.com.key")
	policyFile := filepath.Join(dir, "policy.yaml")
	yaml := fmt.Sprintf(`apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: intercept, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      terminatingTLS: {secret: {name: front}}
      originatingTLS: {secret: {name: back}}
      rules:
        http: [{method: GET, path: /public}]
---
apiVersion: v1
kind: Secret
metadata: {name: front, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
---
apiVersion: v1
kind: Secret
metadata: {name: back, namespace: default}
stringData:
  ca.crt: |
%s
`, b64(front), b64(frontKey), "    "+strings.ReplaceAll(strings.TrimSpace(string(readFile(t, filepath.Join(updir, "upstream-ca.crt")))), "\n", "\n    "))
	if err := os.WriteFile(policyFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	rp := startProxy(t, "--policy", policyFile, "--listen", "127.0.0.1:0", "--upstream", up.Listener.Addr().String(),
		"--dport", "443", "--src", "app=client", "--dst", "app=server")
	_, port, _ := net.SplitHostPort(rp.addr)
	curl := func(path string) string {
		out, err := exec.Command("curl", "-sS", "--cacert", filepath.Join(dir, "internal-ca.crt"), "--max-time", "10",
			"--resolve", "api.example.com:"+port+":127.0.0.1", "-w", " %{http_code}", "https://api.example.com:"+port+path).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", path, err, out)
		}
		return string(out)
	}
	// The upstream speaks HTTP/1.1 only: curl, offering h2, is given
	// what the upstream chose.
	if got := curl("/public"); got != "upstream HTTP/1.1 /public sni=api.example.com\n 200" {
		t.Errorf("/public: %q", got)
	}
	if got := curl("/private"); !strings.HasSuffix(got, " 403") {
		t.Errorf("/private: %q", got)
	}
	lines := rp.waitLines(t, 2)
	if !strings.Contains(lines[0], "GET /public") || !strings.Contains(lines[1], "GET /private") {
		t.Errorf("access log:\n%s", strings.Join(lines, "\n"))
	}
	time.Sleep(50 * time.Millisecond)
	for _, out := range []string{rp.stdout.String(), rp.stderr.String()} {
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, b64(frontKey)[:40]) {
			t.Errorf("key material printed:\n%s", out)
		}
	}
}

// TestProxyBadSecret: a Secret whose data is not base64 is an input error
// naming the file, and its bytes are not printed.
func TestProxyBadSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.yaml")
	writeTestFile(t, path, `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
---
apiVersion: v1
kind: Secret
metadata: {name: front, namespace: default}
data:
  tls.key: "not base64: sekrit!"
`)
	_, stderr, code := run("proxy", "--policy", path, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--src", "app=client", "--dst", "app=server")
	if code != exitInput || !strings.Contains(stderr, "secret.yaml") || !strings.Contains(stderr, "the Secret does not decode") || strings.Contains(stderr, "sekrit") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}
