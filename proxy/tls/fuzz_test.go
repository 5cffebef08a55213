package tls_test

import (
	"bytes"
	"context"
	ctls "crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// clientHello returns the first flight of a crypto/tls client for sni
// offering alpn.
func clientHello(t testing.TB, sni string, alpn ...string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		c := ctls.Client(a, &ctls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.HandshakeContext(ctx)
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64<<10)
	n, _ := b.Read(buf)
	b.Close()
	return buf[:n]
}

// TestReadClientHello: the name and ALPN are read, every byte consumed is
// returned (a hello split into many records, and bytes after it, too),
// and what is not TLS is ErrNotTLS.
func TestReadClientHello(t *testing.T) {
	hello := clientHello(t, "api.example.com", "h2", "http/1.1")
	h, err := proxytls.ReadClientHello(bytes.NewReader(hello))
	if err != nil || h.ServerName != "api.example.com" || len(h.ALPN) != 2 || h.ALPN[0] != "h2" || !bytes.Equal(h.Raw, hello) {
		t.Fatalf("ReadClientHello = %+v, %v", h, err)
	}
	// The same handshake message in records of 50 bytes each.
	body := hello[5:]
	var split []byte
	for len(body) > 0 {
		n := min(50, len(body))
		split = append(split, 22, 3, 1, 0, byte(n))
		split = append(split, body[:n]...)
		body = body[n:]
	}
	if h, err := proxytls.ReadClientHello(bytes.NewReader(split)); err != nil || h.ServerName != "api.example.com" || !bytes.HasPrefix(split, h.Raw) {
		t.Fatalf("split hello: %+v, %v", h, err)
	}
	for _, in := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), hello[:20], {22, 3, 1, 0, 0}} {
		if _, err := proxytls.ReadClientHello(bytes.NewReader(in)); !errors.Is(err, proxytls.ErrNotTLS) {
			t.Errorf("ReadClientHello(%q) error %v, want ErrNotTLS", in, err)
		}
	}
}

// FuzzReadClientHello: no input panics, and what is returned is a prefix
// of the input (the proxy replays exactly the bytes it consumed).
func FuzzReadClientHello(f *testing.F) {
	f.Add(clientHello(f, "api.example.com", "h2"))
	f.Add(clientHello(f, ""))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := proxytls.ReadClientHello(bytes.NewReader(in))
		if err != nil {
			if h != nil {
				t.Fatal("a Hello with an error")
			}
			return
		}
		if !bytes.HasPrefix(in, h.Raw) {
			t.Fatalf("Raw is not a prefix of the input")
		}
	})
}
