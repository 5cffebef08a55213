package http_test

import (
	"bufio"
	"io"
	"net/textproto"
	"testing"
)

// hopFields are the connection-specific fields of RFC 9110 §7.6.1 and
// RFC 9113 §3.2.1 that a client or an upstream may send without changing
// the framing, each with a value the other side must never see.
var hopFields = [][2]string{
	{"Connection", "keep-alive"},
	{"Keep-Alive", "timeout=5"},
	{"Proxy-Connection", "keep-alive"},
	{"TE", "trailers"},
	{"Upgrade", "h2c"},
	{"HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"},
}

// The same connection-specific fields stop at the proxy in both
// directions: the upstream does not get the client's, the client does not
// get the upstream's; the end-to-end fields pass.
func TestHopByHopFieldsStopAtTheProxy(t *testing.T) {
	heads := make(chan textproto.MIMEHeader, 1)
	ln := listenServer(t)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tr := textproto.NewReader(bufio.NewReader(c))
		if _, err := tr.ReadLine(); err != nil {
			return
		}
		h, err := tr.ReadMIMEHeader()
		if err != nil {
			return
		}
		heads <- h
		resp := "HTTP/1.1 200 OK\r\nX-End-To-End: up\r\n"
		for _, f := range hopFields {
			resp += f[0] + ": " + f[1] + "\r\n"
		}
		_, _ = io.WriteString(c, resp+"Content-Length: 2\r\n\r\nok")
	}()
	e := newEnv(t, addrOf(ln), webPolicy, nil)

	req := "GET /public/hop HTTP/1.1\r\nHost: h\r\nX-End-To-End: down\r\n"
	for _, f := range hopFields {
		req += f[0] + ": " + f[1] + "\r\n"
	}
	rc := e.raw(t)
	rc.send(t, req+"\r\n")
	res, body := rc.response(t, "GET")
	if res.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q, want 200 ok", res.StatusCode, body)
	}
	up := <-heads
	if up.Get("X-End-To-End") != "down" {
		t.Errorf("the upstream did not get X-End-To-End: %v", up)
	}
	if res.Header.Get("X-End-To-End") != "up" {
		t.Errorf("the client did not get X-End-To-End: %v", res.Header)
	}
	for _, f := range hopFields {
		if v := up.Values(f[0]); len(v) > 0 {
			t.Errorf("the client's %s reached the upstream: %q", f[0], v)
		}
		if v := res.Header.Values(f[0]); len(v) > 0 {
			t.Errorf("the upstream's %s reached the client: %q", f[0], v)
		}
	}
}
