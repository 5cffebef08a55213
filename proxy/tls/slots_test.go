package tls_test

import (
	"context"
	ctls "crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"portcullis.dev/portcullis/proxy"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// TestSlotsReclaimedBeforeHello: behind the proxy core at its connection
// limit, a socket that never sent a ClientHello is reset to make room for
// a new client, while a connection past its hello keeps its slot.
func TestSlotsReclaimedBeforeHello(t *testing.T) {
	upCA := newCA(t, "upstream CA")
	up := startUpstream(t, upCA, "api.example.com")
	e := &env{store: &proxy.Store{}, secrets: proxytls.NewSecrets(), rec: &recorder{}}
	e.setPolicy(t, portRule(serverNamesPolicy), up.Port())
	ts, err := proxytls.New(proxytls.Options{Resolver: e.store, Record: e.rec.Record})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{Resolver: e.store, TLS: ts, Record: e.rec.Record, MaxConns: 2,
		Flow: func(c net.Conn) (netip.AddrPort, netip.AddrPort) {
			return netip.AddrPortFrom(clientIP, c.RemoteAddr().(*net.TCPAddr).AddrPort().Port()), up
		}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close() })
	e.addr = ln.Addr().(*net.TCPAddr).AddrPort()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(upCA.PEM)
	handshake := func() *ctls.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		raw, err := e.dial(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c := ctls.Client(raw, &ctls.Config{ServerName: "api.example.com", RootCAs: roots})
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	busy := handshake()
	silent, err := e.dial(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(100 * time.Millisecond)
	handshake() // at the limit: the silent socket's slot is taken
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the silent socket: %v, want it reset", err)
	}
	// The busy connection still reaches the upstream.
	fmt.Fprintf(busy, "GET /x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 12)
	if _, err := busy.Read(buf); err != nil || string(buf) != "HTTP/1.1 200" {
		t.Fatalf("the busy connection: %q %v", buf, err)
	}
	found := false
	for _, ev := range e.rec.Events() {
		found = found || (ev.L7 != nil && ev.L7.Refused == proxy.RefusedSlotReclaimed)
	}
	if !found {
		t.Error("no slot-reclaimed event")
	}
}
