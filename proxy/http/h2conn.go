package http

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	nethttp "net/http"
	"sync/atomic"
	"time"

	"portcullis.dev/portcullis/proxy"
)

// h2Conn is an HTTP/2 client connection as x/net's server reads it:
// through the bufio.Reader that sniffed the preface, with the frames
// seen as they pass, so that the proxy can enforce what x/net does not.
// Only x/net's frame-reader goroutine reads it.
type h2Conn struct {
	net.Conn
	r *bufio.Reader

	// preface counts the preface bytes still to pass.
	preface int
	hdr     [9]byte
	hn      int
	// payload is what remains of the current frame's payload.
	payload int
	frames  int
	// headTimeout reports a connection cut by the head deadline.
	headTimeout func()
}

func newH2Conn(c net.Conn, br *bufio.Reader) *h2Conn {
	return &h2Conn{Conn: c, r: br, preface: len(h2Preface)}
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.scan(p[:n])
	if err != nil && c.frames == 0 && isTimeout(err) && c.headTimeout != nil {
		c.headTimeout()
		c.headTimeout = nil
	}
	return n, err
}

// scan follows the frame boundaries in b.
func (c *h2Conn) scan(b []byte) {
	for len(b) > 0 {
		switch {
		case c.preface > 0:
			k := min(c.preface, len(b))
			c.preface -= k
			b = b[k:]
		case c.payload > 0:
			k := min(c.payload, len(b))
			c.payload -= k
			b = b[k:]
			if c.payload == 0 {
				c.frameDone()
			}
		default:
			k := copy(c.hdr[c.hn:], b)
			c.hn += k
			b = b[k:]
			if c.hn < len(c.hdr) {
				return
			}
			c.hn = 0
			c.payload = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
			c.frame(c.hdr[3], c.hdr[4], binary.BigEndian.Uint32(c.hdr[5:])&(1<<31-1), c.payload)
			if c.payload == 0 {
				c.frameDone()
			}
		}
	}
}

// frame sees a frame header.
func (c *h2Conn) frame(typ, flags byte, stream uint32, length int) {}

// frameDone sees the end of a frame. The first one (the client's
// SETTINGS) ends the head deadline set at the accept: from there x/net's
// timeouts apply.
func (c *h2Conn) frameDone() {
	c.frames++
	if c.frames == 1 {
		c.Conn.SetReadDeadline(time.Time{})
		proxy.Started(c.Conn)
	}
}

// h2Body bounds an HTTP/2 request body as Options BodyTimeout and
// MinBodyRate say. A timer checks the deadline when it would pass (not at
// every read, which costs nothing then) and, if the body is late, makes
// x/net end its reads with os.ErrDeadlineExceeded.
type h2Body struct {
	io.ReadCloser
	n        atomic.Int64
	timedOut atomic.Bool
	base     time.Time
	rate     int64
	timer    *time.Timer
}

func newH2Body(w nethttp.ResponseWriter, body io.ReadCloser, timeout time.Duration, rate int64) *h2Body {
	b := &h2Body{ReadCloser: body, base: time.Now().Add(timeout), rate: rate}
	rc := nethttp.NewResponseController(w)
	b.timer = time.AfterFunc(timeout, func() {
		if dl := b.deadline(); time.Until(dl) > 0 {
			b.timer.Reset(time.Until(dl))
			return
		}
		b.timedOut.Store(true)
		rc.SetReadDeadline(time.Now().Add(-time.Second))
	})
	return b
}

func (b *h2Body) deadline() time.Time {
	return b.base.Add(time.Duration(b.n.Load()) * time.Second / time.Duration(b.rate))
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil {
		b.timer.Stop()
	}
	return n, err
}

// stop ends the bound once the request is over.
func (b *h2Body) stop() { b.timer.Stop() }
