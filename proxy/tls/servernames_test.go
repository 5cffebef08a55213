package tls_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
)

const serverNamesPolicy = `
serverNames: [api.example.com, "*.svc.example.com", "**.deep.example.com"]
`

// opensslConnect runs openssl s_client from the client's address to the
// proxy with server name sni ("" sends none) and returns its output.
func opensslConnect(t *testing.T, e *env, caFile, sni string) (string, error) {
	t.Helper()
	args := []string{"s_client", "-brief", "-connect", e.addr.String(), "-bind", clientIP.String() + ":0", "-CAfile", caFile, "-verify_return_error"}
	if sni == "" {
		args = append(args, "-noservername")
	} else {
		args = append(args, "-servername", sni, "-verify_hostname", sni)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestServerNamesOpenSSL: openssl s_client reaches the upstream itself
// (its certificate is the upstream's: nothing was decrypted) for the names
// the patterns match, and sees the alert access_denied for the others and
// for a ClientHello without a name; every connection has an event naming
// the server name and the policy.
func TestServerNamesOpenSSL(t *testing.T) {
	upCA := newCA(t, "upstream CA")
	up := startUpstream(t, upCA, "api.example.com", "a.svc.example.com", "x.y.deep.example.com", "a.b.svc.example.com", "other.example.com", "localhost")
	e := newEnv(t, up, portRule(serverNamesPolicy))
	caFile := file(t, "ca.pem", upCA.PEM)
	for _, tt := range []struct {
		sni     string
		allowed bool
	}{
		{"api.example.com", true},
		{"a.svc.example.com", true},
		{"x.y.deep.example.com", true},
		{"a.b.svc.example.com", false}, // "*." is one label
		{"other.example.com", false},
		{"", false},
	} {
		t.Run(fmt.Sprintf("sni=%q", tt.sni), func(t *testing.T) {
			e.rec.Reset()
			out, err := opensslConnect(t, e, caFile, tt.sni)
			ev := e.rec.Wait(t, 1)[0]
			if ev.L7 == nil || ev.L7.ServerName != tt.sni || ev.Policy != "TrafficPolicy default/tls" {
				t.Errorf("event %+v %+v: want server name %q and the policy", ev, ev.L7, tt.sni)
			}
			if tt.allowed {
				if err != nil || !strings.Contains(out, "CN = upstream api.example.com") || !strings.Contains(out, "Verification: OK") {
					t.Fatalf("openssl: %v\n%s", err, out)
				}
				if ev.Verdict != monitor.VerdictForwarded || !strings.Contains(ev.Reason, "passed through without decrypting") {
					t.Errorf("event %s %q", ev.Verdict, ev.Reason)
				}
				return
			}
			if err == nil || !strings.Contains(out, "alert access denied") {
				t.Fatalf("openssl: %v, want the alert access denied:\n%s", err, out)
			}
			if ev.Verdict != monitor.VerdictDenied || !strings.Contains(ev.Reason, "TrafficPolicy default/tls") {
				t.Errorf("event %s %q", ev.Verdict, ev.Reason)
			}
			if tt.sni != "" && !strings.Contains(ev.Reason, fmt.Sprintf("%q", tt.sni)) {
				t.Errorf("reason %q does not name the server name", ev.Reason)
			}
		})
	}
}

// TestServerNamesCurl: curl gets the upstream's answer through the
// pass-through (the upstream saw the client's own ClientHello: it reports
// the server name), and a denied name fails with curl's TLS error naming
// the alert.
func TestServerNamesCurl(t *testing.T) {
	upCA := newCA(t, "upstream CA")
	up := startUpstream(t, upCA, "api.example.com", "other.example.com")
	e := newEnv(t, up, portRule(serverNamesPolicy))
	caFile := file(t, "ca.pem", upCA.PEM)
	for _, tt := range []struct {
		name, want string
		code       int
	}{
		{"api.example.com", "upstream HTTP/2.0 /x sni=api.example.com\n", 0},
		{"other.example.com", "alert access denied", 35},
	} {
		out, code := curl(t, e, caFile, tt.name, "/x")
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("curl %s: exit %d, want %d; output %q does not hold %q", tt.name, code, tt.code, out, tt.want)
		}
	}
}

// curl fetches https://name:port/path through the proxy (name resolved
// to the proxy's address) from the client's address, trusting caFile,
// and returns the body (or the error) and the exit code.
func curl(t *testing.T, e *env, caFile, name, path string, extra ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-sS", "--interface", clientIP.String(), "--cacert", caFile,
		"--resolve", fmt.Sprintf("%s:%d:%s", name, e.addr.Port(), e.addr.Addr()),
		fmt.Sprintf("https://%s:%d%s", name, e.addr.Port(), path)}, extra...)
	cmd := exec.CommandContext(ctx, "curl", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// TestServerNamesAudit: in audit mode a name the rules refuse passes
// through, with an AUDITED event naming it and the policy.
func TestServerNamesAudit(t *testing.T) {
	upCA := newCA(t, "upstream CA")
	up := startUpstream(t, upCA, "other.example.com")
	e := newEnv(t, up, portRule(serverNamesPolicy))
	e.setPolicyAudit(t, portRule(serverNamesPolicy), up.Port(), true)
	out, err := opensslConnect(t, e, file(t, "ca.pem", upCA.PEM), "other.example.com")
	if err != nil || !strings.Contains(out, "Verification: OK") {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	ev := e.rec.Wait(t, 1)[0]
	if ev.Verdict != monitor.VerdictAudited || ev.L7.ServerName != "other.example.com" || !strings.Contains(ev.Reason, "TrafficPolicy default/tls") {
		t.Errorf("event %s %q %+v", ev.Verdict, ev.Reason, ev.L7)
	}
}

// TestNotTLS: a cleartext client on a serverNames port is reset, with an
// event saying the port takes TLS only.
func TestNotTLS(t *testing.T) {
	upCA := newCA(t, "upstream CA")
	e := newEnv(t, startUpstream(t, upCA, "api.example.com"), portRule(serverNamesPolicy))
	c, err := e.dial(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 100)); err == nil || isTimeout(err) {
		t.Fatalf("read %d bytes, err %v: want the connection refused", n, err)
	}
	ev := e.rec.Wait(t, 1)[0]
	if ev.Verdict != monitor.VerdictError || ev.L7.Refused != "not-tls" || !strings.Contains(ev.Reason, "TLS connections only") {
		t.Errorf("event %s %q %+v", ev.Verdict, ev.Reason, ev.L7)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
