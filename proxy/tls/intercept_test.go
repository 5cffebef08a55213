package tls_test

import (
	"context"
	ctls "crypto/tls"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
)

const interceptPolicy = `
terminatingTLS: {secret: {name: front}}
originatingTLS: {secret: {name: back}}
rules:
  http:
  - {method: GET, path: /public}
`

// interception is an intercepting proxy in front of an HTTPS upstream:
// the proxy presents a certificate of the internal CA (front), and trusts
// the upstream's CA (back).
type interception struct {
	*env
	internal, upCA *ca
	internalFile   string
	frontKey       []byte
}

func newInterception(t testing.TB, fields string) *interception {
	return newInterceptionALPN(t, fields, []string{"h2", "http/1.1"})
}

// newInterceptionALPN is newInterception with an upstream offering alpn.
func newInterceptionALPN(t testing.TB, fields string, alpn []string) *interception {
	t.Helper()
	ic := &interception{internal: newCA(t, "internal CA"), upCA: newCA(t, "upstream CA")}
	up := startUpstreamALPN(t, ic.upCA, alpn, "api.example.com")
	ic.env = newEnv(t, up, portRule(fields))
	crt, key := ic.internal.issue(t, "intercepted api.example.com", "api.example.com")
	ic.frontKey = key
	// The internal CA's certificate in the terminating secret, as in a
	// cert-manager Secret: it must not turn on client certificates.
	ic.secrets.Put("default", "front", map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ic.internal.PEM})
	ic.secrets.Put("default", "back", map[string][]byte{"ca.crt": ic.upCA.PEM})
	ic.internalFile = file(t, "internal.pem", ic.internal.PEM)
	return ic
}

// TestInterceptCurl: curl trusting the internal CA gets the upstream's
// answer over the intercepted connection, HTTP/2 and HTTP/1.1 alike (the
// upstream leg speaks the client's protocol and carries its server
// name); a path the rules deny is 403 over TLS; the events show the
// request line and the server name.
func TestInterceptCurl(t *testing.T) {
	ic := newInterception(t, interceptPolicy)
	for _, tt := range []struct {
		proto, path, want string
		status            int
		verdict           string
	}{
		{"--http2", "/public", "upstream HTTP/2.0 /public sni=api.example.com\n", 200, monitor.VerdictForwarded},
		{"--http1.1", "/public", "upstream HTTP/1.1 /public sni=api.example.com\n", 200, monitor.VerdictForwarded},
		{"--http2", "/private", "Access denied\r\n", 403, monitor.VerdictDenied},
		{"--http1.1", "/private", "Access denied\r\n", 403, monitor.VerdictDenied},
	} {
		t.Run(tt.proto+tt.path, func(t *testing.T) {
			ic.rec.Reset()
			out, code := curl(t, ic.env, ic.internalFile, "api.example.com", tt.path, tt.proto)
			if code != 0 || out != tt.want {
				t.Fatalf("curl: exit %d, output %q, want %q", code, out, tt.want)
			}
			ev := ic.rec.Wait(t, 1)[0]
			if ev.Verdict != tt.verdict || ev.L7.Method != "GET" || ev.L7.Path != tt.path || ev.L7.Status != tt.status || ev.L7.ServerName != "api.example.com" {
				t.Errorf("event %s %+v", ev.Verdict, ev.L7)
			}
		})
	}
}

// TestInterceptUpstreamProtocol: the client is offered the protocol the
// upstream chose: a client offering h2 to an HTTP/1.1-only upstream speaks
// HTTP/1.1 end to end, and so does one offering only HTTP/1.1 to an h2
// upstream.
func TestInterceptUpstreamProtocol(t *testing.T) {
	h1 := newInterceptionALPN(t, interceptPolicy, []string{"http/1.1"})
	if out, code := curl(t, h1.env, h1.internalFile, "api.example.com", "/public", "--http2", "-w", " %{http_version}"); code != 0 || out != "upstream HTTP/1.1 /public sni=api.example.com\n 1.1" {
		t.Errorf("h2 client, HTTP/1.1 upstream: exit %d %q", code, out)
	}
	h2 := newInterception(t, interceptPolicy)
	if out, code := curl(t, h2.env, h2.internalFile, "api.example.com", "/public", "--http1.1", "-w", " %{http_version}"); code != 0 || out != "upstream HTTP/1.1 /public sni=api.example.com\n 1.1" {
		t.Errorf("HTTP/1.1 client: exit %d %q", code, out)
	}
}

// TestInterceptUntrustedUpstream: an upstream whose certificate the
// originatingTLS's CA does not sign is never reached in the clear: 502,
// and the event says why.
func TestInterceptUntrustedUpstream(t *testing.T) {
	ic := newInterception(t, interceptPolicy)
	ic.secrets.Put("default", "back", map[string][]byte{"ca.crt": newCA(t, "some other CA").PEM})
	for _, proto := range []string{"--http2", "--http1.1"} {
		ic.rec.Reset()
		out, code := curl(t, ic.env, ic.internalFile, "api.example.com", "/public", proto, "-o", "/dev/null", "-w", "%{http_code}")
		if code != 0 || out != "502" {
			t.Fatalf("curl %s: exit %d, %q, want 502", proto, code, out)
		}
		ev := ic.rec.Wait(t, 1)[0]
		if ev.Verdict != monitor.VerdictError || ev.L7.Status != 502 || !strings.Contains(ev.Reason, "certificate signed by unknown authority") || !strings.Contains(ev.Reason, "default/back") {
			t.Errorf("event %s %q %+v", ev.Verdict, ev.Reason, ev.L7)
		}
	}
}

// TestInterceptClientCertificates: a terminatingTLS that names its
// trustedCA requires client certificates signed by it; curl without one
// fails the handshake, with one it passes.
func TestInterceptClientCertificates(t *testing.T) {
	ic := newInterception(t, strings.Replace(interceptPolicy, "terminatingTLS: {secret: {name: front}}", "terminatingTLS: {secret: {name: front}, trustedCA: ca.crt}", 1))
	if out, code := curl(t, ic.env, ic.internalFile, "api.example.com", "/public"); code == 0 {
		t.Fatalf("curl without a client certificate: %q, want a handshake failure", out)
	}
	ev := ic.rec.Wait(t, 1)[0]
	if ev.Verdict != monitor.VerdictError || ev.L7.Refused != "tls-handshake" {
		t.Errorf("event %s %q %+v", ev.Verdict, ev.Reason, ev.L7)
	}
	crt, key := ic.internal.issue(t, "mediabot")
	out, code := curl(t, ic.env, ic.internalFile, "api.example.com", "/public", "--cert", file(t, "c.pem", crt), "--key", file(t, "k.pem", key))
	if code != 0 || !strings.Contains(out, "upstream HTTP/2.0 /public") {
		t.Fatalf("curl with a client certificate: exit %d %q", code, out)
	}
}

// TestInterceptSecretUnusable: a reference that is missing, refused or
// unparsable resets the connection, with an event naming the policy and
// the reference and holding no key material.
func TestInterceptSecretUnusable(t *testing.T) {
	ic := newInterception(t, interceptPolicy)
	for _, tt := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"missing", func() { ic.secrets.Delete("default", "front") }, "secret default/front not found"},
		{"refused", func() { ic.secrets.Refuse("default", "front", "no ReferenceGrant permits it") }, "secret default/front refused: no ReferenceGrant permits it"},
		{"unparsable", func() {
			ic.secrets.Put("default", "front", map[string][]byte{"tls.crt": ic.internal.PEM, "tls.key": ic.frontKey})
		}, `secret default/front keys "tls.crt" and "tls.key"`},
		{"no CA upstream", func() {
			crt, key := ic.internal.issue(t, "x", "api.example.com")
			ic.secrets.Put("default", "front", map[string][]byte{"tls.crt": crt, "tls.key": key})
			ic.secrets.Put("default", "back", map[string][]byte{"tls.key": ic.frontKey})
		}, `secret default/back has no key "ca.crt"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ic.rec.Reset()
			tt.setup()
			if out, code := curl(t, ic.env, ic.internalFile, "api.example.com", "/public"); code == 0 {
				t.Fatalf("curl: %q, want a failure", out)
			}
			ev := ic.rec.Wait(t, 1)[0]
			if ev.Verdict != monitor.VerdictError || ev.L7.Refused != "tls-secret" || !strings.Contains(ev.Reason, tt.want) || !strings.Contains(ev.Reason, "TrafficPolicy default/tls") {
				t.Errorf("event %s %q %+v", ev.Verdict, ev.Reason, ev.L7)
			}
			b, _ := json.Marshal(ev)
			if strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), "CERTIFICATE") {
				t.Errorf("event holds PEM material: %s", b)
			}
		})
	}
}

// TestInterceptRotation: a new certificate put into the secret is what
// the next handshake presents; no restart.
func TestInterceptRotation(t *testing.T) {
	ic := newInterception(t, interceptPolicy)
	peer := func() string {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(ic.internal.PEM)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		raw, err := ic.dial(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c := ctls.Client(raw, &ctls.Config{ServerName: "api.example.com", RootCAs: roots})
		defer c.Close()
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := peer(); got != "intercepted api.example.com" {
		t.Fatalf("before the rotation: %q", got)
	}
	crt, key := ic.internal.issue(t, "rotated", "api.example.com")
	ic.secrets.Put("default", "front", map[string][]byte{"tls.crt": crt, "tls.key": key})
	if got := peer(); got != "rotated" {
		t.Fatalf("after the rotation: %q", got)
	}
}
