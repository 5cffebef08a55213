package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
)

// DefaultMaxConns bounds the connections a Proxy serves at once when
// Options.MaxConns is 0. An idle HTTP/1.1 keep-alive connection with its
// upstream connection costs about 15 KiB of memory (docs/benchmarks.md),
// so the default bounds idle connections to about 240 MiB; each also
// takes two file descriptors (Go raises the soft RLIMIT_NOFILE to the
// hard limit at start).
const DefaultMaxConns = 16384

// ConnServer serves one client connection of a protocol: it reads
// requests from c, judges each under the connection's policy (resolved
// for src→dst) and forwards or answers it; it closes c when done.
// proxy/http's and proxy/kafka's *Server are.
type ConnServer interface {
	ServeConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort)
}

// Options configures a Proxy. Only Resolver is required.
type Options struct {
	// Resolver gives each connection's policy (a *Store in the agent).
	Resolver Resolver
	// HTTP serves connections whose parser is HTTP (HTTP/1.1, h2c, gRPC).
	// Nil refuses them.
	HTTP ConnServer
	// Kafka serves connections whose parser is Kafka. Nil refuses them.
	Kafka ConnServer
	// DNS serves connections whose parser is DNS (DNS over TCP; UDP
	// queries reach proxy/dns's own socket). Nil refuses them.
	DNS ConnServer
	// TLS serves connections that must be judged at the TLS layer:
	// serverNames without L7 rules, terminatingTLS, originatingTLS
	// (proxy/tls's *Server). Nil refuses them.
	TLS ConnServer
	// Dial opens the upstream of a connection that is relayed without
	// parsing (a redirected flow whose policy no longer redirects it).
	// Nil refuses such connections.
	Dial func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// Record receives an event for every connection the proxy refuses
	// itself (the protocol servers record their requests). Nil drops them.
	Record func(monitor.Event)
	// Flow gives the flow a connection stands for. Nil means the
	// transparent listener's view: the client is RemoteAddr and the
	// original destination LocalAddr. The standalone proxy maps every
	// connection to its two configured endpoints instead.
	Flow func(c net.Conn) (src, dst netip.AddrPort)
	// MaxConns bounds the connections served at once; beyond it new ones
	// are reset with an event. 0 means DefaultMaxConns.
	MaxConns int
}

// Proxy accepts redirected connections and hands each to the server of
// its parser, refusing (with a TCP reset and an event) whatever cannot be
// judged: no policy snapshot, an L4 denial, a parser that is not built.
type Proxy struct {
	o      Options
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]*slot
	// live counts the connections holding a slot (the reclaimed ones
	// still closing hold none).
	live   int
	closed bool
	wg     sync.WaitGroup
}

// New returns a Proxy; Serve starts it on a listener.
func New(o Options) (*Proxy, error) {
	if o.Resolver == nil {
		return nil, errors.New("proxy: no Resolver")
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{
		o: o, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]*slot{},
	}, nil
}

// ListenTransparent opens the TCP listener the datapath redirects to:
// addr is normally 0.0.0.0:PORT (a listener on 127.0.0.1 is not found by
// the datapath's socket lookup for other destinations), with IP_TRANSPARENT so that it accepts connections for any
// destination address. It needs CAP_NET_ADMIN (or CAP_NET_RAW).
func ListenTransparent(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("IP_TRANSPARENT: %w", serr)
		}
		return nil
	}}
	l, err := lc.Listen(ctx, "tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy listener on %s: %w", addr, err)
	}
	return l, nil
}

// Serve accepts connections on l until l or the proxy is closed. It
// returns nil after Close, else the accept error.
func (p *Proxy) Serve(l net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = l.Close()
		return nil
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, l)
		p.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, an aborted handshake, ...: keep
			// accepting after a pause, as net/http does, rather than
			// leave every redirected flow unanswered.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		sl, ok := p.admit(c)
		if !ok {
			if sl == nil {
				resetConn(c)
				return nil // closed
			}
			// Over the bound with no slot to reclaim: refuse at once
			// rather than queue.
			p.refuseConn(c, fmt.Sprintf("too many connections (limit %d)", p.o.MaxConns), RefusedConnLimit)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c, sl)
			p.handle(c, sl)
		}()
	}
}

// Refusal classes of the proxy core (monitor.L7.Refused).
const (
	RefusedConnLimit     = "connection-limit"
	RefusedSlotReclaimed = "slot-reclaimed"
)

// slot is one served connection's place under MaxConns. A connection
// holds it "pending" from the accept until its protocol server reports
// (Started) that a first request has come: at the bound, the oldest
// pending connection is reset to make room, so that sockets which never
// send a request cannot starve new clients.
type slot struct {
	c         net.Conn
	since     time.Time
	started   atomic.Bool
	reclaim   bool // TCP: only wrapped connections can report Started
	reclaimed bool
}

// Started reports that the connection c, as handed to a ConnServer, has
// completed its first request head (or, HTTP/2, its preface): its slot
// is no longer reclaimed for new clients.
func Started(c net.Conn) {
	if nc, ok := c.(*noTimeWaitConn); ok && nc.slot != nil {
		nc.slot.started.Store(true)
	}
}

// admit gives c a slot, reclaiming the oldest pending one at the bound.
// It returns nil, false once the proxy is closed.
func (p *Proxy) admit(c net.Conn) (*slot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	sl := &slot{c: c, since: time.Now()}
	if p.live >= p.o.MaxConns {
		var old *slot
		for _, o := range p.conns {
			if o.reclaim && !o.reclaimed && !o.started.Load() && (old == nil || o.since.Before(old.since)) {
				old = o
			}
		}
		if old == nil {
			return sl, false
		}
		old.reclaimed = true
		p.live--
		resetConn(old.c)
		src, dst := p.flow(old.c)
		cp := &ConnPolicy{Source: Peer{Addr: src}, Destination: Peer{Addr: dst}}
		e := cp.Event(monitor.VerdictError, fmt.Sprintf("connection reset to make room: no request in %s at the connection limit (%d)", time.Since(old.since).Round(time.Millisecond), p.o.MaxConns), "tcp", nil)
		e.L7.Refused = RefusedSlotReclaimed
		p.record(e)
	}
	p.live++
	p.conns[c] = sl
	return sl, true
}

func (p *Proxy) refuseConn(c net.Conn, reason, refused string) {
	src, dst := p.flow(c)
	cp := &ConnPolicy{Source: Peer{Addr: src}, Destination: Peer{Addr: dst}}
	e := cp.Event(monitor.VerdictError, reason, "tcp", nil)
	e.L7.Refused = refused
	p.record(e)
	resetConn(c)
}

// Close stops the listeners, cancels the connections' context, closes the
// connections still open and waits for their handlers to return.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	for l := range p.listeners {
		_ = l.Close()
	}
	for c := range p.conns {
		resetConn(c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Active counts the connections being served.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Proxy) untrack(c net.Conn, sl *slot) {
	p.mu.Lock()
	delete(p.conns, c)
	if !sl.reclaimed {
		p.live--
	}
	p.mu.Unlock()
}

func (p *Proxy) record(e monitor.Event) {
	if p.o.Record != nil {
		p.o.Record(e)
	}
}

func (p *Proxy) flow(c net.Conn) (src, dst netip.AddrPort) {
	if p.o.Flow != nil {
		return p.o.Flow(c)
	}
	return addrPort(c.RemoteAddr()), addrPort(c.LocalAddr())
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// handle judges one accepted connection and serves or refuses it. A panic
// in a protocol server closes this connection only.
func (p *Proxy) handle(c net.Conn, sl *slot) {
	src, dst := p.flow(c)
	var cp *ConnPolicy
	defer func() {
		if r := recover(); r != nil {
			if cp == nil {
				cp = &ConnPolicy{Source: Peer{Addr: src}, Destination: Peer{Addr: dst}}
			}
			p.record(cp.Event(monitor.VerdictError, fmt.Sprintf("proxy panic: %v", r), "tcp", nil))
			logPanic(r)
			resetConn(c)
		}
	}()
	cp = p.o.Resolver.Resolve(src, dst, policy.ProtoTCP)
	if cp == nil {
		cp = &ConnPolicy{Source: Peer{Addr: src}, Destination: Peer{Addr: dst}, Err: errors.New("no policy")}
		cp.Denied = &Side{}
	}
	refuse := func(verdict, reason, proto string, side *Side) {
		p.record(cp.Event(verdict, reason, proto, side))
		resetConn(c)
	}
	if cp.Denied != nil {
		if cp.Err != nil {
			refuse(monitor.VerdictError, cp.Err.Error(), "tcp", nil)
			return
		}
		d := cp.Denied
		refuse(monitor.VerdictDenied, fmt.Sprintf("denied at L4 by the %s policy of %s/%s: %s",
			d.Direction, d.Endpoint.Namespace, d.Endpoint.Name, d.Policies()), "tcp", d)
		return
	}
	parser, err := cp.Parser()
	if err != nil {
		refuse(monitor.VerdictError, err.Error(), "tcp", nil)
		return
	}
	if cp.NeedsTLS() {
		if p.o.TLS == nil {
			refuse(monitor.VerdictError, "no TLS proxy configured (serverNames, terminatingTLS and originatingTLS need one)", "tls", firstSide(cp))
			return
		}
		// Reclaimable until its ClientHello is in (Started).
		p.o.TLS.ServeConn(p.ctx, p.reclaimable(c, sl), src, dst)
		return
	}
	switch parser {
	case l7.ParserHTTP:
		if p.o.HTTP == nil {
			refuse(monitor.VerdictError, "no HTTP proxy configured", "http", nil)
			return
		}
		// An HTTP connection's slot may be reclaimed until its first
		// request (Started).
		p.o.HTTP.ServeConn(p.ctx, p.reclaimable(c, sl), src, dst)
	case l7.ParserKafka:
		if p.o.Kafka == nil {
			refuse(monitor.VerdictError, "no Kafka proxy configured", "kafka", nil)
			return
		}
		p.o.Kafka.ServeConn(p.ctx, newNoTimeWaitConn(c), src, dst)
	case l7.ParserDNS:
		if p.o.DNS == nil {
			refuse(monitor.VerdictError, "no DNS proxy configured", "dns", nil)
			return
		}
		p.o.DNS.ServeConn(p.ctx, newNoTimeWaitConn(c), src, dst)
	case l7.ParserNone:
		p.serveNone(c, cp, src, dst)
	default:
		refuse(monitor.VerdictError, fmt.Sprintf("the %s proxy is not built yet", parser), parser.String(), firstSide(cp))
	}
}

// reclaimable wraps c for its protocol server with its slot, which may
// be reclaimed at the connection limit until the server reports Started.
func (p *Proxy) reclaimable(c net.Conn, sl *slot) net.Conn {
	wc := newNoTimeWaitConn(c)
	if nc, ok := wc.(*noTimeWaitConn); ok {
		p.mu.Lock()
		nc.slot, sl.reclaim = sl, true
		p.mu.Unlock()
	}
	return wc
}

func firstSide(cp *ConnPolicy) *Side {
	if len(cp.Sides) > 0 {
		return &cp.Sides[0]
	}
	return nil
}

// serveNone handles a connection without an L7 parser whose sides allow
// every connection (server names go to the TLS server): the policy
// changed to a plain allow after the kernel redirected the flow, which
// then stays on the proxy's path, so the bytes are relayed.
func (p *Proxy) serveNone(c net.Conn, cp *ConnPolicy, src, dst netip.AddrPort) {
	verdict, reason, side := monitor.VerdictForwarded, "no L7 rules apply any more: relayed without parsing", firstSide(cp)
	if p.o.Dial == nil {
		p.record(cp.Event(monitor.VerdictError, "no upstream dialer configured", "tcp", nil))
		resetConn(c)
		return
	}
	up, err := p.o.Dial(p.ctx, src, dst)
	if err != nil {
		p.record(cp.Event(monitor.VerdictError, "upstream: "+err.Error(), "tcp", nil))
		resetConn(c)
		return
	}
	p.record(cp.Event(verdict, reason, "tcp", side))
	relay(p.ctx, newNoTimeWaitConn(c), up)
}

// allowsAnyConn reports whether an L7 policy without a parser allows every
// connection (a connection rule without server names).
func allowsAnyConn(pol *l7.Policy) bool {
	if pol == nil {
		return true
	}
	for _, r := range pol.Conn {
		if len(r.ServerNames) == 0 {
			return true
		}
	}
	return false
}

// relay copies both ways until both directions are done, passing
// half-closes on, and closes both.
func relay(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { _ = a.Close(); _ = b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
			_ = src.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	_ = a.Close()
	_ = b.Close()
}

var panicOutput io.Writer = os.Stderr

// logPanic prints a recovered panic with its stack on standard error:
// it is a bug, and the event alone would not say where.
var logPanic = func(r any) {
	_, _ = fmt.Fprintf(panicOutput, "proxy: recovered panic: %v\n%s", r, debug.Stack())
}
