package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
)

// Defaults of the Options limits.
const (
	// DefaultMaxRequestBytes is Kafka's own socket.request.max.bytes.
	DefaultMaxRequestBytes = 100 << 20
	// DefaultIdleTimeout is Kafka's connections.max.idle.ms.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultRequestTimeout bounds the time from a request's first byte to
	// its last (Kafka's request.timeout.ms).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxInFlight bounds the pipelined requests of a connection
	// that wait for their responses; the proxy stops reading beyond it.
	DefaultMaxInFlight = 128
)

// Options configure a Server. Zero limits take the defaults above.
type Options struct {
	// Resolver gives the policy of each request: Resolve(src, dst, 6) is
	// called once per request, so a policy change applies to the next
	// request on an open connection. A nil ConnPolicy denies the request.
	Resolver proxy.Resolver
	// Dial opens the upstream connection of a client connection (one
	// each: Kafka connections are long-lived). nil:
	// proxy.DialDestination.
	Dial func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// Record receives one event per request. It must not block. nil: none.
	Record func(monitor.Event)
	// Node names this node in events.
	Node string
	// Advertise, when set (HOST:PORT), replaces every broker address of
	// Metadata and FindCoordinator responses: the standalone proxy's
	// listen address, so clients keep connecting through it.
	Advertise string

	// MaxRequestBytes bounds a request's size; a larger (or negative)
	// size closes the connection.
	MaxRequestBytes int
	// IdleTimeout closes a connection with no request for that long.
	IdleTimeout time.Duration
	// RequestTimeout bounds the reading of one request (a client that
	// starts a request and stalls is cut off) and the wait for a
	// response.
	RequestTimeout time.Duration
	// MaxInFlight bounds the requests awaiting responses per connection.
	MaxInFlight int
}

func (o *Options) setDefaults() {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Dial == nil {
		o.Dial = proxy.DialDestination
	}
}

// Server serves redirected Kafka connections; one Server serves every
// connection of a node.
type Server struct {
	o   Options
	adv *advertiser

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New returns a Server.
func New(o Options) (*Server, error) {
	o.setDefaults()
	s := &Server{o: o, conns: map[*conn]struct{}{}}
	if o.Advertise != "" {
		a, err := newAdvertiser(o.Advertise)
		if err != nil {
			return nil, err
		}
		s.adv = a
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close closes every connection being served and waits for them.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// conn is one client connection and its upstream connection.
type conn struct {
	s        *Server
	client   net.Conn
	upstream net.Conn
	src, dst netip.AddrPort
	br       *bufio.Reader
	// uw buffers the requests forwarded while more are pipelined behind
	// them; it comes from writers and goes back once flushed.
	uw      *bufio.Writer
	pending chan *inflight
	once    sync.Once
	// ended is set when the connection is being torn down on an error.
	ended chan struct{}
}

// inflight is a request awaiting its response, in request order: either
// the broker's (forwarded) or one of the proxy's own (local).
type inflight struct {
	r     *request
	start time.Time
	ev    monitor.Event
	local []byte
}

func (c *conn) abort() {
	c.once.Do(func() {
		close(c.ended)
		_ = c.client.Close()
		if c.upstream != nil {
			_ = c.upstream.Close()
		}
	})
}

// ServeConn serves one client connection whose flow is src → dst until
// it ends or ctx is done; it closes c.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort) {
	k := &conn{s: s, client: c, src: src, dst: dst, ended: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.conns[k] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, k)
		s.mu.Unlock()
		s.wg.Done()
	}()
	defer k.abort()
	defer func() {
		// A bug must cost one connection, not the node's proxy.
		if p := recover(); p != nil {
			s.record(k.connEvent(monitor.VerdictError, fmt.Sprintf("internal error: %v", p)))
		}
	}()
	stop := context.AfterFunc(ctx, k.abort)
	defer stop()
	stopS := context.AfterFunc(s.ctx, k.abort)
	defer stopS()

	up, err := s.o.Dial(ctx, src, dst)
	if err != nil {
		s.record(k.connEvent(monitor.VerdictError, "upstream: "+err.Error()))
		return
	}
	k.upstream = up
	select {
	case <-k.ended:
		_ = up.Close()
		return
	default:
	}
	k.br = bufio.NewReaderSize(c, 16<<10)
	k.pending = make(chan *inflight, s.o.MaxInFlight)
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.respond()
	}()
	k.readRequests()
	close(k.pending)
	<-done
}

// connEvent is an event about the connection rather than a request.
func (c *conn) connEvent(verdict, reason string) monitor.Event {
	cp := &proxy.ConnPolicy{Source: proxy.Peer{Addr: c.src}, Destination: proxy.Peer{Addr: c.dst}}
	if res := c.s.o.Resolver; res != nil {
		if p := res.Resolve(c.src, c.dst, policy.ProtoTCP); p != nil {
			cp = p
		}
	}
	e := cp.Event(verdict, reason, "kafka", nil)
	e.Node = c.s.o.Node
	return e
}

func (s *Server) record(e monitor.Event) {
	if s.o.Record != nil {
		s.o.Record(e)
	}
}

// errClosed ends a connection without an event of its own.
var errClosed = errors.New("closed")

// readRequests reads, judges and forwards or answers each request until
// the client closes the connection or a request ends it.
func (c *conn) readRequests() {
	var hdr [4]byte
	for {
		_ = c.client.SetReadDeadline(time.Now().Add(c.s.o.IdleTimeout))
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) && !isClosed(err) {
				c.s.record(c.connEvent(monitor.VerdictError, "reading a request: "+err.Error()))
				c.abort()
			}
			return
		}
		start := time.Now()
		_ = c.client.SetReadDeadline(start.Add(c.s.o.RequestTimeout))
		size := int32(binary.BigEndian.Uint32(hdr[:]))
		if size < 0 || int64(size) > int64(c.s.o.MaxRequestBytes) {
			c.s.record(c.connEvent(monitor.VerdictError, fmt.Sprintf("request size %d outside 0-%d bytes (socket.request.max.bytes): connection closed", size, c.s.o.MaxRequestBytes)))
			c.abort()
			return
		}
		frame, err := readFrame(c.br, hdr, int(size))
		if err != nil {
			if !isClosed(err) {
				c.s.record(c.connEvent(monitor.VerdictError, fmt.Sprintf("reading a %d-byte request: %v", size, err)))
			}
			c.abort()
			return
		}
		if err := c.handle(frame, start); err != nil {
			if !errors.Is(err, errClosed) {
				c.s.record(c.connEvent(monitor.VerdictError, err.Error()))
			}
			c.abort()
			return
		}
	}
}

// writers are the write buffers of connections with something to send:
// an idle connection, or one waiting for the rest of a request, holds
// none (16 KiB each way saved per connection).
var writers = proxy.NewWriterPool(16 << 10)

// readFrame reads a request of size bytes after its size prefix. The
// buffer grows with the bytes that arrive (at most double them plus
// 4 KiB), not with the size announced: a client that announces 100 MiB
// and stalls holds what it sent.
func readFrame(r io.Reader, hdr [4]byte, size int) ([]byte, error) {
	const first = 4 << 10
	frame := make([]byte, 4, 4+min(size, first))
	copy(frame, hdr[:])
	for len(frame) < 4+size {
		n := min(4+size-len(frame), max(first, len(frame)))
		frame = slices.Grow(frame, n)
		m, err := io.ReadFull(r, frame[len(frame):len(frame)+n])
		frame = frame[:len(frame)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return frame, nil
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// handle judges one request and forwards it or queues the proxy's answer.
func (c *conn) handle(frame []byte, start time.Time) error {
	r, err := decodeRequest(frame)
	if err != nil {
		if r != nil && r.key == keyApiVersions && r.version > maxDecodable(keyApiVersions) {
			return c.queue(&inflight{r: r, start: start, local: unsupportedAPIVersions(r.correlationID),
				ev: c.requestEvent(nil, r, monitor.VerdictForwarded, "ApiVersions version above what the proxy decodes: answered UNSUPPORTED_VERSION with the versions it does (KIP-511)", start)})
		}
		ev := c.connEvent(monitor.VerdictError, err.Error()+": connection closed")
		if r != nil {
			ev.L7.Kafka = &monitor.Kafka{APIKey: l7.KafkaAPIKeyName(r.key), APIVersion: r.version, ClientID: r.clientID}
		}
		c.s.record(ev)
		return errClosed
	}
	r.topics = dedupTopics(r.topics)
	cp := c.s.o.Resolver.Resolve(c.src, c.dst, policy.ProtoTCP)
	if cp == nil {
		cp = &proxy.ConnPolicy{Source: proxy.Peer{Addr: c.src}, Destination: proxy.Peer{Addr: c.dst},
			Denied: &proxy.Side{Decision: policy.Decision{Verdict: policy.Deny, Reason: "no policy"}}}
	}
	d := cp.DecideKafka(l7.KafkaRequest{APIKey: r.key, APIVersion: r.version, ClientID: r.clientID, Topics: r.topics})
	if !d.Allowed {
		return c.deny(cp, &d, r, start)
	}
	verdict, reason := monitor.VerdictForwarded, ""
	if d.Audited {
		verdict, reason = monitor.VerdictAudited, denialReason(&d)+" (audit mode: forwarded)"
	}
	ev := c.requestEvent(cp, r, verdict, reason, start)
	switch {
	case d.Audited:
		ev.Direction, ev.Policy = d.DeniedBy.Direction.String(), d.DeniedBy.Policies()
	case d.RuleSide != nil:
		ev.Direction, ev.Policy = d.RuleSide.Direction.String(), d.Rule
	}
	if f, ok := r.msg.(*kmsg.FetchRequest); ok && r.version >= 7 && (f.SessionID != 0 || f.SessionEpoch != -1) {
		// A fetch session lets later requests name no topic and still
		// read the session's: every fetch is made sessionless (epoch -1,
		// KIP-227's full fetch without a session) so that each names all
		// of its topics and is judged on them.
		f.SessionID, f.SessionEpoch, f.ForgottenTopics = 0, -1, nil
		frame = withBody(r, f)
	}
	if !r.noResponse {
		if err := c.queue(&inflight{r: r, start: start, ev: ev}); err != nil {
			return err
		}
	}
	if c.uw == nil {
		c.uw = writers.Get(c.upstream)
	}
	if _, err := c.uw.Write(frame); err != nil {
		return fmt.Errorf("writing to the broker: %w", err)
	}
	if c.br.Buffered() == 0 {
		// Nothing pipelined behind this request: send what is buffered.
		if err := c.uw.Flush(); err != nil {
			return fmt.Errorf("writing to the broker: %w", err)
		}
		writers.Put(c.uw)
		c.uw = nil
	}
	if r.noResponse {
		c.s.record(ev)
	}
	return nil
}

// deny answers a denied request in Kafka's words, or drops it when no
// answer is expected.
func (c *conn) deny(cp *proxy.ConnPolicy, d *proxy.KafkaDecision, r *request, start time.Time) error {
	reason := denialReason(d)
	code := errorCodeFor(r, len(d.DeniedTopics) > 0)
	ev := c.requestEvent(cp, r, monitor.VerdictDenied, reason, start)
	if s := d.DeniedBy; s != nil {
		if s.Endpoint != nil {
			ev.Direction = s.Direction.String()
		}
		ev.Policy = s.Policies()
	}
	if r.noResponse {
		ev.Reason += "; acks=0: dropped without a response"
		c.s.record(ev)
		return nil
	}
	resp := denialResponse(r, code)
	if resp == nil {
		ev.Reason += fmt.Sprintf("; the proxy has no %s response to answer with: connection closed", l7.KafkaAPIKeyName(r.key))
		c.s.record(ev)
		return errClosed
	}
	ev.L7.Kafka.ErrorCode = code
	return c.queue(&inflight{r: r, start: start, ev: ev, local: appendResponse(nil, r.correlationID, resp)})
}

func denialReason(d *proxy.KafkaDecision) string {
	s := d.DeniedBy
	switch {
	case len(d.DeniedTopics) > 0:
		return "topics not allowed: " + strings.Join(d.DeniedTopics, ",")
	case s == nil:
		return "policy"
	case s.Decision.Verdict == policy.Redirect:
		return "no-l7-rule-matched"
	case s.Decision.Reason != "":
		return s.Decision.Reason
	}
	return "policy"
}

func (c *conn) requestEvent(cp *proxy.ConnPolicy, r *request, verdict, reason string, start time.Time) monitor.Event {
	var e monitor.Event
	if cp == nil {
		e = c.connEvent(verdict, reason)
	} else {
		e = cp.Event(verdict, reason, "kafka", nil)
		e.Node = c.s.o.Node
	}
	e.Time = start
	e.L7.Kafka = &monitor.Kafka{APIKey: l7.KafkaAPIKeyName(r.key), APIVersion: r.version, ClientID: r.clientID, Topics: r.topics}
	return e
}

// queue hands a request to the response side, in request order.
func (c *conn) queue(f *inflight) error {
	select {
	case c.pending <- f:
		return nil
	case <-c.ended:
		return errClosed
	}
}

// respond relays, in request order, the broker's responses to forwarded
// requests and the proxy's own answers: an answer waits until the
// responses of the requests before it have been relayed.
func (c *conn) respond() {
	var cw *bufio.Writer
	for f := range c.pending {
		if cw == nil {
			cw = writers.Get(c.client)
		}
		if err := c.respondOne(cw, f); err != nil {
			if !errors.Is(err, errClosed) && !isClosed(err) {
				c.s.record(c.connEvent(monitor.VerdictError, err.Error()))
			}
			c.abort()
			for range c.pending {
			}
			return
		}
		if len(c.pending) == 0 {
			if err := cw.Flush(); err != nil {
				c.abort()
				for range c.pending {
				}
				return
			}
			writers.Put(cw)
			cw = nil
		}
		if f.ev.L7 != nil {
			f.ev.L7.Latency = time.Since(f.start)
		}
		c.s.record(f.ev)
	}
	if cw != nil {
		_ = cw.Flush()
	}
}

func (c *conn) respondOne(cw *bufio.Writer, f *inflight) error {
	if f.local != nil {
		_, err := cw.Write(f.local)
		return err
	}
	_ = c.upstream.SetReadDeadline(time.Now().Add(c.s.o.RequestTimeout + time.Duration(requestTimeoutMillis(f.r.msg))*time.Millisecond))
	var hdr [8]byte
	if _, err := io.ReadFull(c.upstream, hdr[:]); err != nil {
		if isClosed(err) {
			return errClosed
		}
		return fmt.Errorf("reading the broker's response to %s v%d: %w", l7.KafkaAPIKeyName(f.r.key), f.r.version, err)
	}
	size := int32(binary.BigEndian.Uint32(hdr[:]))
	corr := int32(binary.BigEndian.Uint32(hdr[4:]))
	if size < 4 {
		return fmt.Errorf("broker response of %d bytes", size)
	}
	if corr != f.r.correlationID {
		return fmt.Errorf("broker response with correlation id %d to request %d (%s v%d)", corr, f.r.correlationID, l7.KafkaAPIKeyName(f.r.key), f.r.version)
	}
	if f.r.key == keyApiVersions || c.s.adv.rewrites(f.r.key) {
		if int64(size) > int64(c.s.o.MaxRequestBytes) {
			return fmt.Errorf("broker's %s response of %d bytes is over the limit", l7.KafkaAPIKeyName(f.r.key), size)
		}
		frame, err := readFrame(io.MultiReader(bytes.NewReader(hdr[4:]), c.upstream), [4]byte(hdr[:4]), int(size))
		if err != nil {
			return fmt.Errorf("reading the broker's %s response: %w", l7.KafkaAPIKeyName(f.r.key), err)
		}
		if f.r.key == keyApiVersions {
			frame, err = clampAPIVersions(frame, f.r.version)
		} else {
			frame, err = c.s.adv.rewrite(frame, f.r.key, f.r.version)
		}
		if err != nil {
			return err
		}
		_, err = cw.Write(frame)
		return err
	}
	if _, err := cw.Write(hdr[:]); err != nil {
		return err
	}
	var dst io.Writer = cw
	if int(size)-4 > cw.Available() {
		// A response larger than the buffer (a fetch's records) goes
		// straight from socket to socket (splice(2) on Linux) instead of
		// through the buffer in 16 KiB pieces.
		if err := cw.Flush(); err != nil {
			return err
		}
		dst = c.client
	}
	if _, err := io.CopyN(dst, c.upstream, int64(size)-4); err != nil {
		return fmt.Errorf("relaying the broker's %s response: %w", l7.KafkaAPIKeyName(f.r.key), err)
	}
	return nil
}

// requestTimeoutMillis is how long the broker may hold a request before
// it answers (a Fetch's max wait, a Produce's timeout, a JoinGroup's
// rebalance), so a long poll is not taken for a dead broker.
func requestTimeoutMillis(m kmsg.Request) int32 {
	switch r := m.(type) {
	case *kmsg.FetchRequest:
		return r.MaxWaitMillis
	case *kmsg.ProduceRequest:
		return r.TimeoutMillis
	case *kmsg.JoinGroupRequest:
		return max(r.RebalanceTimeoutMillis, r.SessionTimeoutMillis)
	}
	if t, ok := m.(kmsg.TimeoutRequest); ok {
		return t.Timeout()
	}
	return 0
}
