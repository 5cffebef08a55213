package http_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestPathNormalized: the path is normalized before it is judged and the
// upstream receives the normalized path, on HTTP/1.1 and HTTP/2; escaped
// slashes, backslashes and malformed escapes are refused with 400. Under
// GET /public(/.*)?, dot segments (plain or escaped) cannot climb out of
// /public.
func TestPathNormalized(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	tests := []struct {
		path   string
		status int
		seen   string // the path the upstream received
	}{
		{"/public/../secret", 403, ""},
		{"/public/%2e%2e/secret", 403, ""},
		{"/public/%2E%2E/secret", 403, ""},
		{"/public/x/../../secret", 403, ""},
		{"/public/..%2fsecret", 400, ""},
		{"/public/..%2Fsecret", 400, ""},
		{"/public/a%5cb", 400, ""},
		{"/public/a\\b", 400, ""},
		{"/public/%zz", 400, ""},
		{"/public//x/./y/%7euser?q=/../a", 200, "/public/x/y/~user?q=/../a"},
		{"/secret/../public/x", 200, "/public/x"},
		{"//public/x", 200, "/public/x"},
		{"/public/a%20b", 200, "/public/a%20b"},
	}
	for _, tt := range tests {
		t.Run("http/1.1 "+tt.path, func(t *testing.T) {
			rc := e.raw(t)
			rc.send(t, "GET "+tt.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
			res, body := rc.response(t, "GET")
			if res.StatusCode != tt.status {
				t.Fatalf("got %d %q, want %d", res.StatusCode, body, tt.status)
			}
			if tt.seen != "" && body != "hello GET "+tt.seen+" via HTTP/1.1" {
				t.Fatalf("upstream saw %q, want %s", body, tt.seen)
			}
		})
		if strings.Contains(tt.path, "\\") || strings.HasPrefix(tt.path, "//") || strings.Contains(tt.path, "%zz") {
			continue // not sent by the HTTP/2 client, or refused by x/net's server
		}
		t.Run("h2 "+tt.path, func(t *testing.T) {
			req := newReq(t, "GET", "http://server/", nil)
			req.URL.Opaque = tt.path
			r := do(t, e.h2client(), req)
			if r.status != tt.status {
				t.Fatalf("got %d %q, want %d", r.status, r.body, tt.status)
			}
			if tt.seen != "" && r.body != "hello GET "+tt.seen+" via HTTP/2.0" {
				t.Fatalf("upstream saw %q, want %s", r.body, tt.seen)
			}
		})
	}
}

// TestHostAndFieldNames: a Host or :authority that is not an RFC 3986
// host with an optional port, and a header field name with an
// underscore, are refused with 400 before any verdict.
func TestHostAndFieldNames(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	tests := []struct {
		host, field string
		status      int
	}{
		{"h:8080", "X-User: a", 200},
		{"[::1]:80", "X-User: a", 200},
		{"h/x", "X-User: a", 400},
		{"[::1", "X-User: a", 400},
		{"h:80x", "X-User: a", 400},
		{"h@evil", "X-User: a", 400},
		{"h", "X_User: a", 400},
	}
	for _, tt := range tests {
		rc := e.raw(t)
		rc.send(t, "GET /public/a HTTP/1.1\r\nHost: "+tt.host+"\r\n"+tt.field+"\r\n\r\n")
		if res, body := rc.response(t, "GET"); res.StatusCode != tt.status {
			t.Errorf("http/1.1 Host %q, %q: got %d %q, want %d", tt.host, tt.field, res.StatusCode, body, tt.status)
		}
		req := newReq(t, "GET", "http://server/public/a", nil)
		req.Host = tt.host
		name, value, _ := strings.Cut(tt.field, ": ")
		req.Header[name] = []string{value}
		res, err := e.h2client().Do(req)
		if err != nil {
			if tt.status == 400 {
				continue // the client itself refused to send it
			}
			t.Fatalf("h2 %q: %v", tt.host, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status {
			t.Errorf("h2 :authority %q, %q: got %d, want %d", tt.host, tt.field, res.StatusCode, tt.status)
		}
	}
}

// TestH2UpstreamAddsNothing: the HTTP/2 upstream leg adds no
// Accept-Encoding (Go's transport would add gzip and decompress).
func TestH2UpstreamAddsNothing(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.h2client()
	c.Transport.(*http2.Transport).DisableCompression = true // the client adds none either
	r := do(t, c, newReq(t, "GET", "http://server/public/a", nil))
	if r.status != 200 || r.header.Get("X-Seen-Accept-Encoding") != "[]" {
		t.Fatalf("got %d, upstream saw Accept-Encoding %q", r.status, r.header.Get("X-Seen-Accept-Encoding"))
	}
}

// TestTLSOnPlainPort: a TLS ClientHello on the plain HTTP port is answered
// 400 at once (not after the header timeout) and reported.
func TestTLSOnPlainPort(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	start := time.Now()
	rc.send(t, "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
	res, _ := rc.response(t, "GET")
	if res.StatusCode != 400 || time.Since(start) > time.Second {
		t.Fatalf("got %d after %s, want 400 at once", res.StatusCode, time.Since(start))
	}
	if ev := e.rec.Wait(t, 1)[0]; ev.L7.Refused != "tls-on-plain-port" {
		t.Fatalf("event %+v %+v", ev, ev.L7)
	}
}
