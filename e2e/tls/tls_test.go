package tls

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/e2e/internal/nodelock"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/tlstest"
	"portcullis.dev/portcullis/internal/workloads"
	"portcullis.dev/portcullis/monitor"
)

// TestMain runs a workload when the binary is re-executed in a pod, else
// the tests under the node lock.
func TestMain(m *testing.M) {
	workloads.RunIfChild()
	ctrl.SetLogger(logr.Discard())
	nodelock.RunTests(m)
}

// events collects the agent's flow events (what `portcullis monitor`
// shows).
type events struct {
	mu  sync.Mutex
	all []monitor.Event
}

// find waits for an L7 event that match accepts.
func (ev *events) find(t *testing.T, what string, match func(monitor.Event) bool) monitor.Event {
	t.Helper()
	var found monitor.Event
	harness.Eventually(t, what, 5*time.Second, func() error {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.all {
			if e.Type == monitor.TypeL7 && e.L7 != nil && match(e) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(ev.all))
	})
	return found
}

// startAgent runs the agent in-process until the test ends.
func startAgent(t *testing.T, c *localcluster.Cluster) *events {
	t.Helper()
	ev := &events{}
	var sub *monitor.Subscription
	t.Cleanup(func() {
		if sub != nil {
			sub.Close()
		}
	})
	harness.RunAgent(t, agent.Config{
		RESTConfig: c.RESTConfig(), NodeName: c.NodeName(),
		BPFFS: harness.MountBPFFS(t), ProxyPort: harness.FreePort(t),
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		LeaseDuration: 10 * time.Second, RenewInterval: time.Second,
		Started: func(a *agent.Agent) {
			sub = a.Monitor().Subscribe(4096)
			go func() {
				for e := range sub.C {
					ev.mu.Lock()
					ev.all = append(ev.all, e)
					ev.mu.Unlock()
				}
			}()
		},
	})
	return ev
}

// run runs argv in pod and returns its output and exit code.
func run(t *testing.T, pod *localcluster.Pod, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := pod.CommandContext(ctx, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = strings.NewReader("")
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running %s: %v", argv[0], err)
		}
		return out.String(), ee.ExitCode()
	}
	return out.String(), 0
}

// referenceGrantCRD is the ReferenceGrant CRD of the gateway-api module
// go.mod pins.
func referenceGrantCRD(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the gateway-api module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_referencegrants.yaml")
}

// tlsSecret is a kubernetes.io/tls-like Secret in namespace default with
// the files of dir as its data (key → file name).
func tlsSecret(t *testing.T, name string, files map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Data: map[string][]byte{}}
	for k, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s.Data[k] = b
	}
	return s
}

// TestTLS is the walkthrough of TLS inspection on one cluster: the
// mediabot reaches an external HTTPS server through interception (its
// requests seen and judged inside TLS, a denied path 403 over TLS), an
// upstream the trusted CA does not sign is 502, and a server-name rule
// allows and denies openssl s_client's connections without decrypting.
func TestTLS(t *testing.T) {
	ctx := context.Background()
	c, k8s := harness.Cluster(t)
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: make deps installs it", tool)
		}
	}
	dir := t.TempDir()
	// The internal CA the mediabot trusts and the certificate the proxy
	// presents for the destination; the external servers' own CA; a CA
	// nobody trusts.
	for _, d := range []string{"internal", "public", "rogue"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tlstest.OpenSSL(t, filepath.Join(dir, "internal"), "internal-ca", "api.example.com")
	tlstest.OpenSSL(t, filepath.Join(dir, "public"), "public-ca", "api.example.com", "allowed.example.com", "denied.example.com")
	tlstest.OpenSSL(t, filepath.Join(dir, "rogue"), "rogue-ca", "api.example.com")
	f := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }

	mediabot, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: "default", Name: "mediabot", Labels: map[string]string{"app": "mediabot"}})
	if err != nil {
		t.Fatal(err)
	}
	api, err := c.AddHost("api-example")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := c.AddHost("rogue-example")
	if err != nil {
		t.Fatal(err)
	}
	sni, err := c.AddHost("sni-example")
	if err != nil {
		t.Fatal(err)
	}
	granted, err := c.AddHost("granted-example")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	serve := func(h *localcluster.Pod, addr, crt, key string) {
		p, err := workloads.Start(h.Command(exe), workloads.RoleHTTPSServer, addr, crt, key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop() })
	}
	serve(api, "0.0.0.0:443", f("public", "api.example.com.crt"), f("public", "api.example.com.key"))
	serve(rogue, "0.0.0.0:443", f("rogue", "api.example.com.crt"), f("rogue", "api.example.com.key"))
	// One certificate for both names is enough: s_client checks the name
	// it asked for against what the pass-through brings back.
	serve(granted, "0.0.0.0:443", f("public", "api.example.com.crt"), f("public", "api.example.com.key"))
	serve(sni, "0.0.0.0:8443", f("public", "allowed.example.com.crt"), f("public", "allowed.example.com.key"))

	// The ReferenceGrant API, so that the operator checks grants.
	if _, err := envtest.InstallCRDs(c.RESTConfig(), envtest.CRDInstallOptions{Paths: []string{referenceGrantCRD(t)}}); err != nil {
		t.Fatal(err)
	}
	harness.StartOperator(t, c)
	ev := startAgent(t, c)
	// A trust bundle in another namespace, which the policy may use only
	// with a ReferenceGrant there.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "certs"}}); err != nil {
		t.Fatal(err)
	}
	shared := tlsSecret(t, "shared-cas", map[string]string{"ca.crt": f("public", "public-ca.crt")})
	shared.Namespace = "certs"
	if err := k8s.Create(ctx, shared); err != nil {
		t.Fatal(err)
	}

	for _, s := range []*corev1.Secret{
		tlsSecret(t, "api-front", map[string]string{"tls.crt": f("internal", "api.example.com.crt"), "tls.key": f("internal", "api.example.com.key")}),
		tlsSecret(t, "public-cas", map[string]string{"ca.crt": f("public", "public-ca.crt")}),
	} {
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var pol v1alpha1.TrafficPolicy
	if err := yaml.UnmarshalStrict([]byte(fmt.Sprintf(`apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: mediabot-tls, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: mediabot}}
  egress:
  - toCIDR: [%s/32, %s/32]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      terminatingTLS: {secret: {name: api-front}}
      originatingTLS: {secret: {name: public-cas}}
      rules:
        http:
        - {method: GET, path: /public}
        - {method: POST, path: /grpc.health.v1.Health/Check}
  - toCIDR: [%s/32]
    toPorts:
    - ports: [{port: "8443", protocol: TCP}]
      serverNames: [allowed.example.com]
  - toCIDR: [%s/32]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      terminatingTLS: {secret: {name: api-front}}
      originatingTLS: {secret: {namespace: certs, name: shared-cas}}
      rules:
        http:
        - {method: GET, path: /public}
`, api.IP, rogue.IP, sni.IP, granted.IP)), &pol); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &pol); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammed(t, c, k8s, &pol)
	// The operator copies the secrets; the agent loads the copies.
	harness.Eventually(t, "the copies of the secrets", 20*time.Second, func() error {
		var s corev1.Secret
		for _, n := range []string{"default.api-front", "default.public-cas"} {
			if err := k8s.Get(ctx, types.NamespacedName{Namespace: localcluster.SecretsNamespace, Name: n}, &s); err != nil {
				return err
			}
		}
		return nil
	})

	curl := func(t *testing.T, host *localcluster.Pod, path string) (string, int) {
		t.Helper()
		return run(t, mediabot, "curl", "-sS", "--connect-timeout", "3", "--max-time", "10", "--cacert", f("internal", "internal-ca.crt"),
			"--resolve", "api.example.com:443:"+host.IP.String(), "-w", " %{http_code}", "https://api.example.com"+path)
	}
	t.Run("intercepted request", func(t *testing.T) {
		var out string
		harness.Eventually(t, "curl through interception", 15*time.Second, func() error {
			var code int
			if out, code = curl(t, api, "/public"); code != 0 {
				return fmt.Errorf("curl exit %d: %s", code, out)
			}
			return nil
		})
		if !strings.HasPrefix(out, "upstream HTTP/2.0 /public sni=api.example.com") || !strings.HasSuffix(out, " 200") {
			t.Fatalf("curl: %q", out)
		}
		e := ev.find(t, "the request line", func(e monitor.Event) bool {
			return e.L7.Method == "GET" && e.L7.Path == "/public" && e.L7.Status == 200
		})
		if e.Verdict != monitor.VerdictForwarded || e.L7.ServerName != "api.example.com" || e.Source.Pod != "mediabot" {
			t.Errorf("event %s %+v %+v", e.Verdict, e.Source, e.L7)
		}
	})
	t.Run("denied path over TLS", func(t *testing.T) {
		if out, code := curl(t, api, "/admin"); code != 0 || !strings.HasSuffix(out, " 403") {
			t.Fatalf("curl: exit %d %q, want 403", code, out)
		}
		ev.find(t, "the denial", func(e monitor.Event) bool {
			return e.Verdict == monitor.VerdictDenied && e.L7.Path == "/admin" && e.L7.Status == 403
		})
	})
	t.Run("gRPC over TLS", func(t *testing.T) {
		// The pod has no name service here: api.example.com is the
		// certificate's name, the address the host's.
		gc, err := workloads.Start(mediabot.Command(exe), workloads.RoleGRPCTLSClient, api.IP.String()+":443", "api.example.com", f("internal", "internal-ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Stop()
		if r, err := gc.Do(workloads.Command{Method: "Check"}, 10*time.Second); err != nil || r.Code != "OK" || r.Reply != "SERVING" {
			t.Fatalf("Check: %+v %v", r, err)
		}
		r, err := gc.Do(workloads.Command{Method: "List"}, 10*time.Second)
		if err != nil || r.Code != "PermissionDenied" || !strings.Contains(r.Message, "TrafficPolicy default/mediabot-tls") {
			t.Fatalf("List: %+v %v, want PermissionDenied naming the policy", r, err)
		}
		ev.find(t, "the gRPC denial", func(e monitor.Event) bool {
			return e.Verdict == monitor.VerdictDenied && e.L7.Protocol == "grpc" && e.L7.Path == "/grpc.health.v1.Health/List" && e.L7.ServerName == "api.example.com"
		})
	})
	t.Run("untrusted upstream", func(t *testing.T) {
		if out, code := curl(t, rogue, "/public"); code != 0 || !strings.HasSuffix(out, " 502") {
			t.Fatalf("curl: exit %d %q, want 502", code, out)
		}
		ev.find(t, "the reason of the 502", func(e monitor.Event) bool {
			return e.L7.Status == 502 && strings.Contains(e.Reason, "certificate signed by unknown authority")
		})
	})
	t.Run("serverNames", func(t *testing.T) {
		sclient := func(name string) (string, int) {
			return run(t, mediabot, "openssl", "s_client", "-brief", "-connect", sni.IP.String()+":8443", "-servername", name,
				"-verify_hostname", name, "-CAfile", f("public", "public-ca.crt"), "-verify_return_error")
		}
		if out, code := sclient("allowed.example.com"); code != 0 || !strings.Contains(out, "CN = allowed.example.com") {
			t.Errorf("allowed: exit %d\n%s", code, out)
		}
		if out, code := sclient("denied.example.com"); code == 0 || !strings.Contains(out, "alert access denied") {
			t.Errorf("denied: exit %d\n%s", code, out)
		}
		e := ev.find(t, "the server-name denial", func(e monitor.Event) bool {
			return e.Verdict == monitor.VerdictDenied && e.L7.ServerName == "denied.example.com"
		})
		if !strings.Contains(e.Policy, "TrafficPolicy default/mediabot-tls") {
			t.Errorf("event policy %q", e.Policy)
		}
	})
	t.Run("another namespace needs a ReferenceGrant", func(t *testing.T) {
		if out, code := curl(t, granted, "/public"); code == 0 {
			t.Fatalf("curl without a grant: %q, want a failure", out)
		}
		ev.find(t, "the refusal naming the reference", func(e monitor.Event) bool {
			return e.L7.Refused == "tls-secret" && strings.Contains(e.Reason, "secret certs/shared-cas not found")
		})
		grant := &gatewayv1beta1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: "certs", Name: "mediabot-tls"},
			Spec: gatewayv1beta1.ReferenceGrantSpec{
				From: []gatewayv1beta1.ReferenceGrantFrom{{Group: "policy.portcullis.dev", Kind: "TrafficPolicy", Namespace: "default"}},
				To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
			},
		}
		if err := k8s.Create(ctx, grant); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, "curl with the grant", 15*time.Second, func() error {
			if out, code := curl(t, granted, "/public"); code != 0 || !strings.HasSuffix(out, " 200") {
				return fmt.Errorf("curl: exit %d %q", code, out)
			}
			return nil
		})
	})
	// The secret goes: the operator deletes its copy, the agent forgets
	// it, and connections are reset with an event naming the policy and
	// the reference.
	t.Run("missing secret fails closed", func(t *testing.T) {
		if err := k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "api-front"}}); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, "connections refused", 15*time.Second, func() error {
			if out, code := curl(t, api, "/public"); code == 0 {
				return fmt.Errorf("curl still passes: %q", out)
			}
			return nil
		})
		ev.find(t, "the refusal naming the reference", func(e monitor.Event) bool {
			return e.L7.Refused == "tls-secret" && strings.Contains(e.Reason, "secret default/api-front not found") &&
				strings.Contains(e.Reason, "TrafficPolicy default/mediabot-tls")
		})
	})
	// It comes back with another certificate: new handshakes present it
	// within seconds, without a restart.
	t.Run("rotation", func(t *testing.T) {
		if err := k8s.Create(ctx, tlsSecret(t, "api-front", map[string]string{"tls.crt": f("rogue", "api.example.com.crt"), "tls.key": f("rogue", "api.example.com.key")})); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, "the rotated certificate presented", 15*time.Second, func() error {
			out, code := run(t, mediabot, "curl", "-sS", "--connect-timeout", "3", "--max-time", "10", "--cacert", f("rogue", "rogue-ca.crt"),
				"--resolve", "api.example.com:443:"+api.IP.String(), "-w", " %{http_code}", "https://api.example.com/public")
			if code != 0 || !strings.HasSuffix(out, " 200") {
				return fmt.Errorf("curl trusting the new issuer: exit %d %q", code, out)
			}
			return nil
		})
		if out, code := curl(t, api, "/public"); code != 60 {
			t.Errorf("curl trusting the old issuer: exit %d %q, want 60 (certificate not trusted)", code, out)
		}
	})
	// No key material in any event the agent published.
	t.Run("no key material in events", func(t *testing.T) {
		var keys [][]byte
		for _, k := range []string{f("internal", "api.example.com.key"), f("rogue", "api.example.com.key")} {
			b, err := os.ReadFile(k)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, b)
		}
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.all {
			b, _ := json.Marshal(e)
			if bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Fatalf("event with key material: %s", b)
			}
			for _, k := range keys {
				if body := bytes.Split(k, []byte("\n")); len(body) > 2 && bytes.Contains(b, body[1]) {
					t.Fatalf("event with key material: %s", b)
				}
			}
		}
	})
}
