package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/tlstest"
	"portcullis.dev/portcullis/internal/workloads"
)

// tlsPolicy is the mediabot's TLS policy, after Cilium's guide to
// inspecting TLS: connections to api.example.com are intercepted (the
// proxy presents the api-front certificate, signed by the internal CA
// the mediabot trusts, and checks the server against public-cas) so that
// its HTTP rules apply inside TLS; connections to sni.example.com:8443
// pass through undecrypted if the client names allowed.example.com. The
// %s are the hosts' addresses, known once they exist.
const tlsPolicy = `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: mediabot-tls
  namespace: default
spec:
  description: "Inspect the mediabot's HTTPS to api.example.com; only allowed.example.com on sni.example.com"
  endpointSelector:
    matchLabels: {org: alliance, class: mediabot}
  egress:
  - toCIDR: [%s/32]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      terminatingTLS: {secret: {name: api-front}}
      originatingTLS: {secret: {name: public-cas}}
      rules:
        http:
        - {method: GET, path: /public}
  - toCIDR: [%s/32]
    toPorts:
    - ports: [{port: "8443", protocol: TCP}]
      serverNames: [allowed.example.com]
`

// tlsTraffic is Cilium's TLS inspection guide on the demo's mediabot:
// the certificates made with openssl, two hosts outside the cluster
// (api.example.com and sni.example.com, called at their addresses as
// the TLS e2e does), the
// Secrets and the policy applied, and a table of what curl and openssl
// s_client got (checked), then `portcullis monitor`'s lines for them.
func (d *demo) tlsTraffic(ctx context.Context, kubectl string) error {
	if d.operator == nil {
		fmt.Fprintf(d.out, "  NOTE: skipped: the agent loads TLS secrets from the operator's copies, and the operator is not running\n")
		return nil
	}
	mediabot := d.cluster.Pod("default", "mediabot")
	if mediabot == nil {
		return errors.New("no pod default/mediabot")
	}
	dir := filepath.Join(d.cluster.TempDir(), "tls")
	f := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	// The internal CA the mediabot trusts, with the certificate the proxy
	// presents for api.example.com; the public CA of the servers.
	for _, ca := range []struct {
		name  string
		names []string
	}{
		{"internal-ca", []string{"api.example.com"}},
		{"public-ca", []string{"api.example.com", "allowed.example.com"}},
	} {
		if err := os.MkdirAll(f(ca.name), 0o755); err != nil {
			return err
		}
		if err := tlstest.OpenSSLFiles(f(ca.name), ca.name, ca.names...); err != nil {
			return fmt.Errorf("making the certificates of %s: %w", ca.name, err)
		}
	}
	api, sni := d.cluster.Pod("", "api.example.com"), d.cluster.Pod("", "sni.example.com")
	if api == nil || sni == nil {
		return errors.New("no hosts api.example.com and sni.example.com (addTLSHosts)")
	}
	if _, err := d.startWorkload(api, workloads.RoleHTTPSServer, "0.0.0.0:443", f("public-ca", "api.example.com.crt"), f("public-ca", "api.example.com.key")); err != nil {
		return err
	}
	if _, err := d.startWorkload(sni, workloads.RoleHTTPSServer, "0.0.0.0:8443", f("public-ca", "allowed.example.com.crt"), f("public-ca", "allowed.example.com.key")); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  hosts outside the cluster: api.example.com (%s:443), sni.example.com (%s:8443), HTTPS servers with certificates of public-ca\n", api.IP, sni.IP)
	fmt.Fprintf(d.out, "  certificates made with openssl in %s: internal-ca (trusted by the mediabot) signs api.example.com for the proxy\n\n", dir)

	for _, s := range []struct {
		name  string
		files map[string]string
	}{
		{"api-front", map[string]string{"tls.crt": f("internal-ca", "api.example.com.crt"), "tls.key": f("internal-ca", "api.example.com.key")}},
		{"public-cas", map[string]string{"ca.crt": f("public-ca", "public-ca.crt")}},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: s.name}, Data: map[string][]byte{}}
		for k, file := range s.files {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			sec.Data[k] = b
		}
		fmt.Fprintf(d.out, "$ kubectl create secret generic %s --from-file=...   (%s)\n", s.name, strings.Join(keys(s.files), ", "))
		if _, err := d.cluster.Clientset().CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating secret default/%s: %w", s.name, err)
		}
	}
	policy := filepath.Join(dir, "mediabot-tls.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(tlsPolicy, api.IP, sni.IP)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "%s", indent(fmt.Sprintf(tlsPolicy, api.IP, sni.IP), "    | ")+"\n")
	if err := d.kubectl(ctx, kubectl, "apply", "--server-side", "--field-manager=portcullis-demo", "-f", policy); err != nil {
		return err
	}
	// The operator copies the secrets the policy names; the agent loads
	// the copies.
	if err := d.waitSecretCopies(ctx, "default.api-front", "default.public-cas"); err != nil {
		return err
	}

	mon, err := d.startMonitor(ctx)
	if err != nil {
		return err
	}
	cacert := f("internal-ca", "internal-ca.crt")
	curlRow := func(path, want string) l7Row {
		return l7Row{client: mediabot.Name, request: "curl --cacert internal-ca.crt --resolve api.example.com:443:" + api.IP.String() + " https://api.example.com" + path, want: want, do: func() string {
			r := curlIn(ctx, mediabot, "--cacert", cacert, "--resolve", "api.example.com:443:"+api.IP.String(), "https://api.example.com"+path)
			if r.exit == 0 {
				// The whole first line: the server echoes what it got.
				return fmt.Sprintf("%d %s", r.code, firstLine(r.body))
			}
			return r.String()
		}}
	}
	sclientRow := func(name, want string) l7Row {
		return l7Row{client: mediabot.Name, request: "openssl s_client -connect " + sni.IP.String() + ":8443 -servername " + name, want: want, do: func() string {
			return sclient(ctx, mediabot, sni.IP.String()+":8443", name, f("public-ca", "public-ca.crt"))
		}}
	}
	failures := d.printRows("TLS inspection (Cilium's TLS guide): the mediabot's HTTPS, intercepted and passed through", []l7Row{
		curlRow("/public", "200 upstream HTTP/2.0 /public sni=api.example.com"),
		curlRow("/admin", "403 Access denied"),
		sclientRow("allowed.example.com", "verified: CN = allowed.example.com"),
		sclientRow("denied.example.com", "refused: alert access denied"),
	})
	return d.checkMonitor(mon, "TLS", "the mediabot's lines", tlsExpected, failures, func(l string) bool {
		return strings.Contains(l, "default/mediabot (") && !strings.Contains(l, "coredns")
	})
}

// tlsExpected are lines `portcullis monitor` must show for tlsTraffic:
// the requests inside TLS, and the refused server name.
var tlsExpected = []func(string) bool{
	verdictLine(monitorExpect{Verdict: "FORWARDED", From: "mediabot", Has: []string{"GET /public", "status=200"}}),
	verdictLine(monitorExpect{Verdict: "DENIED", From: "mediabot", Has: []string{"GET /admin", "status=403", "TrafficPolicy default/mediabot-tls"}}),
	verdictLine(monitorExpect{Verdict: "DENIED", From: "mediabot", Has: []string{"denied.example.com", "TrafficPolicy default/mediabot-tls"}}),
}

// tlsHosts are the hosts outside the cluster of tlsTraffic.
var tlsHosts = []string{"api.example.com", "sni.example.com"}

// addTLSHosts adds tlsHosts, before the agent starts so that it knows
// their addresses from the start.
func (d *demo) addTLSHosts() error {
	for _, h := range tlsHosts {
		if _, err := d.cluster.AddHost(h); err != nil {
			return err
		}
	}
	return nil
}

// waitSecretCopies waits until the operator has copied the named Secrets
// into the agent's secrets namespace.
func (d *demo) waitSecretCopies(ctx context.Context, names ...string) error {
	begin := time.Now()
	for deadline := begin.Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var missing []string
		for _, n := range names {
			if _, err := d.cluster.Clientset().CoreV1().Secrets(localcluster.SecretsNamespace).Get(ctx, n, metav1.GetOptions{}); err != nil {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			fmt.Fprintf(d.out, "  the operator copied %s into %s after %v\n\n", strings.Join(names, ", "), localcluster.SecretsNamespace, time.Since(begin).Round(100*time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the operator did not copy %s into %s within 20s; its log:\n%s", strings.Join(missing, ", "), localcluster.SecretsNamespace, d.logTail(20))
		}
	}
}

// sclient runs openssl s_client in pod against addr with server name
// name, verifying the certificate against cafile, and says how the
// handshake went: "verified: <subject>" or "refused: <alert>".
func sclient(ctx context.Context, pod *localcluster.Pod, addr, name, cafile string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := pod.CommandContext(ctx, "openssl", "s_client", "-brief", "-connect", addr, "-servername", name,
		"-verify_hostname", name, "-CAfile", cafile, "-verify_return_error")
	cmd.Stdin = strings.NewReader("")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return err.Error()
	}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if err == nil && strings.HasPrefix(l, "Peer certificate: ") {
			return "verified: " + strings.TrimPrefix(l, "Peer certificate: ")
		}
		if m := alertRE.FindStringSubmatch(l); err != nil && m != nil {
			return "refused: alert " + m[1]
		}
	}
	return fmt.Sprintf("openssl exit %v: %s", err, firstLine(strings.TrimSpace(text)))
}

// alertRE finds the TLS alert in openssl's error line ("...:tlsv1 alert
// access denied:...").
var alertRE = regexp.MustCompile(`alert ([a-z][a-z ]*[a-z])`)

// keys lists a map's keys, sorted.
func keys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
