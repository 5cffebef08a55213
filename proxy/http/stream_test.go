package http_test

import (
	"io"
	"net/http"
	"testing"
)

func TestHTTP1Chunked(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	// A chunked request with a trailer, then a second request on the same
	// connection.
	rc.send(t, "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
		"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Sum: 7\r\n\r\n")
	res, body := rc.response(t, "POST")
	if want := `got 7 abcdefg te=[chunked] trailer="7"`; res.StatusCode != 200 || body != want {
		t.Fatalf("got %d %q, want %q", res.StatusCode, body, want)
	}
	// A chunked response, with its trailer.
	rc.send(t, "GET /public/chunked HTTP/1.1\r\nHost: h\r\n\r\n")
	res, body = rc.response(t, "GET")
	if res.StatusCode != 200 || body != "part0;part1;part2;" || res.Trailer.Get("X-Sum") != "3" || len(res.TransferEncoding) != 1 {
		t.Fatalf("got %d %q trailer %v te %v", res.StatusCode, body, res.Trailer, res.TransferEncoding)
	}
	// A denied chunked request: 403, and the connection closes (its body
	// is not read).
	rc.send(t, "POST /private HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if res, _ := rc.response(t, "POST"); res.StatusCode != 403 || !rc.closed() {
		t.Fatalf("got %d, want 403 and close", res.StatusCode)
	}
}

func TestHTTP1Upgrade(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	res, _ := rc.response(t, "GET")
	if res.StatusCode != 101 || res.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("got %d %v, want 101", res.StatusCode, res.Header)
	}
	for _, msg := range []string{"ping", "and pong"} {
		rc.send(t, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(rc.br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo: %q %v", buf, err)
		}
	}
	// An upgrade to h2c is not passed on: the request goes on as a plain
	// one (the upstream sees no Upgrade) and the connection stays HTTP/1.1.
	rc = e.raw(t)
	rc.send(t, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
	if res, body := rc.response(t, "GET"); res.StatusCode != 400 || body != "no upgrade\n" {
		t.Fatalf("h2c upgrade: got %d %q, want the upstream's 400 for a request without Upgrade", res.StatusCode, body)
	}
	// An upgrade the policy does not allow.
	rc = e.raw(t)
	rc.send(t, "GET /ws2 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if res, _ := rc.response(t, "GET"); res.StatusCode != 403 || !rc.closed() {
		t.Fatalf("got %d, want 403 and close", res.StatusCode)
	}
}

// A response the upstream cuts short reaches the client cut short, never
// as a complete one, on both protocols.
func TestUpstreamCutMidResponse(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	for name, c := range map[string]*http.Client{"http/1.1": e.client(), "h2": e.h2client()} {
		res, err := c.Get("http://h/public/abort")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err == nil {
			t.Errorf("%s: the client read %q as a whole body", name, b)
		}
	}
}
