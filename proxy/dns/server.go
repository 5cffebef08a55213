package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
)

// Defaults of the Options limits.
const (
	// DefaultTimeout bounds the wait for the server's answer before the
	// client gets SERVFAIL: under the 5 s a glibc or musl stub resolver
	// waits before it retries, so the client hears why rather than
	// timing out.
	DefaultTimeout = 2 * time.Second
	// DefaultIdleTimeout closes a DNS-over-TCP client connection that
	// sends no query for that long (RFC 7766 asks for seconds, not
	// minutes).
	DefaultIdleTimeout = 10 * time.Second
	// DefaultMaxInFlight bounds the UDP queries judged or forwarded at
	// once; beyond it queries are dropped with an event (the client
	// retries).
	DefaultMaxInFlight = 4096
)

// Options configure a Server. Only Resolver is required.
type Options struct {
	// Resolver gives each query's policy: Resolve(src, dst, proto) once
	// per query, so a policy change applies to the next query.
	Resolver proxy.Resolver
	// Record receives one event per query (and per dropped packet). It
	// must not block. nil: none.
	Record func(monitor.Event)
	// Node names this node in events.
	Node string
	// RejectCode answers a denied query: mdns.RcodeRefused (the default,
	// also for 0) or mdns.RcodeNameError (Cilium's
	// --dns-reject-response-code=nameError).
	RejectCode int
	// Timeout bounds the wait for the server's answer; then the client
	// gets SERVFAIL. 0 means DefaultTimeout.
	Timeout time.Duration
	// IdleTimeout closes idle DNS-over-TCP connections. 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxInFlight bounds the UDP queries in flight. 0 means
	// DefaultMaxInFlight.
	MaxInFlight int
	// Mark is the SO_MARK of the sockets towards servers
	// (bpf.MarkFromProxy in the agent); 0 sets none. Answers to clients
	// carry none: they pass as replies of the client's flow.
	Mark int
	// Dial opens the TCP connection towards the server of a DNS-over-TCP
	// client connection. nil: a plain net.Dialer with Mark.
	Dial func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// Flow maps a query's packet addresses (the client, the address it
	// asked) to the flow it is judged as. nil: as they are. The
	// standalone proxy maps every query to its --src and --dst.
	Flow func(src, dst netip.AddrPort) (netip.AddrPort, netip.AddrPort)
	// Upstream gives the server a query for dst goes to. nil: dst itself,
	// the server the client asked.
	Upstream func(dst netip.AddrPort) netip.AddrPort
	// Observer learns the addresses of allowed answers (from local
	// clients) before they are released. nil: answers teach nothing.
	Observer Observer
	// HoldTimeout bounds an answer's hold for the Observer. 0 means
	// DefaultHoldTimeout.
	HoldTimeout time.Duration
	// Metrics, if set, observe the holds.
	Metrics *Metrics
}

func (o *Options) setDefaults() {
	if o.RejectCode == 0 {
		o.RejectCode = mdns.RcodeRefused
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.HoldTimeout <= 0 {
		o.HoldTimeout = DefaultHoldTimeout
	}
}

// Server is the DNS proxy: it judges every query by the policy of its
// flow, forwards allowed ones to the server the client asked and relays
// the answer, and answers denied ones itself.
type Server struct {
	o      Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	closers   map[interface{ Close() error }]struct{}
	replies   *replySockets
	upstreams *udpUpstreams
}

// New returns a Server; serve UDP with ServeUDP, TCP with ServeConn.
func New(o Options) (*Server, error) {
	if o.Resolver == nil {
		return nil, errors.New("dns proxy: no Resolver")
	}
	if o.RejectCode != 0 && o.RejectCode != mdns.RcodeRefused && o.RejectCode != mdns.RcodeNameError {
		return nil, fmt.Errorf("dns proxy: reject code %d: want REFUSED (%d) or NXDOMAIN (%d)", o.RejectCode, mdns.RcodeRefused, mdns.RcodeNameError)
	}
	o.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{o: o, ctx: ctx, cancel: cancel, closers: map[interface{ Close() error }]struct{}{}, replies: newReplySockets(), upstreams: newUDPUpstreams(o.Mark)}, nil
}

// RejectCode parses the agent's --dns-reject-response-code value, as
// Cilium's: "refused" or "nameError".
func RejectCode(s string) (int, error) {
	switch s {
	case "refused":
		return mdns.RcodeRefused, nil
	case "nameError":
		return mdns.RcodeNameError, nil
	}
	return 0, fmt.Errorf("DNS reject response code %q: want refused or nameError", s)
}

// Close stops the UDP sockets being served and the TCP connections, and
// waits for the queries in flight.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for c := range s.closers {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.replies.close()
	s.upstreams.close()
	return nil
}

func (s *Server) track(c interface{ Close() error }) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closers[c] = struct{}{}
	return true
}

func (s *Server) untrack(c interface{ Close() error }) {
	s.mu.Lock()
	delete(s.closers, c)
	s.mu.Unlock()
}

func (s *Server) record(e monitor.Event) {
	if s.o.Record != nil {
		e.Node = s.o.Node
		s.o.Record(e)
	}
}

// exchanger sends one query (with its wire ID id) to server and returns
// the server's answer to that ID.
type exchanger func(ctx context.Context, server netip.AddrPort, msg []byte, id uint16) ([]byte, error)

// handle judges one query from src to dst and returns what to send back:
// the server's answer with the client's ID, a rejection, SERVFAIL, or nil
// (drop). transport is "UDP" or "TCP".
func (s *Server) handle(ctx context.Context, raw []byte, src, dst netip.AddrPort, transport string, ex exchanger) []byte {
	start := time.Now()
	fsrc, fdst := src, dst
	if s.o.Flow != nil {
		fsrc, fdst = s.o.Flow(src, dst)
	}
	proto := policy.ProtoUDP
	if transport == "TCP" {
		proto = policy.ProtoTCP
	}
	cp := s.o.Resolver.Resolve(fsrc, fdst, proto)
	if cp == nil {
		cp = &proxy.ConnPolicy{Source: proxy.Peer{Addr: fsrc}, Destination: proxy.Peer{Addr: fdst}, Err: errors.New("no policy"), Denied: &proxy.Side{}}
	}
	ev := func(verdict, reason string, side *proxy.Side, q *query) monitor.Event {
		e := cp.Event(verdict, reason, "dns", side)
		e.Time = start
		e.Protocol = transport
		if q != nil {
			e.L7.DNS = &monitor.DNS{Query: q.name, Type: q.typeString()}
		}
		return e
	}
	q, err := parseQuery(raw)
	if err != nil {
		s.record(ev(monitor.VerdictDropped, err.Error()+": dropped", nil, nil))
		return nil
	}
	send := func(e monitor.Event, b []byte, rcode int) []byte {
		e.L7.DNS.RCode = mdns.RcodeToString[rcode]
		e.L7.Latency = time.Since(start)
		s.record(e)
		return b
	}
	if cp.Denied != nil && cp.Err != nil {
		// No snapshot yet (the agent is starting) or the endpoint's policy
		// is not written: no answer, so the client retries once the
		// policy is there, rather than failing the lookup for good.
		s.record(ev(monitor.VerdictError, cp.Err.Error()+": query dropped", nil, q))
		return nil
	}
	parser, err := cp.Parser()
	if err != nil {
		s.record(ev(monitor.VerdictError, err.Error()+": query dropped", nil, q))
		return nil
	}
	if parser != l7.ParserDNS && parser != l7.ParserNone {
		s.record(ev(monitor.VerdictError, fmt.Sprintf("the flow's rules need the %s parser, not DNS: query dropped", parser), firstSide(cp), q))
		return nil
	}
	d := cp.DecideDNS(q.name)
	if !d.Allowed {
		b, err := reply(q, s.o.RejectCode)
		if err != nil {
			s.record(ev(monitor.VerdictError, "building the rejection: "+err.Error(), d.DeniedBy, q))
			return nil
		}
		return send(ev(monitor.VerdictDenied, denialReason(cp, d.DeniedBy, q.name), d.DeniedBy, q), b, s.o.RejectCode)
	}
	verdict, reason, side := monitor.VerdictForwarded, "", d.RuleSide
	switch {
	case d.Audited:
		verdict, reason, side = monitor.VerdictAudited, denialReason(cp, d.DeniedBy, q.name)+" (audit mode: forwarded)", d.DeniedBy
	case len(cp.Sides) == 0:
		reason = "no DNS rules apply any more: forwarded unjudged"
	default:
		reason = "allowed by " + d.Rule
	}
	server := dst
	if s.o.Upstream != nil {
		server = s.o.Upstream(dst)
	}
	msg := append([]byte(nil), raw...)
	id := uint16(rand.Uint32())
	setID(msg, id)
	resp, err := ex(ctx, server, msg, id)
	var a *answer
	if err == nil {
		a, err = parseAnswer(resp, q, id)
	}
	if err != nil {
		b, perr := reply(q, mdns.RcodeServerFailure)
		if perr != nil {
			s.record(ev(monitor.VerdictError, "building SERVFAIL: "+perr.Error(), side, q))
			return nil
		}
		return send(ev(monitor.VerdictError, fmt.Sprintf("server %s: %v: answered SERVFAIL", server, err), side, q), b, mdns.RcodeServerFailure)
	}
	e := ev(verdict, reason, side, q)
	for _, ip := range a.addrs {
		e.L7.DNS.Answers = append(e.L7.DNS.Answers, ip.String())
	}
	names, hold, err := s.observe(ctx, cp, a)
	e.L7.DNS.Observed, e.L7.DNS.Hold = names, hold
	if err != nil {
		e.Reason += fmt.Sprintf("; released after the %s hold ran out, before the datapath had its addresses: %v", s.o.HoldTimeout, err)
	}
	setID(resp, q.msg.Id)
	return send(e, resp, a.rcode)
}

// observe hands an allowed answer's addresses to the Observer and waits
// (at most HoldTimeout) until they are in force.
func (s *Server) observe(ctx context.Context, cp *proxy.ConnPolicy, a *answer) ([]string, time.Duration, error) {
	if s.o.Observer == nil || cp.Source.Endpoint == nil || a.rcode != mdns.RcodeSuccess || len(a.addrs) == 0 {
		return nil, 0, nil
	}
	o := Observation{Endpoint: cp.Source.Endpoint, Addrs: a.addrs, TTL: time.Duration(a.ttl) * time.Second}
	switch {
	case cp.Source.Endpoint.Policy != nil:
		o.Identity = cp.Source.Endpoint.Policy.Identity.ID
	case cp.Source.Identity != nil:
		o.Identity = cp.Source.Identity.ID
	}
	for _, n := range a.names {
		o.Names = append(o.Names, strings.TrimSuffix(n, "."))
	}
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, s.o.HoldTimeout)
	defer cancel()
	names, err := s.o.Observer.Observe(hctx, o)
	if len(names) == 0 && err == nil {
		return nil, 0, nil
	}
	hold := time.Since(start)
	if m := s.o.Metrics; m != nil {
		m.Holds.Observe(hold.Seconds())
		if err != nil {
			m.HoldTimeouts.Inc()
		}
	}
	return names, hold, err
}

func firstSide(cp *proxy.ConnPolicy) *proxy.Side {
	if len(cp.Sides) > 0 {
		return &cp.Sides[0]
	}
	return nil
}

// denialReason says which side's policy refused the name.
func denialReason(cp *proxy.ConnPolicy, s *proxy.Side, name string) string {
	if s == nil || s.Endpoint == nil {
		return "no policy allows the flow"
	}
	if cp.Denied == s {
		return fmt.Sprintf("denied at L4 by the %s policy of %s/%s: %s", s.Direction, s.Endpoint.Namespace, s.Endpoint.Name, s.Policies())
	}
	return fmt.Sprintf("no DNS rule of the %s policy of %s/%s allows %s", s.Direction, s.Endpoint.Namespace, s.Endpoint.Name, name)
}
