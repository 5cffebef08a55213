package http

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"portcullis.dev/portcullis/proxy"
)

// Limits of HTTP/2 abuse accounting (Envoy's defaults where it has one).
const (
	// A connection is cut once at least prematureMinStreams streams were
	// opened and more than half of them were reset by the client within
	// prematureWindow of opening (Envoy's premature reset rule).
	prematureMinStreams = 500
	prematureWindow     = time.Second
	// maxEmptyFrames is how many consecutive DATA, HEADERS or
	// CONTINUATION frames with an empty payload (and no END_STREAM) are
	// accepted (Envoy: max_consecutive_inbound_frames_with_empty_payload).
	maxEmptyFrames = 1
	// maxControlPerSecond bounds the SETTINGS and the PING frames a client
	// sends in one second (each costs an acknowledgement; x/net only bounds
	// the acknowledgements a client does not read).
	maxControlPerSecond = 100
)

// errH2Abuse ends the reads of a connection cut for abuse.
var errH2Abuse = errors.New("http2: connection cut for abuse (ENHANCE_YOUR_CALM)")

// h2Conn is an HTTP/2 client connection as x/net's server reads it:
// through the bufio.Reader that sniffed the preface, with the frames
// seen as they pass, so that the proxy can enforce what x/net does not:
// the head deadline until the client's first frame, and the abuse limits
// above, answered with GOAWAY ENHANCE_YOUR_CALM. Only x/net's
// frame-reader goroutine reads it; the GOAWAY is written between two of
// x/net's frames (the writes are followed frame by frame too).
type h2Conn struct {
	net.Conn
	r *bufio.Reader

	rd     frameScanner
	frames int
	// refuse reports a connection the proxy cuts (the event).
	refuse func(msg, refused string)

	maxStream          atomic.Uint32
	opened             [256]streamOpen
	streams, premature int
	empty              int
	ctlWindow          time.Time
	settings, pings    int
	abused             atomic.Bool
	// headTimeout bounds a header block (HEADERS to END_HEADERS): x/net
	// has no deadline for one, and none but CONTINUATION frames may come
	// in between.
	headTimeout time.Duration
	blockTimer  *time.Timer
	closed      atomic.Bool

	wmu sync.Mutex
	// w431 collects a DATA frame the size of x/net's own 431 body: x/net
	// answers a too large header list itself, without the handler, and
	// this is how the proxy sees it.
	w431   []byte
	wr     frameScanner
	goaway []byte // pending until the writes reach a frame boundary
}

// streamOpen is when a stream was opened (a ring of the latest ones).
type streamOpen struct {
	id uint32
	at time.Time
}

func newH2Conn(c net.Conn, br *bufio.Reader, headTimeout time.Duration) *h2Conn {
	return &h2Conn{Conn: c, r: br, rd: frameScanner{skip: len(h2Preface)}, headTimeout: headTimeout}
}

func (c *h2Conn) Read(p []byte) (int, error) {
	if c.abused.Load() {
		return 0, errH2Abuse
	}
	n, err := c.r.Read(p)
	c.rd.scan(p[:n], c.frame, c.frameDone)
	if c.abused.Load() {
		if c.blockTimer != nil {
			c.blockTimer.Stop()
		}
		// Drain what the client still sends for a moment, so that the
		// close does not reset the connection before it reads the GOAWAY.
		c.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c.r, 1<<20)
		return 0, errH2Abuse
	}
	if err != nil && c.frames == 0 && isTimeout(err) && c.refuse != nil {
		c.refuse("request header timeout (HTTP/2 preface and SETTINGS)", reasonHeaderTimeout)
	}
	return n, err
}

// Close closes the connection; a header block's timer then does nothing.
func (c *h2Conn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func (c *h2Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n, err := c.Conn.Write(p)
	c.wr.scan(p[:n], c.wframe, c.wdone)
	if c.goaway != nil && c.wr.atBoundary() {
		c.Conn.Write(c.goaway)
		c.goaway = nil
	}
	return n, err
}

// x431Body is the body x/net's server answers a too large header list
// with (its handleHeaderListTooLong).
const x431Body = "<h1>HTTP Error 431</h1><p>Request Header Field(s) Too Large</p>"

// wframe sees a frame header the proxy writes.
func (c *h2Conn) wframe(typ, _ byte, _ uint32, length int) {
	if typ == 0 && length == len(x431Body) {
		c.w431 = make([]byte, 0, length)
		c.wr.capture = &c.w431
	}
}

// wdone sees the end of a frame the proxy writes.
func (c *h2Conn) wdone() {
	if c.wr.capture != nil {
		c.wr.capture = nil
		if string(c.w431) == x431Body && c.refuse != nil {
			c.refuse("header list too large (431 from the HTTP/2 server)", reasonHeaderSize)
		}
		c.w431 = nil
	}
}

// frame sees a client frame header and keeps the abuse accounts.
func (c *h2Conn) frame(typ, flags byte, stream uint32, length int) {
	const (
		data, headers, rst, settings, ping, continuation = 0, 1, 3, 4, 6, 9
		endStream, ack, endHeaders                       = 1, 1, 4
	)
	now := time.Now()
	if (typ == continuation || typ == headers) && flags&endHeaders != 0 && c.blockTimer != nil {
		c.blockTimer.Stop()
		c.blockTimer = nil
	}
	switch typ {
	case headers:
		if flags&endHeaders == 0 && c.blockTimer == nil {
			// A header block begins: it must end within the head
			// timeout, whatever the pace of its CONTINUATION frames (a
			// stalled block is cut by the timer, the reads then end).
			c.blockTimer = time.AfterFunc(c.headTimeout, func() {
				if c.closed.Load() {
					return
				}
				c.abuseAs(fmt.Sprintf("request header timeout: a header block not completed within %s", c.headTimeout), reasonHeaderTimeout)
				c.Conn.SetReadDeadline(time.Now())
			})
		}
		if stream > c.maxStream.Load() && stream&1 == 1 {
			c.maxStream.Store(stream)
			c.streams++
			c.opened[(stream>>1)%uint32(len(c.opened))] = streamOpen{stream, now}
		}
	case rst:
		if o := c.opened[(stream>>1)%uint32(len(c.opened))]; o.id == stream && now.Sub(o.at) < prematureWindow {
			c.premature++
			if c.streams >= prematureMinStreams && 2*c.premature > c.streams {
				c.abuse(fmt.Sprintf("premature resets: %d of %d streams reset within %s of opening", c.premature, c.streams, prematureWindow))
			}
		}
	case settings, ping:
		if flags&ack != 0 {
			break
		}
		if now.Sub(c.ctlWindow) >= time.Second {
			c.ctlWindow, c.settings, c.pings = now, 0, 0
		}
		if typ == settings {
			c.settings++
		} else {
			c.pings++
		}
		if c.settings > maxControlPerSecond || c.pings > maxControlPerSecond {
			c.abuse(fmt.Sprintf("control frame flood: more than %d SETTINGS or PING frames in a second", maxControlPerSecond))
		}
	}
	switch {
	case length > 0:
		c.empty = 0
	case typ == continuation, typ == headers && flags&endStream == 0, typ == data && flags&endStream == 0:
		c.empty++
		if c.empty > maxEmptyFrames {
			c.abuse(fmt.Sprintf("more than %d consecutive empty frames", maxEmptyFrames))
		}
	}
}

// abuse cuts the connection: GOAWAY ENHANCE_YOUR_CALM (now if x/net's
// writes are between frames, else right after the frame being written),
// an event, and the reads end.
func (c *h2Conn) abuse(msg string) { c.abuseAs(msg, reasonH2Abuse) }

// abuseAs is abuse with the refusal class of the event. It may run on a
// timer's goroutine too.
func (c *h2Conn) abuseAs(msg, refused string) {
	if !c.abused.CompareAndSwap(false, true) {
		return
	}
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	fr.WriteGoAway(c.maxStream.Load(), http2.ErrCodeEnhanceYourCalm, []byte(msg))
	// A client that does not read must not hold the frame reader.
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.wmu.Lock()
	if c.wr.atBoundary() {
		c.Conn.Write(b.Bytes())
	} else {
		c.goaway = b.Bytes()
	}
	c.wmu.Unlock()
	if c.refuse != nil {
		if refused == reasonH2Abuse {
			msg = "HTTP/2 abuse: " + msg
		}
		c.refuse(msg, refused)
	}
}

// frameDone sees the end of a client frame. The first one (the client's
// SETTINGS) ends the head deadline set at the accept: from there x/net's
// timeouts apply.
func (c *h2Conn) frameDone() {
	c.frames++
	if c.frames == 1 {
		c.Conn.SetReadDeadline(time.Time{})
		proxy.Started(c.Conn)
	}
}

// frameScanner follows HTTP/2 frame boundaries in a byte stream.
type frameScanner struct {
	// skip counts bytes to pass before the first frame (the preface).
	skip    int
	hdr     [9]byte
	hn      int
	payload int // what remains of the current frame's payload
	// capture, when set, receives the current frame's payload.
	capture *[]byte
}

func (f *frameScanner) atBoundary() bool { return f.skip == 0 && f.hn == 0 && f.payload == 0 }

// scan follows b, calling onFrame for each frame header and onDone at the
// end of each frame (either may be nil).
func (f *frameScanner) scan(b []byte, onFrame func(typ, flags byte, stream uint32, length int), onDone func()) {
	for len(b) > 0 {
		switch {
		case f.skip > 0:
			k := min(f.skip, len(b))
			f.skip -= k
			b = b[k:]
		case f.payload > 0:
			k := min(f.payload, len(b))
			if f.capture != nil {
				*f.capture = append(*f.capture, b[:k]...)
			}
			f.payload -= k
			b = b[k:]
			if f.payload == 0 && onDone != nil {
				onDone()
			}
		default:
			k := copy(f.hdr[f.hn:], b)
			f.hn += k
			b = b[k:]
			if f.hn < len(f.hdr) {
				return
			}
			f.hn = 0
			f.payload = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
			if onFrame != nil {
				onFrame(f.hdr[3], f.hdr[4], binary.BigEndian.Uint32(f.hdr[5:])&(1<<31-1), f.payload)
			}
			if f.payload == 0 && onDone != nil {
				onDone()
			}
		}
	}
}

// h2Body is an HTTP/2 request body on its way upstream: each read is
// progress for the stream's idle watch, and, unless it is gRPC's, it is
// bounded as Options BodyTimeout and MinBodyRate say. A timer checks that
// deadline when it would pass (not at every read) and, if the body is
// late, makes x/net end its reads with os.ErrDeadlineExceeded.
type h2Body struct {
	io.ReadCloser
	idle     *idleWatch
	n        atomic.Int64
	timedOut atomic.Bool
	base     time.Time
	rate     int64
	timer    *time.Timer
}

// newH2Body wraps body; timeout 0: no deadline (gRPC).
func newH2Body(w nethttp.ResponseWriter, body io.ReadCloser, idle *idleWatch, timeout time.Duration, rate int64) *h2Body {
	b := &h2Body{ReadCloser: body, idle: idle, base: time.Now().Add(timeout), rate: rate}
	if timeout <= 0 {
		return b
	}
	rc := nethttp.NewResponseController(w)
	b.timer = time.AfterFunc(time.Hour, func() {
		if dl := b.deadline(); time.Until(dl) > 0 {
			b.timer.Reset(time.Until(dl))
			return
		}
		b.timedOut.Store(true)
		rc.SetReadDeadline(time.Now().Add(-time.Second))
	})
	b.timer.Reset(timeout)
	return b
}

func (b *h2Body) deadline() time.Time {
	return b.base.Add(time.Duration(b.n.Load()) * time.Second / time.Duration(b.rate))
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if n > 0 {
		b.idle.kick()
	}
	if err != nil {
		b.stop()
	}
	return n, err
}

// stop ends the bound once the request is over.
func (b *h2Body) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

// idleWatch calls fire once a stream has made no progress (kick) for d.
// The timer is re-armed only when it would fire, so progress costs one
// clock read and one atomic store.
type idleWatch struct {
	d     time.Duration
	last  atomic.Int64
	fired atomic.Bool
	t     *time.Timer
}

func newIdleWatch(d time.Duration, fire func()) *idleWatch {
	w := &idleWatch{d: d}
	w.kick()
	w.t = time.AfterFunc(time.Hour, func() {
		if rem := time.Duration(w.last.Load() + int64(w.d) - time.Now().UnixNano()); rem > 0 {
			w.t.Reset(rem)
			return
		}
		w.fired.Store(true)
		fire()
	})
	w.t.Reset(d)
	return w
}

func (w *idleWatch) kick() { w.last.Store(time.Now().UnixNano()) }
func (w *idleWatch) stop() { w.t.Stop() }
