package http

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	nethttp "net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
)

// gRPC status codes the proxy answers with.
const (
	grpcPermissionDenied = 7
	grpcUnavailable      = 14
)

var discardLog = log.New(io.Discard, "", 0)

// serveH2 serves an HTTP/2 (h2c prior knowledge) client connection with
// x/net/http2's server, which also answers malformed frames with GOAWAY.
func (s *Server) serveH2(ctx context.Context, c net.Conn, src, dst netip.AddrPort, d *Decrypted) {
	h := &h2handler{s: s, src: src, dst: dst, key: keyOf(src, dst), peers: new([2]peerCache), dec: d}
	if d != nil {
		h.key.up = d.Key
	}
	s.h2s.ServeConn(c, &http2.ServeConnOpts{
		Context:    ctx,
		Handler:    h,
		BaseConfig: &nethttp.Server{MaxHeaderBytes: s.o.MaxHeaderBytes, ErrorLog: discardLog},
	})
	// The HTTP/2 server returns when the connection ends, but the streams'
	// handlers may still be finishing (their contexts are canceled):
	// ServeConn returns after them, so that every request has its event
	// and Close leaves nothing running.
	h.drain()
}

type h2handler struct {
	s        *Server
	src, dst netip.AddrPort
	key      poolKey
	peers    *[2]peerCache
	// dec describes the TLS of an intercepted connection (nil in the
	// clear).
	dec *Decrypted

	// Handlers in progress, so that serveH2 can wait for them.
	mu     sync.Mutex
	active int
	done   bool
	idle   chan struct{}

	// The events of denied and refused streams are rate-limited per
	// connection (a client can open and reset streams far faster than
	// anyone can read their events): beyond maxStreamEvents a second,
	// they are counted and reported as one summary event.
	evMu                 sync.Mutex
	evWindow             time.Time
	evCount              int
	suppressed, canceled int
	last                 *access
}

// maxStreamEvents bounds the denied or refused stream events one HTTP/2
// connection records per second; the rest are summarized.
const maxStreamEvents = 100

// recordStream records the event of a denied or refused stream, within
// the connection's budget.
func (h *h2handler) recordStream(a *access) {
	h.evMu.Lock()
	now := time.Now()
	if now.Sub(h.evWindow) >= time.Second {
		h.flushLocked()
		h.evWindow, h.evCount = now, 0
	}
	h.evCount++
	if h.evCount > maxStreamEvents {
		h.suppressed++
		h.last = a
		h.evMu.Unlock()
		return
	}
	h.evMu.Unlock()
	h.s.record(a)
}

// flushLocked records the summary of the events left out, if any.
func (h *h2handler) flushLocked() {
	if h.suppressed == 0 {
		h.canceled = 0
		return
	}
	a := &access{proto: "h2", verdict: monitor.VerdictDenied, start: h.evWindow, peers: h.peers, refused: reasonH2Abuse}
	if l := h.last; l != nil {
		a.cp, a.proto, a.verdict, a.policy, a.dir, a.method, a.path, a.host = l.cp, l.proto, l.verdict, l.policy, l.dir, l.method, l.path, l.host
	}
	a.reason = fmt.Sprintf("%d more denied or refused streams (latest shown) and %d allowed streams reset by the client before forwarding, on one connection within a second: not reported one by one", h.suppressed, h.canceled)
	h.suppressed, h.canceled, h.last = 0, 0, nil
	h.s.record(a)
}

// enter registers a handler; false once the connection has ended (the
// request is dropped unjudged and unforwarded: its client is gone).
func (h *h2handler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return false
	}
	h.active++
	return true
}

func (h *h2handler) leave() {
	h.mu.Lock()
	h.active--
	if h.done && h.active == 0 && h.idle != nil {
		close(h.idle)
		h.idle = nil
	}
	h.mu.Unlock()
}

// drain waits for the handlers in progress and refuses new ones.
func (h *h2handler) drain() {
	h.mu.Lock()
	h.done = true
	if h.active > 0 {
		ch := make(chan struct{})
		h.idle = ch
		h.mu.Unlock()
		<-ch
	} else {
		h.mu.Unlock()
	}
	h.evMu.Lock()
	h.flushLocked()
	h.evMu.Unlock()
}

func isGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

func (h *h2handler) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	if !h.enter() {
		return
	}
	defer h.leave()
	a := &access{proto: "h2", method: r.Method, path: r.RequestURI, host: r.Host, start: time.Now(), peers: h.peers, sni: h.sni()}
	defer func() {
		// As on HTTP/1.1, a bug costs the stream and is reported as an
		// ERROR event (the HTTP/2 server would only log it).
		if p := recover(); p != nil {
			if p != nethttp.ErrAbortHandler {
				h.s.record(&access{proto: a.proto, method: a.method, path: a.path, host: a.host, start: a.start, peers: h.peers,
					verdict: monitor.VerdictError, reason: fmt.Sprintf("%s: %v", internalError, p)})
			}
			panic(nethttp.ErrAbortHandler)
		}
	}()
	if isGRPC(r.Header.Get("Content-Type")) {
		a.proto, a.isGRPC = "grpc", true
	}
	n := 0
	for _, vs := range r.Header {
		n += len(vs)
	}
	switch {
	case n > h.s.o.MaxHeaderCount:
		h.refuse(w, a, 431, "too many header fields")
		return
	case r.Method == "CONNECT":
		h.refuse(w, a, 501, "CONNECT is not supported")
		return
	case !validHost(r.Host):
		h.refuse(w, a, 400, "invalid :authority")
		return
	}
	if !h.s.o.AllowHeaderUnderscores {
		for k := range r.Header {
			if hasUnderscore(k) {
				h.refuse(w, a, 400, "underscore in a header field name")
				return
			}
		}
	}
	p, msg := normalizePath(r.RequestURI, &h.s.o)
	if msg != "" {
		h.refuse(w, a, 400, msg)
		return
	}
	a.path = p
	cp := h.s.resolve(h.src, h.dst)
	a.cp = cp
	d := h.s.decide(cp, l7.HTTPRequest{Method: r.Method, Path: p, Host: r.Host, Header: r.Header, ServerName: h.sni()})
	a.verdictOf(&d)
	if !d.Allowed {
		h.deny(w, a, &d)
		return
	}
	if h.resetByClient(r) {
		return
	}
	host := r.Host
	for _, act := range d.Actions {
		act.Apply(r.Header)
		if act.Name == "Host" {
			// The Host field of an HTTP/2 request is its :authority.
			host = r.Header.Get("Host")
			if host == "" {
				host = r.Host
			}
		}
	}
	h.forward(w, r, p, host, a)
}

// resetByClient reports whether the client has reset r's stream: then
// the request is not forwarded, and it is only counted (in the summary
// of a connection that exceeds its event budget).
func (h *h2handler) resetByClient(r *nethttp.Request) bool {
	if r.Context().Err() == nil {
		return false
	}
	h.evMu.Lock()
	h.canceled++
	h.evMu.Unlock()
	return true
}

// refuse answers a request the proxy cannot judge.
func (h *h2handler) refuse(w nethttp.ResponseWriter, a *access, status int, msg string) {
	a.verdict, a.reason = monitor.VerdictError, msg
	if a.isGRPC {
		a.status, a.grpcStatus = 200, grpcPermissionDenied
		writeGRPCStatus(w, grpcPermissionDenied, msg)
	} else {
		a.status = status
		writeText(w, status, statusText(status)+": "+msg+"\r\n")
	}
	h.recordStream(a)
}

// deny answers a denied request: 403, or a gRPC trailers-only response
// with PERMISSION_DENIED naming the policy.
func (h *h2handler) deny(w nethttp.ResponseWriter, a *access, d *proxy.HTTPDecision) {
	if a.isGRPC {
		a.status, a.grpcStatus = 200, grpcPermissionDenied
		writeGRPCStatus(w, grpcPermissionDenied, "access denied by "+d.DeniedBy.Policies())
	} else {
		a.status = 403
		writeText(w, 403, deniedBody)
	}
	h.recordStream(a)
}

func writeText(w nethttp.ResponseWriter, status int, body string) {
	hd := w.Header()
	hd.Set("Content-Type", "text/plain")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// writeGRPCStatus answers a trailers-only gRPC response: one HEADERS frame
// ending the stream, with HTTP status 200 and the gRPC status in it.
func writeGRPCStatus(w nethttp.ResponseWriter, code int, msg string) {
	hd := w.Header()
	hd.Set("Content-Type", "application/grpc")
	hd.Set("Grpc-Status", strconv.Itoa(code))
	hd.Set("Grpc-Message", grpcPercentEncode(msg))
	w.WriteHeader(200)
}

// grpcPercentEncode encodes a grpc-message value as the gRPC HTTP/2
// protocol requires: bytes outside printable ASCII, and '%', as %XX.
func grpcPercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// forward sends an allowed request to the original destination over a
// pooled h2c connection and streams the response back, trailers included.
func (h *h2handler) forward(w nethttp.ResponseWriter, r *nethttp.Request, path, host string, a *access) {
	scheme := "http"
	if h.dec != nil && h.dec.UpstreamTLS {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: h.dst.String()}
	if strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
		u.Opaque = path // sent as :path exactly as judged
	} else if pu, err := url.ParseRequestURI(path); err == nil && path != "*" {
		// "//..." (slashes not merged) would read as a host in Opaque.
		u.Path, u.RawPath, u.RawQuery = pu.Path, pu.EscapedPath(), pu.RawQuery
	} else {
		u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	}
	out := (&nethttp.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        r.Header,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		Trailer:       r.Trailer,
		Host:          host,
	})
	// The stream idle timeout: no progress for StreamIdleTimeout ends the
	// upstream request, and the client's stream once its head went out.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var headSent atomic.Bool
	rc := nethttp.NewResponseController(w)
	idle := newIdleWatch(h.s.o.StreamIdleTimeout, func() {
		cancel()
		if headSent.Load() {
			rc.SetWriteDeadline(time.Now().Add(-time.Second))
		}
	})
	defer idle.stop()
	out = out.WithContext(ctx)
	if _, ok := r.Header["User-Agent"]; !ok {
		// An empty value keeps the transport from adding its own: the
		// upstream sees the client's fields, nothing added.
		r.Header["User-Agent"] = []string{""}
	}
	var body *h2Body
	if r.ContentLength == 0 && r.Body == nethttp.NoBody {
		out.Body = nil
	} else {
		timeout := h.s.o.BodyTimeout
		if a.isGRPC {
			timeout = 0 // streams are long by design: only the idle watch
		}
		body = newH2Body(w, r.Body, idle, timeout, h.s.o.MinBodyRate)
		defer body.stop()
		out.Body = body
	}
	cc, err := h.s.h2pool.get(r.Context(), h.key, func(ctx context.Context) (net.Conn, error) {
		if h.dec != nil {
			return h.dec.Dial(ctx, "h2")
		}
		return h.s.o.Dial(ctx, h.src, h.dst)
	})
	if h.resetByClient(r) {
		// While the upstream connection was dialled (requests wait for the
		// dial in progress): still nothing sent.
		return
	}
	var res *nethttp.Response
	if err == nil {
		res, err = cc.RoundTrip(out)
	}
	if err != nil && body != nil && body.timedOut.Load() {
		a.status, a.verdict, a.reason, a.refused = 408, monitor.VerdictError, "request body timeout", reasonBodyTimeout
		writeText(w, 408, statusText(408)+"\r\n")
		h.s.record(a)
		return
	}
	if err != nil && idle.fired.Load() {
		a.verdict, a.reason = monitor.VerdictError, fmt.Sprintf("upstream: no progress for %s (stream idle timeout)", h.s.o.StreamIdleTimeout)
		if a.isGRPC {
			a.status, a.grpcStatus = 200, grpcUnavailable
			writeGRPCStatus(w, grpcUnavailable, "upstream: stream idle timeout")
		} else {
			a.status = 504
			writeText(w, 504, statusText(504)+"\r\n")
		}
		h.s.record(a)
		return
	}
	if err != nil {
		a.verdict, a.reason = monitor.VerdictError, "upstream: "+err.Error()
		if a.isGRPC {
			a.status, a.grpcStatus = 200, grpcUnavailable
			writeGRPCStatus(w, grpcUnavailable, "upstream unavailable: "+err.Error())
		} else {
			a.status = 502
			writeText(w, 502, statusText(502)+"\r\n")
		}
		h.s.record(a)
		return
	}
	defer res.Body.Close()
	hd := w.Header()
	for k, vs := range res.Header {
		if k == "Trailer" {
			continue
		}
		hd[k] = vs
	}
	a.status = res.StatusCode
	w.WriteHeader(res.StatusCode)
	headSent.Store(true)
	idle.kick()
	a.latency = time.Since(a.start)
	fl, _ := w.(nethttp.Flusher)
	if fl != nil {
		fl.Flush()
	}
	bp := copyBufPool.Get().(*[]byte)
	buf := *bp
	var rerr error
	for {
		var n int
		n, rerr = res.Body.Read(buf)
		if n > 0 {
			idle.kick()
			if _, werr := w.Write(buf[:n]); werr != nil {
				break
			}
			idle.kick()
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr != nil {
			break
		}
	}
	copyBufPool.Put(bp)
	if rerr != nil && rerr != io.EOF {
		// The upstream failed mid-response: reset the stream rather than
		// end it, so that the client does not take a truncated body for
		// a whole one.
		a.reason = "upstream: " + rerr.Error()
		h.s.record(a)
		panic(nethttp.ErrAbortHandler)
	}
	for k, vs := range res.Trailer {
		hd[nethttp.TrailerPrefix+k] = vs
	}
	if a.isGRPC {
		gs := res.Trailer.Get("Grpc-Status")
		if gs == "" {
			gs = res.Header.Get("Grpc-Status")
		}
		a.grpcStatus, _ = strconv.Atoi(gs)
	}
	h.s.record(a)
}

// sni is the server name requests are judged with ("" in the clear).
func (h *h2handler) sni() string {
	if h.dec == nil {
		return ""
	}
	return h.dec.ServerName
}
