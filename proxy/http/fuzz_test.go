package http_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// fuzzPolicy allows GET /public(/.*)? only.
var fuzzPolicy = policytest.Ingress("fuzz", "80", `http: [{method: GET, path: "/public(/.*)?"}]`)

var allowedPath = regexp.MustCompile(`^/public(/.*)?$`)

// fuzzConn is a client connection that sends data and then EOF, and
// drops what the proxy answers. With linger, the EOF comes that much
// later: an HTTP/2 server cancels its streams when the client goes, so
// the streams need time to reach the upstream.
type fuzzConn struct {
	r      *bytes.Reader
	linger time.Duration
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF && c.linger > 0 {
		time.Sleep(c.linger)
		c.linger = 0
	}
	return n, err
}

func (c *fuzzConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// fuzzUpstream serves the proxy's upstream connections over pipes and
// fails the test for any request the policy does not allow.
type fuzzUpstream struct {
	t        *testing.T
	requests atomic.Int64
	wg       sync.WaitGroup
}

func (u *fuzzUpstream) check(method, uri string) {
	u.requests.Add(1)
	if method != "GET" || !allowedPath.MatchString(uri) {
		u.t.Errorf("the proxy forwarded %s %q, which the policy denies", method, uri)
	}
}

func (u *fuzzUpstream) dial(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
	c, s := net.Pipe()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer s.Close()
		s.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(s)
		if p, _ := br.Peek(3); string(p) == "PRI" {
			var h2 http2.Server
			h2.ServeConn(&readConn{s, br}, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				u.check(r.Method, r.RequestURI)
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, "ok")
			})})
			return
		}
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			u.check(req.Method, req.RequestURI)
			io.Copy(io.Discard, req.Body)
			io.WriteString(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}()
	return c, nil
}

// readConn reads through a bufio.Reader that may hold peeked bytes.
type readConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// FuzzServeConn feeds raw bytes to the proxy as a client connection: it
// must not panic, and nothing the policy denies may reach the upstream,
// which parses what it receives as HTTP/1.1 (or HTTP/2) itself, so a
// request smuggled inside another's body would be seen there.
func FuzzServeConn(f *testing.F) {
	for _, s := range []string{
		"GET /public HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /public/a HTTP/1.1\r\nHost: h\r\n\r\nGET /private HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /public HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2e\r\nGET /private HTTP/1.1\r\nHost: h\r\n\r\n\r\n0\r\n\r\n",
		"GET /public HTTP/1.1\r\nHost: h\r\nContent-Length: 38\r\n\r\nGET /private HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/public?x HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /public HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Content-Length\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc",
		"GET /public HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET /public HTTP/1.0\r\n\r\n",
		"\r\nGET /public HTTP/1.1\nHost: h\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
	} {
		f.Add([]byte(s))
	}
	f.Add(h2Seed("GET", "/public/x", "GET", "/private"))
	f.Add(h2Seed("POST", "/public", "GET", "/public/a?b"))
	store := &proxy.Store{}
	store.Set(snapshot(f, fuzzPolicy, 80))
	src := netip.AddrPortFrom(clientIP, 40000)
	dst := netip.AddrPortFrom(serverIP, 80)
	f.Fuzz(func(t *testing.T, data []byte) {
		// A connection that never ends is a defect: crash with the input.
		watchdog := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("ServeConn hung on %q", data)) })
		defer watchdog.Stop()
		up := &fuzzUpstream{t: t}
		var forwarded atomic.Int64
		s := proxyhttp.New(proxyhttp.Options{
			Resolver: store,
			Dial:     up.dial,
			Record: func(e monitor.Event) {
				if e.Verdict == monitor.VerdictForwarded {
					forwarded.Add(1)
				}
				if strings.HasPrefix(e.Reason, "internal error") {
					t.Errorf("the connection ended on a bug: %s", e.Reason)
				}
			},
			ReadHeaderTimeout: time.Second,
			IdleTimeout:       time.Second,
		})
		fc := &fuzzConn{r: bytes.NewReader(data)}
		if bytes.HasPrefix(data, []byte(http2.ClientPreface)) {
			fc.linger = 100 * time.Millisecond
		}
		s.ServeConn(context.Background(), fc, src, dst)
		s.Close()
		up.wg.Wait()
		if n, m := up.requests.Load(), forwarded.Load(); n > m {
			t.Errorf("the upstream got %d requests but only %d were forwarded with a verdict", n, m)
		}
	})
}

// FuzzDecideHTTP runs the rule matching through ConnPolicy.DecideHTTP:
// it must not panic, a verdict must be consistent, and it must agree with
// the policy's meaning.
func FuzzDecideHTTP(f *testing.F) {
	f.Add("GET", "/public/a?x=1", "h", "X-Replaced", "old")
	f.Add("POST", "/upload", "h:80", "X-Deleted", "bad")
	f.Add("GET", "/actions", "", "x-added", "no")
	f.Add("DELETE", "/public", "h", "", "")
	cp := snapshot(f, webPolicy, 80).Resolve(netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80), 6)
	if cp.Denied != nil || len(cp.Sides) != 1 {
		f.Fatalf("unexpected connection policy %+v", cp)
	}
	f.Fuzz(func(t *testing.T, method, path, host, name, value string) {
		h := http.Header{}
		if name != "" {
			h[name] = []string{value}
		}
		d := cp.DecideHTTP(l7.HTTPRequest{Method: method, Path: path, Host: host, Header: h})
		switch {
		case d.Allowed && (d.DeniedBy != nil || d.Audited || d.Rule == ""):
			t.Fatalf("allowed with %+v", d)
		case !d.Allowed && (d.DeniedBy == nil || d.Actions != nil || d.DeniedBy.Policies() != "TrafficPolicy default/web"):
			t.Fatalf("denied with %+v", d)
		}
		if want := method == "GET" && allowedPath.MatchString(path); want && !d.Allowed {
			t.Fatalf("%s %q denied", method, path)
		}
		if method != "GET" && method != "POST" && d.Allowed {
			t.Fatalf("%s allowed", method)
		}
		for _, a := range d.Actions {
			if path != "/actions" || a.Name == "" {
				t.Fatalf("action %v for %s %q", a, method, path)
			}
		}
	})
}

// h2Seed is an HTTP/2 connection with two requests (method, path pairs),
// for the fuzzer to start from valid frames.
func h2Seed(reqs ...string) []byte {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := 0; i+1 < len(reqs); i += 2 {
		hb.Reset()
		for _, f := range [][2]string{{":method", reqs[i]}, {":scheme", "http"}, {":authority", "h"}, {":path", reqs[i+1]}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	return buf.Bytes()
}
