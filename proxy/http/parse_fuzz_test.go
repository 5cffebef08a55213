package http

import (
	"bufio"
	"bytes"
	"io"
	nethttp "net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseRequest parses a request head and, when the proxy accepts it,
// writes it upstream as the proxy would and parses that with net/http (a
// typical upstream): both must agree on the method, target, host and body
// framing, and the upstream must read exactly the body the proxy sent and
// nothing more, or a request could be smuggled past the policy.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET /public HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
		"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nConnection: foo, Content-Length\r\nFoo: x\r\n\r\n",
		"GET http://a.example:8080?x HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"OPTIONS * HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
		"\r\nGET / HTTP/1.1\nhost: h\nx-a:  b \n\n",
	} {
		f.Add([]byte(s))
	}
	srv := New(Options{})
	f.Fuzz(func(t *testing.T, head []byte) {
		var r request
		br := bufio.NewReader(bytes.NewReader(head))
		raw, err := readHead(br, nil, 8<<10, 50, true)
		if err != nil {
			return
		}
		if err := parseRequest(string(raw), &r, 50); err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("parse error %v is not an HTTP error", err)
			}
			return
		}
		switch {
		case r.chunked && r.contentLength >= 0:
			t.Fatal("both chunked and a Content-Length")
		case r.path == "" || (r.path[0] != '/' && r.path != "*"):
			t.Fatalf("path %q not in origin form", r.path)
		}
		// The proxy's upstream request, with a body as framed.
		var body string
		switch {
		case r.chunked:
			body = "3\r\nabc\r\n0\r\n\r\n"
		case r.contentLength > 0:
			if r.contentLength > 1<<20 {
				return
			}
			body = strings.Repeat("b", int(r.contentLength))
		}
		var out bytes.Buffer
		h := &h1conn{s: srv, br: bufio.NewReader(strings.NewReader(body)), dst: netip.MustParseAddrPort("127.0.0.3:80")}
		u := &upConn{bw: bufio.NewWriter(&out)}
		if err := h.sendRequest(u, &r, nil); err != nil {
			t.Fatalf("writing the request: %v", err)
		}
		// A marker follows: the upstream must find it as the next request.
		out.WriteString("GET /next HTTP/1.1\r\nHost: n\r\n\r\n")
		ur := bufio.NewReader(&out)
		req, err := nethttp.ReadRequest(ur)
		if err != nil {
			t.Fatalf("the upstream cannot parse %q: %v", out.String(), err)
		}
		if req.Method != r.method || req.RequestURI != r.path || (req.Host != r.host && r.host != "") {
			t.Fatalf("upstream sees %s %q host %q, proxy decided %s %q host %q", req.Method, req.RequestURI, req.Host, r.method, r.path, r.host)
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("reading the body upstream: %v", err)
		}
		want := len(body)
		if r.chunked {
			want = 3
		}
		if len(b) != want {
			t.Fatalf("upstream body %d bytes, want %d", len(b), want)
		}
		next, err := nethttp.ReadRequest(ur)
		if err != nil || next.RequestURI != "/next" {
			t.Fatalf("the upstream lost the request boundary: %v %v", next, err)
		}
	})
}

// FuzzParseResponse feeds an upstream's response to the proxy's response
// path and parses what the client would get with net/http: a response the
// proxy passes on must parse, carry the status the proxy saw, and end
// where the proxy ends it (the next response follows intact), so that an
// upstream cannot desynchronize the client's connection.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	srv := New(Options{})
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		var out bytes.Buffer
		h := &h1conn{s: srv, bw: bufio.NewWriter(&out)}
		h.req.minor = 1
		h.req.method = method
		u := &upConn{br: bufio.NewReader(bytes.NewReader(in))}
		if err := h.readResponseHead(u, &h.req); err != nil {
			return
		}
		resp := &h.resp
		if resp.status == 101 {
			return // spliced, not framed
		}
		bodyless := resp.bodyless(method)
		delimited := !bodyless && !resp.chunked && resp.contentLength < 0
		h.writeResponseHead(resp, resp.chunked && !bodyless, delimited)
		err := h.copyResponseBody(u, resp, bodyless, resp.chunked)
		h.bw.Flush()
		if err != nil {
			return // the client connection is closed after a cut body
		}
		if !delimited {
			out.WriteString("HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n")
		}
		cr := bufio.NewReader(&out)
		var res *nethttp.Response
		for {
			res, err = nethttp.ReadResponse(cr, &nethttp.Request{Method: method})
			if err != nil {
				t.Fatalf("the client cannot parse %q: %v", out.String(), err)
			}
			if res.StatusCode >= 200 {
				break // the proxy passed interim responses on
			}
		}
		if res.StatusCode != resp.status {
			t.Fatalf("the client sees %d, the proxy %d", res.StatusCode, resp.status)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			t.Fatalf("the client cannot read the body of %q: %v", out.String(), err)
		}
		if delimited {
			return
		}
		next, err := nethttp.ReadResponse(cr, &nethttp.Request{Method: "GET"})
		if err != nil || next.StatusCode != 299 {
			t.Fatalf("the client lost the response boundary in %q: %v", out.String(), err)
		}
	})
}
