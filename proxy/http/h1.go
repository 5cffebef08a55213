package http

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
)

// h1conn is one HTTP/1.1 client connection.
type h1conn struct {
	s        *Server
	dc       *dconn
	br       *bufio.Reader
	bw       *bufio.Writer
	src, dst netip.AddrPort
	key      poolKey
	head     []byte
	rhead    []byte
	peers    [2]peerCache
	lr       io.LimitedReader
	wo       writerOnly
	acc      access
	// linger: close gracefully, the client may still be sending.
	linger bool
	pr     prefixReader

	// cur is the upstream connection of the request in progress, closed
	// by abort when the connection must end (Server.Close, ctx done)
	// while the proxy waits on the upstream.
	mu  sync.Mutex
	cur *upConn
	// held is the upstream connection of the previous request, kept for
	// the next one while both connections live: a keep-alive client then
	// costs no pool round trip and, above all, no upstream dial when more
	// client connections share a key than the pool keeps idle. It goes to
	// the pool when the client connection ends. (The key cannot change:
	// it is the client connection's own source and destination.)
	held    *upConn
	aborted bool
	req     request
	resp    response
	// headDeadline bounds the first request's head: the accept plus
	// ReadHeaderTimeout (zero once that request is read).
	headDeadline time.Time
	// dec describes the TLS of an intercepted connection (nil in the
	// clear).
	dec *Decrypted
}

// sni is the server name requests are judged with ("" in the clear).
func (h *h1conn) sni() string {
	if h.dec == nil {
		return ""
	}
	return h.dec.ServerName
}

func (h *h1conn) serve(ctx context.Context) {
	h.key = keyOf(h.src, h.dst)
	if h.dec != nil {
		h.key.up = h.dec.Key
	}
	for ctx.Err() == nil && h.serveOne(ctx) {
	}
	if h.held != nil {
		h.s.pool.put(h.held)
		h.held = nil
	}
	if h.linger {
		h.lingerClose()
	}
	if h.br != nil {
		readers.Put(h.br)
		h.br = nil
	}
}

// prefixReader yields the bytes of a first read made while the
// connection had no read buffer, then reads the connection.
type prefixReader struct {
	buf      [512]byte
	off, end int
	r        io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.off < p.end {
		n := copy(b, p.buf[p.off:p.end])
		p.off += n
		return n, nil
	}
	return p.r.Read(b)
}

// await waits for the next request. A connection idle with nothing
// buffered gives its 4 KiB read buffer back to the pool while it waits in
// a read of at most 512 bytes, which holds most requests' heads whole, so
// that idle keep-alive connections cost little more than their goroutine
// and a request usually costs no extra read. (Its write buffer is only
// held during a request.)
func (h *h1conn) await() error {
	if h.br.Buffered() > 0 || h.pr.off < h.pr.end {
		return nil
	}
	readers.Put(h.br)
	h.br = nil
	n, err := h.dc.Read(h.pr.buf[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	h.pr.off, h.pr.end, h.pr.r = 0, n, h.dc
	h.br = readers.Get(&h.pr)
	return nil
}

// lingerClose ends a connection the proxy refused while the client may
// still be sending: closing with unread data would make the kernel reset
// the connection and the client could lose the error response. It closes
// the write side and drains a bounded amount for a bounded time.
func (h *h1conn) lingerClose() {
	closeWrite(h.dc.Conn)
	h.dc.mode = modeFixed
	h.dc.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, h.br, 256<<10)
}

// serveOne serves one request and reports whether the connection may
// carry another.
func (h *h1conn) serveOne(ctx context.Context) bool {
	o := &h.s.o
	h.dc.mode = modeIdle
	if err := h.await(); err != nil {
		return false
	}
	h.bw = writers.Get(h.dc)
	defer func() {
		writers.Put(h.bw)
		h.bw = nil
	}()
	start := time.Now()
	deadline := start.Add(o.ReadHeaderTimeout)
	if !h.headDeadline.IsZero() {
		// The first request: the deadline runs from the accept.
		deadline, h.headDeadline = h.headDeadline, time.Time{}
	}
	h.dc.mode = modeFixed
	h.dc.Conn.SetReadDeadline(deadline)
	head, err := readHead(h.br, h.head[:0], o.MaxHeaderBytes, o.MaxHeaderCount, true)
	h.head = head[:0]
	if err != nil {
		h.req.reset() // the event must not show the previous request
	} else {
		err = parseRequest(string(head), &h.req, o.MaxHeaderCount)
	}
	h.dc.mode = modeIdle
	if err == nil {
		err = h.s.checkRequest(&h.req)
	}
	if err != nil && isTimeout(err) && len(head) > 0 {
		// A request begun and not finished in time: 408, as haproxy's
		// timeout http-request answers, however fast the bytes came.
		err = &httpError{status: 408, msg: "request header timeout"}
	} else if isTimeout(err) {
		// Silent until the deadline: closed without an answer.
		a := &access{proto: "http/1.1", verdict: monitor.VerdictError, reason: "request header timeout", start: start, peers: &h.peers, refused: reasonHeaderTimeout}
		if o.Record != nil {
			a.cp = h.s.resolve(h.src, h.dst)
		}
		h.s.record(a)
		return false
	}
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			a := &access{proto: "http/1.1", verdict: monitor.VerdictError, reason: he.msg, start: start, status: he.status, peers: &h.peers, refused: refusedOf(he.status)}
			if o.Record != nil {
				a.method, a.path, a.host = h.req.method, h.req.path, h.req.host
				a.cp = h.s.resolve(h.src, h.dst)
			}
			h.s.record(a)
			h.writeSimple(he.status, statusText(he.status)+": "+he.msg+"\r\n", true, false)
			h.linger = true
		}
		return false
	}
	r := &h.req
	proxy.Started(h.dc.Conn)
	if r.hasBody() {
		h.dc.startBody(o.BodyTimeout, o.MinBodyRate)
		defer h.dc.endBody()
	}
	cp := h.s.resolve(h.src, h.dst)
	d := h.s.decide(cp, l7.HTTPRequest{Method: r.method, Path: r.path, Host: r.host, Header: r.header, ServerName: h.sni()})
	h.acc = access{cp: cp, proto: "http/1.1", method: r.method, path: r.path, host: r.host, start: start, peers: &h.peers, sni: h.sni()}
	a := &h.acc
	a.verdictOf(&d)
	if !d.Allowed {
		return h.deny(r, a)
	}
	for _, act := range d.Actions {
		act.Apply(r.header)
	}
	return h.forward(ctx, r, d.Actions, a)
}

// deny answers 403 and keeps the connection when the request's body is
// small enough to drop.
func (h *h1conn) deny(r *request, a *access) bool {
	keep := !r.close && !r.expectContinue && r.upgrade == ""
	if keep && r.hasBody() && (r.chunked || r.contentLength > h.s.o.MaxDiscardBytes) {
		keep = false
	}
	a.status = 403
	h.s.record(a)
	h.writeSimple(403, deniedBody, !keep, r.method == "HEAD")
	if !keep {
		h.linger = r.hasBody()
		return false
	}
	if r.contentLength > 0 {
		if _, err := io.CopyN(io.Discard, h.br, r.contentLength); err != nil {
			return false
		}
	}
	return true
}

// writeSimple answers a short text/plain response of the proxy's own.
func (h *h1conn) writeSimple(status int, body string, closeConn, head bool) {
	bw := h.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(status))
	bw.WriteByte(' ')
	bw.WriteString(statusText(status))
	bw.WriteString("\r\nContent-Type: text/plain\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	if closeConn {
		bw.WriteString("\r\nConnection: close")
	} else if h.req.minor == 0 {
		bw.WriteString("\r\nConnection: keep-alive")
	}
	bw.WriteString("\r\n\r\n")
	if !head {
		bw.WriteString(body)
	}
	bw.Flush()
}

// upstream returns the held, a pooled or a new upstream connection.
func (h *h1conn) upstream(ctx context.Context, fresh bool) (*upConn, error) {
	var u *upConn
	if !fresh {
		if u, h.held = h.held, nil; u != nil && time.Since(u.since) >= h.s.o.IdleTimeout {
			go u.close()
			u = nil
		}
		if u == nil {
			u = h.s.pool.get(h.key)
		}
	}
	if u == nil {
		var c net.Conn
		var err error
		if h.dec != nil {
			c, err = h.dec.Dial(ctx, "http/1.1")
		} else {
			c, err = h.s.o.Dial(ctx, h.src, h.dst)
		}
		if err != nil {
			return nil, err
		}
		u = &upConn{c: c, dc: &dconn{Conn: c, idle: h.s.o.IdleTimeout}, key: h.key}
	}
	u.unpark()
	h.mu.Lock()
	h.cur = u
	if h.aborted {
		u.c.Close()
	}
	h.mu.Unlock()
	return u, nil
}

// release keeps the request's upstream connection, idle, for the client
// connection's next request.
func (h *h1conn) release(u *upConn) {
	h.mu.Lock()
	h.cur = nil
	h.mu.Unlock()
	u.park()
	u.since = time.Now()
	u.reused = true
	h.held = u
}

// abort closes the upstream connection in use, if any.
func (h *h1conn) abort() {
	h.mu.Lock()
	h.aborted = true
	if h.cur != nil {
		h.cur.c.Close()
	}
	h.mu.Unlock()
}

// errRequestSent: the failure came after the request body was consumed;
// the request cannot be retried.
var errRequestSent = errors.New("request already sent")

// forward sends an allowed request upstream and relays the response.
func (h *h1conn) forward(ctx context.Context, r *request, actions []l7.HeaderAction, a *access) bool {
	u, err := h.upstream(ctx, false)
	if err != nil {
		return h.badGateway(r, a, err)
	}
	if r.expectContinue {
		// The proxy answers the expectation itself once the request is
		// allowed and does not pass Expect on: the body then always
		// follows the head upstream.
		h.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if h.bw.Flush() != nil {
			u.close()
			return false
		}
	}
	err = h.sendRequest(u, r, actions)
	if re := (*readError)(nil); errors.As(err, &re) {
		// The client's body failed (too slow, malformed chunks, gone):
		// its error, not the upstream's.
		u.close()
		return h.clientFailed(r, a, re)
	}
	if err == nil {
		err = h.readResponseHead(u, r)
	}
	if err != nil && u.reused && !r.hasBody() && idempotent(r.method) && !errors.Is(err, errBadResponse) && !isTimeout(err) {
		// An idle upstream connection may have been closed by the server
		// just as it was taken: retry once on a new connection. Only
		// requests without a body (nothing of the client's was consumed
		// but the head) and with an idempotent method (the server may
		// have acted before closing), as net/http's Transport does.
		u.close()
		if u, err = h.upstream(ctx, true); err == nil {
			if err = h.sendRequest(u, r, actions); err == nil {
				err = h.readResponseHead(u, r)
			}
		}
	}
	if err != nil {
		if u != nil {
			u.close()
		}
		return h.badGateway(r, a, err)
	}
	resp := &h.resp
	a.status = resp.status
	if resp.status == 101 {
		if r.upgrade == "" {
			u.close()
			return h.badGateway(r, a, errBadResponse)
		}
		h.s.record(a)
		h.splice(u, resp)
		return false
	}

	bodyless := resp.bodyless(r.method)
	closeClient := r.close
	chunkOut := false
	switch {
	case bodyless:
	case resp.chunked:
		chunkOut = r.minor == 1
		closeClient = closeClient || r.minor == 0
	case resp.contentLength >= 0:
	default:
		// Delimited by the upstream closing: so is the client's.
		closeClient = true
	}
	h.writeResponseHead(resp, chunkOut, closeClient)
	h.s.record(a)
	err = h.copyResponseBody(u, resp, bodyless, chunkOut)
	// The upstream connection goes back to the pool before the client
	// sees the end of the response, so that its next request finds it.
	if err == nil && !resp.close && (bodyless || resp.chunked || resp.contentLength >= 0) && u.br.Buffered() == 0 {
		h.release(u)
	} else {
		u.close()
	}
	// On an upstream failure mid-body the client gets what came, then the
	// close: a cut response, never one that looks complete (its framing
	// is unfinished) nor none at all (a client could retry it).
	if ferr := h.bw.Flush(); err == nil {
		err = ferr
	}
	return err == nil && !closeClient
}

func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// badGateway answers 502 (504 when the upstream timed out) after an
// upstream failure and records an ERROR event.
func (h *h1conn) badGateway(r *request, a *access, err error) bool {
	status := 502
	if isTimeout(err) {
		status = 504
	}
	a.status, a.verdict, a.reason = status, monitor.VerdictError, "upstream: "+err.Error()
	// The request's body may be partly consumed: the connection cannot be
	// trusted to be at a request boundary.
	h.s.record(a)
	h.writeSimple(status, statusText(status)+"\r\n", true, r.method == "HEAD")
	h.linger = true
	return false
}

// clientFailed answers a request whose body the client did not deliver:
// 408 when too slow, 400 otherwise (a malformed chunk, a cut body).
func (h *h1conn) clientFailed(r *request, a *access, err error) bool {
	a.status, a.verdict, a.reason, a.refused = 400, monitor.VerdictError, "request body: "+err.Error(), reasonBadRequest
	if isTimeout(err) {
		a.status, a.reason, a.refused = 408, "request body timeout", reasonBodyTimeout
	}
	h.s.record(a)
	h.writeSimple(a.status, statusText(a.status)+"\r\n", true, r.method == "HEAD")
	h.linger = true
	return false
}

// refusedOf classifies a status the proxy answers before a verdict.
func refusedOf(status int) string {
	switch status {
	case 408:
		return reasonHeaderTimeout
	case 431:
		return reasonHeaderSize
	}
	return reasonBadRequest
}

// sendRequest writes the request head and body upstream.
func (h *h1conn) sendRequest(u *upConn, r *request, actions []l7.HeaderAction) error {
	bw := u.bw
	bw.WriteString(r.method)
	bw.WriteByte(' ')
	bw.WriteString(r.path)
	bw.WriteString(" HTTP/1.1\r\n")
	// Framing is the proxy's: Host, Content-Length and the hop-by-hop
	// fields are written from what the proxy parsed, whatever the header
	// actions say, so that no policy can make the upstream frame the
	// request differently.
	host := r.host
	if touched(actions, "Host") {
		if vs := r.header["Host"]; len(vs) > 0 {
			host = vs[0]
		}
	}
	if host == "" {
		host = h.dst.String()
	}
	writeField(bw, "Host", host)
	for _, f := range r.fields {
		if !forwardable(f.name) || r.isDropped(f.name) || touched(actions, f.name) {
			continue
		}
		writeField(bw, f.name, f.value)
	}
	for i, act := range actions {
		if act.Action == v1alpha1.MismatchLog || !forwardable(act.Name) || touched(actions[:i], act.Name) {
			continue
		}
		for _, v := range r.header[act.Name] {
			writeField(bw, act.Name, v)
		}
	}
	if r.contentLength >= 0 {
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.contentLength, 10))
		bw.WriteString("\r\n")
	}
	if r.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if r.upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\n")
		writeField(bw, "Upgrade", r.upgrade)
	}
	bw.WriteString("\r\n")
	if r.contentLength > 0 {
		if err := h.copyBody(bw, h.limit(h.br, r.contentLength), r.contentLength); err != nil {
			return errors.Join(errRequestSent, err)
		}
	} else if r.chunked {
		if err := h.copyChunked(bw, h.br); err != nil {
			return errors.Join(errRequestSent, err)
		}
	}
	return bw.Flush()
}

// forwardable reports whether a request field is passed on as received
// (or as a header action left it).
func forwardable(name string) bool {
	return !hopByHop(name) && name != "Host" && name != "Content-Length" && name != "Expect"
}

func (r *request) isDropped(name string) bool {
	if name == "Content-Length" || name == "Host" {
		return false
	}
	for _, d := range r.dropped {
		if strings.EqualFold(d, name) {
			return true
		}
	}
	return false
}

func touched(actions []l7.HeaderAction, name string) bool {
	for _, a := range actions {
		if a.Name == name && a.Action != v1alpha1.MismatchLog {
			return true
		}
	}
	return false
}

func writeField(bw *bufio.Writer, name, value string) {
	bw.WriteString(name)
	bw.WriteString(": ")
	bw.WriteString(value)
	bw.WriteString("\r\n")
}

// readResponseHead reads the upstream's response head into h.resp,
// passing interim (1xx) responses other than 101 on to the client.
func (h *h1conn) readResponseHead(u *upConn, r *request) error {
	o := &h.s.o
	for {
		head, err := readHead(u.br, h.rhead[:0], o.MaxHeaderBytes, o.MaxHeaderCount, false)
		h.rhead = head[:0]
		if err != nil {
			if _, ok := err.(*httpError); ok {
				return errBadResponse
			}
			return err
		}
		if err := h.resp.parse(head, o.MaxHeaderCount); err != nil {
			return err
		}
		if h.resp.status >= 200 || h.resp.status == 101 {
			return nil
		}
		if h.resp.status == 100 || r.minor == 0 {
			continue // the proxy answered 100 itself; HTTP/1.0 has no 1xx
		}
		h.writeResponseHead(&h.resp, false, false)
		if err := h.bw.Flush(); err != nil {
			return err
		}
	}
}

// writeResponseHead writes a response head to the client, without the
// upstream's hop-by-hop fields and with the proxy's own framing.
func (h *h1conn) writeResponseHead(resp *response, chunked, closeConn bool) {
	bw := h.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(resp.statusLine)
	bw.WriteString("\r\n")
	var upgrade []byte
	for _, f := range resp.fields {
		name := f[0]
		if resp.status == 101 && asciiFold(name, "Upgrade") {
			upgrade = f[1]
			continue
		}
		if hopByHopB(name) || resp.isDropped(name) {
			continue
		}
		if asciiFold(name, "Content-Length") {
			// Written once below from the parsed value; dropped when
			// chunked, since Transfer-Encoding overrides it (RFC 9112
			// §6.3) and passing both on would let the client frame the
			// body differently from the proxy.
			continue
		}
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(f[1])
		bw.WriteString("\r\n")
	}
	if resp.contentLength >= 0 && !resp.chunked {
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(resp.contentLength, 10))
		bw.WriteString("\r\n")
	}
	if resp.status == 101 {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(upgrade)
		bw.WriteString("\r\n")
	}
	if chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	} else if h.req.minor == 0 {
		bw.WriteString("Connection: keep-alive\r\n") // HTTP/1.0 closes by default
	}
	bw.WriteString("\r\n")
}

func (r *response) isDropped(name []byte) bool {
	if asciiFold(name, "Content-Length") {
		return false
	}
	for _, d := range r.dropped {
		if len(d) == len(name) && asciiFold(name, string(d)) {
			return true
		}
	}
	return false
}
