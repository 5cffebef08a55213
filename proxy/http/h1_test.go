package http_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy/policytest"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// upstream is a real net/http server on the server endpoint's address.
type upstream struct {
	addr     netip.AddrPort
	requests atomic.Int64
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	ln := listenServer(t)
	u := &upstream{addr: addrOf(ln)}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-User-Agent", fmt.Sprint(r.Header["User-Agent"]))
		w.Header().Set("X-Seen-Accept-Encoding", fmt.Sprint(r.Header["Accept-Encoding"]))
		fmt.Fprintf(w, "hello %s %s via %s", r.Method, r.RequestURI, r.Proto)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Host", r.Host)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "got %d %s te=%v trailer=%q", len(b), b, r.TransferEncoding, r.Trailer.Get("X-Sum"))
	})
	mux.HandleFunc("/public/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "3")
	})
	mux.HandleFunc("/public/abort", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection (HTTP/1.1) or stream (HTTP/2) is cut
	})
	mux.HandleFunc("/actions", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "added=%q replaced=%q deleted=%q logged=%q", r.Header.Values("X-Added"), r.Header.Values("X-Replaced"), r.Header.Values("X-Deleted"), r.Header.Values("X-Logged"))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo
	})
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: countRequests(&u.requests, mux), Protocols: &p}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return u
}

func countRequests(n *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// client is a net/http client that reaches the upstream through the proxy
// from the client endpoint's address.
func (e *env) client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: e.dial, MaxIdleConnsPerHost: 1}}
}

type result struct {
	status int
	body   string
	header http.Header
	reused bool
}

func do(t *testing.T, c *http.Client, req *http.Request) result {
	t.Helper()
	var reused bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	}))
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return result{status: res.StatusCode, body: string(b), header: res.Header, reused: reused}
}

func newReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestHTTP1AllowDeny(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.client()
	base := "http://app.example"
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/public/a?x=1", 200, "hello GET /public/a?x=1 via HTTP/1.1"},
		{"GET", "/private", 403, "Access denied\r\n"},
		{"DELETE", "/public/a", 403, "Access denied\r\n"},
		// The query is part of the path the rules see.
		{"GET", "/publicity", 403, "Access denied\r\n"},
		{"HEAD", "/private", 403, ""},
		{"GET", "/public", 200, "hello GET /public via HTTP/1.1"},
	}
	for i, tc := range tests {
		res := do(t, c, newReq(t, tc.method, base+tc.path, nil))
		if res.status != tc.status || res.body != tc.body {
			t.Errorf("%s %s: got %d %q, want %d %q", tc.method, tc.path, res.status, res.body, tc.status, tc.body)
		}
		if tc.status == 403 && res.header.Get("Content-Type") != "text/plain" {
			t.Errorf("%s %s: content-type %q", tc.method, tc.path, res.header.Get("Content-Type"))
		}
		if tc.status == 200 && res.header.Get("X-Seen-Host") != "app.example" {
			t.Errorf("%s %s: upstream saw host %q", tc.method, tc.path, res.header.Get("X-Seen-Host"))
		}
		// One keep-alive connection carries every request, denials included.
		if i > 0 && !res.reused {
			t.Errorf("%s %s: the client connection was not reused", tc.method, tc.path)
		}
	}
	if got := up.requests.Load(); got != 2 {
		t.Errorf("upstream got %d requests, want 2", got)
	}
	evs := e.rec.Wait(t, len(tests))
	for i, tc := range tests {
		ev := evs[i]
		want := monitor.VerdictForwarded
		if tc.status == 403 {
			want = monitor.VerdictDenied
		}
		if ev.Verdict != want || ev.Type != monitor.TypeL7 || ev.L7 == nil || ev.L7.Method != tc.method || ev.L7.Path != tc.path ||
			ev.L7.Status != tc.status || ev.L7.Protocol != "http/1.1" || ev.L7.Host != "app.example" {
			t.Errorf("event %d: %+v %+v, want %s %s %s %d", i, ev, ev.L7, want, tc.method, tc.path, tc.status)
		}
		if ev.Source.Pod != "client" || ev.Source.Namespace != "default" || ev.Destination.Pod != "server" || ev.Source.IP != "127.0.0.2" || len(ev.Source.Labels) == 0 {
			t.Errorf("event %d: endpoints %+v → %+v", i, ev.Source, ev.Destination)
		}
		if want == monitor.VerdictDenied && (ev.Policy != "TrafficPolicy default/web" || ev.Direction != "ingress" || ev.Reason != "no-l7-rule-matched") {
			t.Errorf("event %d: policy %q direction %q reason %q", i, ev.Policy, ev.Direction, ev.Reason)
		}
		if want == monitor.VerdictForwarded && !strings.Contains(ev.Policy, "default/web") {
			t.Errorf("event %d: policy %q does not name the allowing rule", i, ev.Policy)
		}
	}
}

// A policy change applies to the next request of a keep-alive connection.
func TestHTTP1PolicyChangeOnKeepAlive(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.client()
	if res := do(t, c, newReq(t, "GET", "http://h/public/x", nil)); res.status != 200 {
		t.Fatalf("before the change: %d %q", res.status, res.body)
	}
	e.store.Set(snapshot(t, otherPolicy, up.addr.Port()))
	res := do(t, c, newReq(t, "GET", "http://h/public/x", nil))
	if res.status != 403 || !res.reused {
		t.Fatalf("after the change: %d %q reused=%v, want 403 on the same connection", res.status, res.body, res.reused)
	}
	if res := do(t, c, newReq(t, "GET", "http://h/other", nil)); res.status != 200 || !res.reused {
		t.Fatalf("allowed by the new policy: %d %q reused=%v", res.status, res.body, res.reused)
	}
	evs := e.rec.Wait(t, 3)
	if evs[1].Policy != "TrafficPolicy default/other" {
		t.Errorf("the denial names %q", evs[1].Policy)
	}
}

// Without a policy snapshot, or when the flow's L7 policy is not HTTP,
// every request is refused.
func TestHTTP1NoVerdictRefused(t *testing.T) {
	up := startUpstream(t)
	kafkaPolicy := policytest.Ingress("kafka", "PORT", "kafka: [{topic: orders}]")
	for _, tc := range []struct{ name, yaml string }{{"no snapshot", ""}, {"kafka policy", kafkaPolicy}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, up.addr, tc.yaml, nil)
			c := e.client()
			for range 2 {
				if res := do(t, c, newReq(t, "GET", "http://h/public/x", nil)); res.status != 403 || res.body != "Access denied\r\n" {
					t.Fatalf("got %d %q, want 403", res.status, res.body)
				}
			}
			for _, ev := range e.rec.Wait(t, 2) {
				if ev.Verdict != monitor.VerdictDenied {
					t.Errorf("event %+v", ev)
				}
			}
		})
	}
	if n := up.requests.Load(); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
}

func TestHTTP1HeaderActions(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	req := newReq(t, "GET", "http://h/actions", nil)
	req.Header.Set("X-Replaced", "old")
	req.Header.Set("X-Deleted", "bad")
	req.Header.Set("X-Logged", "other") // LOG: reported, passed on as is
	res := do(t, e.client(), req)
	want := `added=["yes"] replaced=["new"] deleted=[] logged=["other"]`
	if res.status != 200 || res.body != want {
		t.Fatalf("got %d %q, want %q", res.status, res.body, want)
	}
	// A matching header is left alone.
	req = newReq(t, "GET", "http://h/actions", nil)
	req.Header.Set("X-Added", "yes")
	req.Header.Set("X-Replaced", "new")
	req.Header.Set("X-Deleted", "good")
	res = do(t, e.client(), req)
	if want := `added=["yes"] replaced=["new"] deleted=["good"] logged=[]`; res.body != want {
		t.Fatalf("got %q, want %q", res.body, want)
	}
}

// rawConn is a client connection for hand-written requests.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw(t *testing.T) *rawConn {
	t.Helper()
	c, err := e.dial(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		t.Fatal(err)
	}
}

func (r *rawConn) response(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return res, string(b)
}

// closed reports whether the proxy closed the connection (EOF with
// nothing more to read).
func (r *rawConn) closed() bool {
	_, err := r.br.ReadByte()
	return err == io.EOF
}

func TestHTTP1ExpectContinue(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	// The body is sent only after the interim response.
	if res, _ := rc.response(t, "POST"); res.StatusCode != 100 {
		t.Fatalf("got %d, want 100 Continue", res.StatusCode)
	}
	rc.send(t, "hello")
	res, body := rc.response(t, "POST")
	if res.StatusCode != 200 || body != "got 5 hello te=[] trailer=\"\"" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	// Denied: 403 without asking for the body, and the connection closes.
	rc = e.raw(t)
	rc.send(t, "POST /private HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if res, body := rc.response(t, "POST"); res.StatusCode != 403 || body != "Access denied\r\n" || !rc.closed() {
		t.Fatalf("denied: got %d %q, want 403 and close", res.StatusCode, body)
	}
}

// A denied request's small body is dropped and the connection goes on.
func TestHTTP1DeniedBodyDiscarded(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "POST /private HTTP/1.1\r\nHost: h\r\nContent-Length: 22\r\n\r\nGET /public HTTP/1.1\r\n\r\n")
	rc.send(t, "GET /public/next HTTP/1.1\r\nHost: h\r\n\r\n")
	if res, _ := rc.response(t, "POST"); res.StatusCode != 403 {
		t.Fatalf("got %d, want 403", res.StatusCode)
	}
	if res, body := rc.response(t, "GET"); res.StatusCode != 200 || body != "hello GET /public/next via HTTP/1.1" {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	if n := up.requests.Load(); n != 1 {
		t.Fatalf("upstream got %d requests, want 1", n)
	}
}

func TestHTTP1AbsoluteForm(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "GET http://app.example/public/abs?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n")
	res, body := rc.response(t, "GET")
	if res.StatusCode != 200 || body != "hello GET /public/abs?q=1 via HTTP/1.1" || res.Header.Get("X-Seen-Host") != "app.example" {
		t.Fatalf("got %d %q host %q", res.StatusCode, body, res.Header.Get("X-Seen-Host"))
	}
	rc.send(t, "GET http://app.example/private HTTP/1.1\r\nHost: app.example\r\n\r\n")
	if res, _ := rc.response(t, "GET"); res.StatusCode != 403 {
		t.Fatalf("got %d, want 403", res.StatusCode)
	}
}

// Ambiguous framing and malformed heads are refused with 400 and a closed
// connection, and nothing reaches the upstream.
func TestHTTP1BadRequests(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) { o.MaxHeaderCount = 20; o.MaxHeaderBytes = 4096 })
	many := ""
	for i := range 21 {
		many += fmt.Sprintf("X-H%d: v\r\n", i)
	}
	tests := []struct {
		name, req string
		status    int
	}{
		{"CL and TE", "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
		{"two Content-Lengths", "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400},
		{"Content-Length list", "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 5\r\n\r\nabcde", 400},
		{"bad Content-Length", "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\nabcd", 400},
		{"TE gzip", "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE twice", "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE chunked-ish", "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"TE in HTTP/1.0", "POST /upload HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"space before colon", "GET /public HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"obs-fold", "GET /public HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n", 400},
		{"no Host", "GET /public HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"NUL in value", "GET /public HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400},
		{"bad request line", "GET  /public HTTP/1.1\r\nHost: h\r\n\r\n", 400},
		{"bad version", "GET /public HTTP/2.0\r\nHost: h\r\n\r\n", 505},
		{"CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501},
		{"too many fields", "GET /public HTTP/1.1\r\nHost: h\r\n" + many + "\r\n", 431},
		{"head too large", "GET /public HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
		{"not HTTP", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := e.raw(t)
			rc.send(t, tc.req)
			res, _ := rc.response(t, "GET")
			if res.StatusCode != tc.status || !rc.closed() {
				t.Fatalf("got %d, want %d and close", res.StatusCode, tc.status)
			}
		})
	}
	if n := up.requests.Load(); n != 0 {
		t.Fatalf("upstream got %d requests", n)
	}
	for _, ev := range e.rec.Wait(t, len(tests)) {
		if ev.Verdict != monitor.VerdictError {
			t.Errorf("event %+v, want ERROR", ev)
		}
	}
}

func TestHTTP1ReadHeaderTimeout(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) { o.ReadHeaderTimeout = 100 * time.Millisecond })
	rc := e.raw(t)
	rc.send(t, "GET /public HTTP/1.1\r\nHost: h\r\n") // never finished
	if res, _ := rc.response(t, "GET"); res.StatusCode != 408 {
		t.Fatalf("got %d, want 408", res.StatusCode)
	}
	if !rc.closed() {
		t.Fatal("the proxy kept a connection whose head never ended")
	}
}

func TestHTTP1UpstreamDown(t *testing.T) {
	e := newEnv(t, closedPort(t), webPolicy, nil)
	res := do(t, e.client(), newReq(t, "GET", "http://h/public/x", nil))
	if res.status != 502 {
		t.Fatalf("got %d %q, want 502", res.status, res.body)
	}
	if ev := e.rec.Wait(t, 1)[0]; ev.Verdict != monitor.VerdictError || ev.L7.Status != 502 {
		t.Fatalf("event %+v %+v", ev, ev.L7)
	}
}

// dialCounter is an Options.Dial that counts its dials and checks that
// they go from the client's address to the original destination.
func dialCounter(t *testing.T, dials *atomic.Int64, up netip.AddrPort) func(*proxyhttp.Options) {
	return func(o *proxyhttp.Options) {
		o.Dial = func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
			dials.Add(1)
			if src.Addr() != clientIP || dst != up {
				t.Errorf("dial from %s to %s, want from the client %s to the original destination %s", src, dst, clientIP, up)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dst.String())
		}
	}
}

// A keep-alive client connection keeps its upstream connection: N
// sequential requests, allowed and denied mixed, make one upstream dial,
// and the denied ones never reach the upstream.
func TestHTTP1UpstreamHeld(t *testing.T) {
	up := startUpstream(t)
	var dials atomic.Int64
	e := newEnv(t, up.addr, webPolicy, dialCounter(t, &dials, up.addr))
	c := e.client()
	const n = 20
	for i := range n {
		path, want := "/public/x", 200
		if i%5 == 4 {
			path, want = "/private", 403
		}
		res := do(t, c, newReq(t, "GET", "http://h"+path, nil))
		if res.status != want || (i > 0 && !res.reused) {
			t.Fatalf("request %d: got %d (client connection reused: %v), want %d on the same connection", i, res.status, res.reused, want)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d upstream dials for %d sequential requests on one client connection, want 1", d, n)
	}
	if got := up.requests.Load(); got != n-n/5 {
		t.Fatalf("the upstream saw %d requests, want the %d allowed ones", got, n-n/5)
	}
}

// The upstream connection a client connection held goes to the pool when
// the client connection ends, for the next client connection of the same
// source address.
func TestHTTP1UpstreamPooling(t *testing.T) {
	up := startUpstream(t)
	var dials atomic.Int64
	e := newEnv(t, up.addr, webPolicy, dialCounter(t, &dials, up.addr))
	for i := range 3 {
		rc := e.raw(t)
		for range 3 {
			rc.send(t, "GET /public/x HTTP/1.1\r\nHost: h\r\n\r\n")
			if res, _ := rc.response(t, "GET"); res.StatusCode != 200 {
				t.Fatalf("got %d", res.StatusCode)
			}
		}
		// The proxy has ended the client connection (and pooled its
		// upstream connection) once it closes its side.
		rc.c.(*net.TCPConn).CloseWrite()
		if !rc.closed() {
			t.Fatalf("client connection %d: the proxy did not close after the client's end", i)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d upstream dials for 9 sequential requests on 3 client connections, want 1", n)
	}
}

// In audit mode a request the policy denies is forwarded and reported as
// AUDITED.
func TestHTTP1Audit(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, "", nil)
	e.store.Set(snapshotAudit(t, webPolicy, up.addr.Port(), true))
	if res := do(t, e.client(), newReq(t, "GET", "http://h/private", nil)); res.status != 200 {
		t.Fatalf("got %d %q, want 200", res.status, res.body)
	}
	if ev := e.rec.Wait(t, 1)[0]; ev.Verdict != monitor.VerdictAudited || ev.Policy != "TrafficPolicy default/web" {
		t.Fatalf("event %+v", ev)
	}
}

// An HTTP/1.0 client gets a chunked response decoded and the connection
// closed; its keep-alive is honoured otherwise.
func TestHTTP10(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "GET /public/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if res, body := rc.response(t, "GET"); res.StatusCode != 200 || body != "hello GET /public/a via HTTP/1.1" || res.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("got %d %q connection=%q", res.StatusCode, body, res.Header.Get("Connection"))
	}
	rc.send(t, "GET /public/chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	res, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != "part0;part1;part2;" || len(res.TransferEncoding) != 0 || !rc.closed() {
		t.Fatalf("got %d %q te=%v, want the body unchunked and close", res.StatusCode, body, res.TransferEncoding)
	}
}

// Pipelined requests are answered in order.
func TestHTTP1Pipelined(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "GET /public/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /private HTTP/1.1\r\nHost: h\r\n\r\nGET /public/3 HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []string{"hello GET /public/1 via HTTP/1.1", "Access denied\r\n", "hello GET /public/3 via HTTP/1.1"} {
		if _, body := rc.response(t, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestHTTP1IdleTimeout(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) { o.IdleTimeout = 100 * time.Millisecond })
	rc := e.raw(t)
	rc.send(t, "GET /public/a HTTP/1.1\r\nHost: h\r\n\r\n")
	if res, _ := rc.response(t, "GET"); res.StatusCode != 200 {
		t.Fatalf("got %d", res.StatusCode)
	}
	// Nothing more: the proxy closes the idle connection.
	if !rc.closed() {
		t.Fatal("the idle connection stayed open")
	}
}

// rawUpstream answers each request with the canned response for its path
// (the request line's second word), after sending the path to seen if
// not nil. A response starting with "CLOSE:" is sent without that prefix
// and the connection closed, silently, after it.
func rawUpstream(t *testing.T, responses map[string]string, seen chan<- string) netip.AddrPort {
	ln := listenServer(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || skipHead(br) != nil {
						return
					}
					f := strings.Fields(line)
					if len(f) < 2 {
						return
					}
					if seen != nil {
						seen <- f[1]
					}
					resp, closeAfter := strings.CutPrefix(responses[f[1]], "CLOSE:")
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
					if closeAfter || strings.HasSuffix(resp, "until close") {
						return
					}
				}
			}()
		}
	}()
	return addrOf(ln)
}

// Responses are reframed by the proxy: what the client gets is never
// ambiguous, and a malformed response is a 502.
func TestHTTP1UpstreamResponses(t *testing.T) {
	up := rawUpstream(t, map[string]string{
		"/public/both":    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"/public/lengths": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"/public/folded":  "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n",
		"/public/cr":      "HTTP/1.1 200 OK\r\nX-A: 1\rSet-Cookie: x\r\nContent-Length: 0\r\n\r\n",
		"/public/te":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
		"/public/status":  "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
		"/public/reason":  "HTTP/1.1 200 OK\rX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
		"/public/hop":     "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
		"/public/eof":     "HTTP/1.1 200 OK\r\n\r\nuntil close",
	}, nil)
	e := newEnv(t, up, webPolicy, nil)
	tests := []struct {
		path   string
		status int
		body   string
		close  bool
	}{
		{"/public/both", 200, "abc", false},
		{"/public/lengths", 502, "Bad Gateway\r\n", true},
		{"/public/folded", 502, "Bad Gateway\r\n", true},
		{"/public/cr", 502, "Bad Gateway\r\n", true},
		{"/public/te", 502, "Bad Gateway\r\n", true},
		{"/public/status", 502, "Bad Gateway\r\n", true},
		{"/public/reason", 502, "Bad Gateway\r\n", true},
		{"/public/hop", 200, "ok", false},
		{"/public/eof", 200, "until close", true},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			rc := e.raw(t)
			rc.send(t, "GET "+tc.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
			res, body := rc.response(t, "GET")
			if res.StatusCode != tc.status || body != tc.body || res.Close != tc.close {
				t.Fatalf("got %d %q close=%v, want %d %q close=%v", res.StatusCode, body, res.Close, tc.status, tc.body, tc.close)
			}
			if res.ContentLength >= 0 && len(res.TransferEncoding) > 0 {
				t.Fatalf("both Content-Length and Transfer-Encoding reached the client: %v", res.Header)
			}
			for _, h := range []string{"X-Secret", "Keep-Alive"} {
				if res.Header.Get(h) != "" {
					t.Fatalf("hop-by-hop %s reached the client", h)
				}
			}
		})
	}
}

// Close ends connections waiting on an upstream that does not answer.
func TestCloseWhileWaitingOnUpstream(t *testing.T) {
	seen := make(chan string, 1)
	up := rawUpstream(t, map[string]string{}, seen) // answers nothing
	e := newEnv(t, up, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "GET /public/hang HTTP/1.1\r\nHost: h\r\n\r\n")
	<-seen
	done := make(chan struct{})
	go func() { e.srv.Close(); close(done) }()
	if !rc.closed() {
		t.Fatal("the client connection stayed open")
	}
	<-done
}

// An upstream that closes its idle connections without saying so: the
// proxy retries a GET on a new connection, not a POST (the server may have
// acted on it).
func TestHTTP1StaleUpstreamConnection(t *testing.T) {
	up := rawUpstream(t, map[string]string{
		"/public/a": "CLOSE:HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/upload":   "CLOSE:HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	}, nil)
	e := newEnv(t, up, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "POST /upload HTTP/1.1\r\nHost: h\r\n\r\n")
	if res, _ := rc.response(t, "POST"); res.StatusCode != 200 {
		t.Fatalf("first POST: %d", res.StatusCode)
	}
	rc.send(t, "POST /upload HTTP/1.1\r\nHost: h\r\n\r\n")
	if res, _ := rc.response(t, "POST"); res.StatusCode != 502 {
		t.Fatalf("POST on a stale connection: got %d, want 502 (not retried)", res.StatusCode)
	}
	c := e.client()
	for i := range 3 {
		if res := do(t, c, newReq(t, "GET", "http://h/public/a", nil)); res.status != 200 {
			t.Fatalf("GET %d: got %d %q", i, res.status, res.body)
		}
	}
}

// framingPolicy asks for header actions on the fields that frame a
// request.
var framingPolicy = policytest.Ingress("framing", "PORT", `
	http:
	- method: POST
	  path: /upload
	  headerMatches:
	  - name: Content-Length
	    value: "1"
	    mismatch: REPLACE
	  - name: Transfer-Encoding
	    value: chunked
	    mismatch: ADD
	  - name: Host
	    value: rewritten
	    mismatch: REPLACE
`)

// Header actions cannot change how the upstream frames a request: the
// proxy writes Content-Length and Transfer-Encoding from what it parsed.
// Host may be rewritten.
func TestHTTP1ActionsKeepFraming(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, framingPolicy, nil)
	rc := e.raw(t)
	for range 2 {
		rc.send(t, "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
		res, body := rc.response(t, "POST")
		if want := `got 5 hello te=[] trailer=""`; res.StatusCode != 200 || body != want || res.Header.Get("X-Seen-Host") != "rewritten" {
			t.Fatalf("got %d %q host %q, want %q", res.StatusCode, body, res.Header.Get("X-Seen-Host"), want)
		}
	}
	if n := up.requests.Load(); n != 2 {
		t.Fatalf("upstream got %d requests, want 2", n)
	}
	// HTTP/2: the Host action sets :authority.
	res := do(t, e.h2client(), newReq(t, "POST", "http://h/upload", strings.NewReader("hello")))
	if want := `got 5 hello te=[] trailer=""`; res.status != 200 || res.body != want || res.header.Get("X-Seen-Host") != "rewritten" {
		t.Fatalf("h2: got %d %q host %q, want %q", res.status, res.body, res.header.Get("X-Seen-Host"), want)
	}
}

// A policy change that denies the flow at L4 (here: the server now only
// admits another port) refuses the next request of an open connection.
func TestHTTP1L4DenyAfterChange(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.client()
	if res := do(t, c, newReq(t, "GET", "http://h/public/x", nil)); res.status != 200 {
		t.Fatalf("before: %d", res.status)
	}
	otherPort := strings.ReplaceAll(otherPolicy, `port: "PORT"`, `port: "1"`)
	e.store.Set(snapshot(t, otherPort, up.addr.Port()))
	if res := do(t, c, newReq(t, "GET", "http://h/public/x", nil)); res.status != 403 || !res.reused {
		t.Fatalf("after: %d reused=%v, want 403 on the same connection", res.status, res.reused)
	}
	if ev := e.rec.Wait(t, 2)[1]; ev.Verdict != monitor.VerdictDenied || ev.Direction != "ingress" {
		t.Fatalf("event %+v", ev)
	}
	if n := up.requests.Load(); n != 1 {
		t.Fatalf("upstream got %d requests, want 1", n)
	}
}
