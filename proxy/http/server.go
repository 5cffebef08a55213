package http

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
)

// Defaults of the Options limits.
const (
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultMaxHeaderCount        = 100
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 60 * time.Second
	DefaultMaxConcurrentStreams  = 100
	DefaultMaxIdleUpstreamPerKey = 64
	DefaultMaxUpstreamKeys       = 1024
	DefaultMaxDiscardBytes       = 64 << 10
	DefaultBodyTimeout           = 30 * time.Second
	DefaultMinBodyRate           = 1024
	DefaultStreamIdleTimeout     = 5 * time.Minute
)

// HTTP/2 flow-control windows, on the client side (request bodies) and the
// upstream side (responses): what one stream or one connection may buffer.
const (
	h2StreamWindow = 64 << 10
	h2ConnWindow   = 1 << 20
)

// Options configure a Server. Zero limits take the defaults above.
type Options struct {
	// Resolver gives the policy of each request: Resolve(src, dst, 6) is
	// called once per request (not per connection), so a policy change
	// applies to the next request on a keep-alive connection; an in-flight
	// request finishes under the ConnPolicy it started with. A nil
	// Resolver or a nil ConnPolicy refuses every request.
	Resolver proxy.Resolver
	// Dial opens an upstream connection from src to dst (the original
	// destination). Upstream connections are pooled per (source address,
	// destination), so a connection dialled for one client port may carry
	// the requests of another connection from the same source address:
	// Dial must not depend on src's port. nil: proxy.DialDestination.
	Dial func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// Record receives one access event per request. It must not block.
	// nil: none.
	Record func(monitor.Event)
	// Node names this node in events.
	Node string

	// MaxHeaderBytes bounds a request's or response's header section
	// (request line and fields); more is 431 (request) or 502 (response).
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header fields; more is 431.
	MaxHeaderCount int
	// ReadHeaderTimeout bounds, from the accept, the protocol sniffing and
	// the first request's header section (HTTP/1.1; on HTTP/2 the client
	// preface and its first SETTINGS frame): one absolute deadline that
	// no trickle of bytes extends. A later request of a keep-alive
	// HTTP/1.1 connection has ReadHeaderTimeout from its first byte.
	ReadHeaderTimeout time.Duration
	// BodyTimeout and MinBodyRate bound a request body (HTTP/1.1 and
	// HTTP/2, allowed or denied; not gRPC, whose streams are long by
	// design and bounded by IdleTimeout per read): it must have arrived
	// by the end of its head plus BodyTimeout plus one second per
	// MinBodyRate bytes received. Later is 408.
	BodyTimeout time.Duration
	MinBodyRate int64
	// StreamIdleTimeout resets an HTTP/2 stream (gRPC included) with no
	// progress, no byte of its request or response body moving and no
	// response head, for that long (Envoy's stream_idle_timeout); before
	// the response head it is 504.
	StreamIdleTimeout time.Duration
	// IdleTimeout closes a client connection idle between requests, and
	// bounds each read or write of a body on either side (a peer that
	// stops reading or sending for that long is cut off).
	IdleTimeout time.Duration
	// MaxConcurrentStreams bounds the streams of an HTTP/2 client
	// connection.
	MaxConcurrentStreams uint32
	// MaxIdleUpstreamPerKey bounds the idle HTTP/1.1 upstream connections
	// pooled per (source address, destination), besides the one each
	// keep-alive client connection holds for its next request. It should
	// cover the client connections one source keeps open to one
	// destination (a pool smaller than that closes and redials upstream
	// connections as they come and go); an idle pooled connection costs
	// a socket, its buffers go back while idle.
	MaxIdleUpstreamPerKey int
	// MaxUpstreamKeys bounds the (source address, destination) pairs with
	// pooled upstream connections; the least recently used pair's
	// connections are closed first.
	MaxUpstreamKeys int
	// MaxDiscardBytes is the largest body of a denied HTTP/1.1 request the
	// proxy reads and drops to keep the connection; a larger body closes
	// the connection after the 403.
	MaxDiscardBytes int64

	// The request path is normalized before it is judged, and the
	// normalized path is what the upstream receives (judging one path and
	// forwarding another is never done): escapes of unreserved characters
	// decoded, slashes merged, dot segments removed. NoNormalizePath and
	// NoMergeSlashes turn parts off (Envoy's normalize_path and
	// merge_slashes); EscapedSlashes says what %2F and %5C do (Envoy's
	// path_with_escaped_slashes_action). A backslash or a malformed
	// escape is always 400.
	NoNormalizePath bool
	NoMergeSlashes  bool
	EscapedSlashes  EscapedSlashes
	// AllowHeaderUnderscores forwards header fields whose names hold an
	// underscore; by default they are refused with 400 (Envoy's edge
	// guidance: headers_with_underscores_action REJECT_REQUEST).
	AllowHeaderUnderscores bool
}

func (o *Options) setDefaults() {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxHeaderCount <= 0 {
		o.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.MaxIdleUpstreamPerKey <= 0 {
		o.MaxIdleUpstreamPerKey = DefaultMaxIdleUpstreamPerKey
	}
	if o.MaxUpstreamKeys <= 0 {
		o.MaxUpstreamKeys = DefaultMaxUpstreamKeys
	}
	if o.MaxDiscardBytes <= 0 {
		o.MaxDiscardBytes = DefaultMaxDiscardBytes
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.MinBodyRate <= 0 {
		o.MinBodyRate = DefaultMinBodyRate
	}
	if o.StreamIdleTimeout <= 0 {
		o.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if o.Dial == nil {
		o.Dial = proxy.DialDestination
	}
}

// Server serves redirected HTTP connections. It is safe for concurrent
// use; one Server serves every connection of a node.
type Server struct {
	o      Options
	h2s    *http2.Server
	h2t    *http2.Transport
	pool   *pool
	h2pool *h2pool

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New returns a Server.
func New(o Options) *Server {
	o.setDefaults()
	s := &Server{o: o, conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.pool = newPool(o.MaxIdleUpstreamPerKey, o.MaxUpstreamKeys, o.IdleTimeout)
	s.h2s = &http2.Server{
		MaxConcurrentStreams: o.MaxConcurrentStreams,
		IdleTimeout:          o.IdleTimeout,
		MaxHandlers:          int(o.MaxConcurrentStreams),
		// What a client's request bodies may have in flight (Envoy's
		// edge guidance: 64 KiB a stream, 1 MiB a connection).
		MaxUploadBufferPerStream:     h2StreamWindow,
		MaxUploadBufferPerConnection: h2ConnWindow,
	}
	// The upstream leg buffers at most h2StreamWindow of a response per
	// stream (x/net's default is 4 MiB) and h2ConnWindow per connection: a
	// client that stops reading holds the upstream back through flow
	// control instead of making the proxy buffer. These are set through
	// the net/http Transport's HTTP2 settings, the only way x/net's
	// Transport takes them.
	t1 := &nethttp.Transport{HTTP2: &nethttp.HTTP2Config{
		MaxReceiveBufferPerStream:     h2StreamWindow,
		MaxReceiveBufferPerConnection: h2ConnWindow,
	}, DisableCompression: true}
	h2t, err := http2.ConfigureTransports(t1)
	if err != nil {
		panic("portcullis: configuring the HTTP/2 transport: " + err.Error()) // a fresh Transport: cannot happen
	}
	h2t.AllowHTTP = true
	// Upstream connections are dialled by the pool; the transport only
	// runs the protocol on them.
	h2t.DialTLSContext = func(context.Context, string, string, *tls.Config) (net.Conn, error) {
		return nil, errors.New("portcullis: h2 upstream connections come from the pool")
	}
	h2t.MaxHeaderListSize = uint32(o.MaxHeaderBytes)
	// The proxy adds nothing: no Accept-Encoding: gzip (and no
	// decompression of what the upstream sends).
	h2t.DisableCompression = true
	h2t.ReadIdleTimeout = o.IdleTimeout
	h2t.IdleConnTimeout = o.IdleTimeout
	s.h2t = h2t
	s.h2pool = newH2Pool(s.h2t, o.MaxIdleUpstreamPerKey, o.MaxUpstreamKeys)
	return s
}

// internalError starts the Reason of the event of a connection that ended
// on a bug.
const internalError = "internal error"

// h2Preface is the HTTP/2 client connection preface.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// ServeConn serves one accepted client connection whose flow is src → dst
// until it ends or ctx is done; it closes c. It sniffs the HTTP/2 client
// preface (h2c with prior knowledge) and otherwise speaks HTTP/1.1.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort) {
	s.serveConn(ctx, c, src, dst, nil)
}

// Decrypted describes a client connection whose TLS the caller (proxy/tls)
// has terminated: what the requests are judged with and how their
// upstream connections are opened.
type Decrypted struct {
	// ServerName is the client's SNI: requests are judged with it
	// (l7.HTTPRequest.ServerName, for rules restricted by serverNames) and
	// events show it.
	ServerName string
	// Dial opens an upstream connection that speaks proto ("http/1.1" or
	// "h2") to the original destination, originating TLS if the policy
	// says so. Its error is the reason of the 502 (gRPC UNAVAILABLE).
	Dial func(ctx context.Context, proto string) (net.Conn, error)
	// Key identifies what Dial opens (server name, trust, protocol):
	// upstream connections are pooled per source address, destination
	// and Key.
	Key string
	// UpstreamTLS: Dial originates TLS (HTTP/2 requests carry :scheme
	// https).
	UpstreamTLS bool
}

// ServeDecrypted serves the decrypted stream c of an intercepted TLS
// connection whose flow is src → dst as ServeConn serves a cleartext one:
// the same parsing, rules, denials and events; upstream connections come
// from d.Dial. It closes c.
func (s *Server) ServeDecrypted(ctx context.Context, c net.Conn, src, dst netip.AddrPort, d Decrypted) {
	s.serveConn(ctx, c, src, dst, &d)
}

func (s *Server) serveConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort, d *Decrypted) {
	if !s.track(c) {
		c.Close()
		return
	}
	defer s.untrack(c)
	defer c.Close()
	defer func() {
		// A bug must cost one connection, not the node's proxy. It is
		// reported as an ERROR event; the fuzz targets fail on one.
		if p := recover(); p != nil {
			s.record(&access{proto: "http/1.1", verdict: monitor.VerdictError, reason: fmt.Sprintf("%s: %v", internalError, p), start: time.Now()})
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopS := context.AfterFunc(s.ctx, cancel)
	defer stopS()
	var h1 atomic.Pointer[h1conn]
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		if h := h1.Load(); h != nil {
			h.abort()
		}
	})
	defer stop()

	// One absolute deadline from the accept for the sniffing and the
	// first request head: no trickle of bytes extends it.
	headDeadline := time.Now().Add(s.o.ReadHeaderTimeout)
	dc := &dconn{Conn: c, idle: s.o.IdleTimeout, mode: modeFixed}
	c.SetReadDeadline(headDeadline)
	br := readers.Get(dc)
	switch proto, err := sniff(br); proto {
	case sniffH2:
		// br is never given back to the pool: x/net's frame-reader
		// goroutine reads it and may still be inside a read when
		// ServeConn returns (http2.Server.ServeConn does not wait for
		// it). A recycled reader would then be read with no connection
		// behind it, or hand this client's bytes to another connection.
		// The read deadline stays until the client's first frame is in.
		dc.mode = modeNone
		hc := newH2Conn(c, br, s.o.ReadHeaderTimeout)
		hc.refuse = func(msg, refused string) {
			s.refuseConn(dc, br, src, dst, "h2", 0, msg, refused)
		}
		s.serveH2(ctx, hc, src, dst, d)
		return
	case sniffTLS:
		s.refuseConn(dc, br, src, dst, "http/1.1", 400, "TLS on a plain HTTP port", reasonTLS)
		readers.Put(br)
		return
	case sniffNone:
		// The deadline or the end came before a decision: the client was
		// silent or sent part of the HTTP/2 preface (any HTTP/1.1 request
		// differs from it within its first bytes). Closed without an
		// answer: it asked nothing in HTTP/1.1.
		if isTimeout(err) {
			s.refuseConn(dc, br, src, dst, "http/1.1", 0, "request header timeout", reasonHeaderTimeout)
		}
		readers.Put(br)
		return
	}
	// The HTTP/1.1 connection owns br from here (it swaps it while idle).
	h := &h1conn{s: s, dc: dc, br: br, src: src, dst: dst, headDeadline: headDeadline, dec: d}
	h1.Store(h)
	h.serve(ctx)
}

// The protocols sniff tells apart.
const (
	sniffNone = iota // the deadline or the end came before a decision
	sniffH1
	sniffH2
	sniffTLS
)

// sniff tells HTTP/2 (the client preface), a TLS ClientHello and HTTP/1.1
// apart from the first bytes. It peeks only as many bytes as needed: an
// HTTP/1.1 request line differs from the preface within the first few
// bytes, so a short request is never held up waiting for 24 bytes.
func sniff(br *bufio.Reader) (int, error) {
	for n := 1; n <= len(h2Preface); n++ {
		b, err := br.Peek(n)
		if len(b) == 0 {
			return sniffNone, err
		}
		if b[0] == 0x16 {
			// A TLS handshake record: a client speaking TLS to a plain
			// HTTP port.
			return sniffTLS, nil
		}
		if string(b) != h2Preface[:len(b)] {
			return sniffH1, nil
		}
		if err != nil {
			return sniffNone, err
		}
	}
	return sniffH2, nil
}

// refuseConn answers a connection refused before any request could be
// read (status 0: no answer), records it and closes it gracefully.
func (s *Server) refuseConn(dc *dconn, br *bufio.Reader, src, dst netip.AddrPort, proto string, status int, msg, refused string) {
	var peers [2]peerCache
	a := &access{proto: proto, verdict: monitor.VerdictError, reason: msg, start: time.Now(), status: status, peers: &peers, refused: refused}
	if s.o.Record != nil {
		a.cp = s.resolve(src, dst)
	}
	s.record(a)
	if status == 0 {
		return
	}
	dc.mode = modeIdle
	bw := writers.Get(dc)
	body := statusText(status) + ": " + msg + "\r\n"
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, statusText(status), len(body), body)
	bw.Flush()
	writers.Put(bw)
	closeWrite(dc.Conn)
	dc.mode = modeFixed
	dc.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, br, 256<<10)
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Close stops serving: it closes every client connection being served and
// every pooled upstream connection, and waits for the ServeConn calls to
// return.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.pool.closeAll()
	s.h2pool.closeAll()
	return nil
}

// readers and writers are the buffers of client and upstream
// connections, held only while a request or response is under way. Whoever
// takes a buffer gives it back only when no other goroutine can still use
// it: HTTP/1.1 connections are served by one goroutine (splice waits for
// its second one before giving anything back), the HTTP/2 read buffer is
// never given back (see ServeConn), and copy buffers go back after their
// loop.
var (
	readers = proxy.NewReaderPool(4096)
	writers = proxy.NewWriterPool(4096)
)

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// statusText is net/http's reason phrase.
func statusText(code int) string { return nethttp.StatusText(code) }

// The body of every 403 the proxy answers for a denied HTTP request.
const deniedBody = "Access denied\r\n"

// resolve returns the policy of the flow src → dst (TCP); nil without a
// resolver.
func (s *Server) resolve(src, dst netip.AddrPort) *proxy.ConnPolicy {
	if s.o.Resolver == nil {
		return nil
	}
	return s.o.Resolver.Resolve(src, dst, 6)
}

// decide judges one request. Without a policy, or under a policy whose
// parser is not HTTP, every request is denied: nothing passes without a
// verdict.
func (s *Server) decide(cp *proxy.ConnPolicy, req l7.HTTPRequest) proxy.HTTPDecision {
	if cp == nil {
		return proxy.HTTPDecision{DeniedBy: noPolicySide("no policy")}
	}
	if cp.Denied == nil {
		if p, err := cp.Parser(); err != nil {
			return proxy.HTTPDecision{DeniedBy: noPolicySide(err.Error())}
		} else if p != l7.ParserHTTP && p != l7.ParserNone {
			return proxy.HTTPDecision{DeniedBy: noPolicySide("the L7 policy needs the " + p.String() + " parser, not http")}
		}
	}
	return cp.DecideHTTP(req)
}

// noPolicySide is the denying side of a request judged without a usable
// policy.
func noPolicySide(reason string) *proxy.Side {
	sd := &proxy.Side{}
	sd.Decision.Reason = reason
	return sd
}

// dconn applies the proxy's timeouts to a connection: in idle mode every
// read or write must make progress within idle; in fixed mode reads keep
// the deadline last set (the header timeout); in none mode the caller (or
// the HTTP/2 server) manages deadlines.
type dconn struct {
	net.Conn
	idle time.Duration
	mode int
	// While a request body is read (body set), reads in idle mode also
	// stop at bodyBase plus one second per rate bytes read.
	body     bool
	bodyBase time.Time
	rate     int64
	n        int64
}

// startBody bounds the reads of a request body from now on (Options
// BodyTimeout and MinBodyRate).
func (d *dconn) startBody(timeout time.Duration, rate int64) {
	d.body, d.bodyBase, d.rate, d.n = true, time.Now().Add(timeout), rate, 0
}

func (d *dconn) endBody() { d.body = false }

const (
	modeIdle = iota
	modeFixed
	modeNone
)

func (d *dconn) Read(p []byte) (int, error) {
	if d.mode == modeIdle {
		dl := time.Now().Add(d.idle)
		if d.body {
			if b := d.bodyBase.Add(time.Duration(d.n) * time.Second / time.Duration(d.rate)); b.Before(dl) {
				dl = b
			}
		}
		d.Conn.SetReadDeadline(dl)
	}
	n, err := d.Conn.Read(p)
	d.n += int64(n)
	return n, err
}

func (d *dconn) Write(p []byte) (int, error) {
	if d.mode != modeNone {
		d.Conn.SetWriteDeadline(time.Now().Add(d.idle))
	}
	return d.Conn.Write(p)
}
