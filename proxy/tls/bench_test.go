package tls_test

import (
	"context"
	ctls "crypto/tls"
	"crypto/x509"
	"io"
	"net"
	nethttp "net/http"
	"testing"
)

// benchClient is an HTTP/1.1 client of the interception env trusting the
// internal CA; keepAlive false makes every request a new TLS handshake.
func benchClient(ic *interception, keepAlive bool) *nethttp.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ic.internal.PEM)
	return &nethttp.Client{Transport: &nethttp.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return ic.dial(ctx, "", "") },
		TLSClientConfig:   &ctls.Config{RootCAs: roots, ServerName: "api.example.com"},
		DisableKeepAlives: !keepAlive,
		ForceAttemptHTTP2: false,
	}}
}

func benchIntercept(b *testing.B, keepAlive bool) {
	ic := newInterception(b, interceptPolicy)
	hc := benchClient(ic, keepAlive)
	get := func() {
		res, err := hc.Get("https://api.example.com/public")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
	get()
	b.ResetTimer()
	for range b.N {
		get()
	}
}

// BenchmarkInterceptKeepAlive: HTTP/1.1 requests on one intercepted
// keep-alive connection (terminate, judge, re-originate on a pooled
// upstream connection).
func BenchmarkInterceptKeepAlive(b *testing.B) { benchIntercept(b, true) }

// BenchmarkInterceptHandshake: one new client TLS handshake per request
// (the upstream connections stay pooled).
func BenchmarkInterceptHandshake(b *testing.B) { benchIntercept(b, false) }
