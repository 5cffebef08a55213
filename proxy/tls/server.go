package tls

import (
	"context"
	ctls "crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// DefaultHandshakeTimeout bounds, from the accept, the ClientHello and
// (when intercepting) the client handshake, when Options.HandshakeTimeout
// is 0.
const DefaultHandshakeTimeout = 10 * time.Second

// Options configure a Server. Resolver is required.
type Options struct {
	// Resolver gives each connection's policy.
	Resolver proxy.Resolver
	// Dial opens the TCP connection to the original destination (with the
	// proxy's mark). nil: proxy.DialDestination.
	Dial func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// Record receives an event per connection judged here (the HTTP
	// server records the requests of intercepted connections). nil: none.
	Record func(monitor.Event)
	// HTTP serves the decrypted stream of intercepted connections whose
	// parser is HTTP. nil refuses them.
	HTTP *proxyhttp.Server
	// Secrets holds the material terminatingTLS and originatingTLS name.
	// nil refuses every intercepted connection.
	Secrets *Secrets
	// HandshakeTimeout: see DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Server judges TLS connections by server name and intercepts them. It
// is a proxy.ConnServer; one Server serves every connection of a node.
type Server struct {
	o Options

	// alpn remembers what upstreams chose (see upstream.probe).
	alpnMu sync.Mutex
	alpn   map[string]alpnChoice
}

// alpnChoice is the protocol an upstream chose, and when.
type alpnChoice struct {
	proto string
	at    time.Time
}

// Bounds of the ALPN memory: an upstream's choice is trusted for
// alpnTTL; at most maxALPN entries are kept (all are dropped beyond).
const (
	alpnTTL = time.Minute
	maxALPN = 4096
)

func (s *Server) alpnChoice(key string) (string, bool) {
	s.alpnMu.Lock()
	defer s.alpnMu.Unlock()
	c, ok := s.alpn[key]
	if !ok || time.Since(c.at) > alpnTTL {
		return "", false
	}
	return c.proto, true
}

func (s *Server) rememberALPN(key, proto string) {
	s.alpnMu.Lock()
	defer s.alpnMu.Unlock()
	if s.alpn == nil || len(s.alpn) >= maxALPN {
		s.alpn = map[string]alpnChoice{}
	}
	s.alpn[key] = alpnChoice{proto: proto, at: time.Now()}
}

// New returns a Server.
func New(o Options) (*Server, error) {
	if o.Resolver == nil {
		return nil, errors.New("proxy/tls: no Resolver")
	}
	if o.Dial == nil {
		o.Dial = proxy.DialDestination
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return &Server{o: o}, nil
}

// Refusal classes of the TLS layer (monitor.L7.Refused).
const (
	RefusedNotTLS       = "not-tls"
	RefusedSecret       = "tls-secret"
	RefusedHandshake    = "tls-handshake"
	RefusedUnsupported  = "tls-unsupported"
	RefusedNoServerName = "no-server-name"
)

// conn is one client connection being judged, for its events.
type conn struct {
	s        *Server
	c        net.Conn
	src, dst netip.AddrPort
	cp       *proxy.ConnPolicy
	sni      string
}

func (k *conn) event(verdict, reason, refused string, side *proxy.Side) {
	if k.s.o.Record == nil {
		return
	}
	e := k.cp.Event(verdict, reason, "tls", side)
	e.L7.ServerName = k.sni
	e.L7.Refused = refused
	k.s.o.Record(e)
}

// refuse records an error event and resets the connection.
func (k *conn) refuse(reason, refused string, side *proxy.Side) {
	k.event(monitor.VerdictError, reason, refused, side)
	proxy.Reset(k.c)
}

// ServeConn judges one redirected connection of the flow src → dst by
// its ClientHello and passes it through, intercepts it or refuses it. It
// closes c.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort) {
	k := &conn{s: s, c: c, src: src, dst: dst}
	k.cp = s.o.Resolver.Resolve(src, dst, policy.ProtoTCP)
	if k.cp == nil {
		k.cp = &proxy.ConnPolicy{Source: proxy.Peer{Addr: src}, Destination: proxy.Peer{Addr: dst}}
		k.refuse("no policy", "", nil)
		return
	}
	if d := k.cp.Denied; d != nil {
		if k.cp.Err != nil {
			k.refuse(k.cp.Err.Error(), "", nil)
			return
		}
		k.event(monitor.VerdictDenied, fmt.Sprintf("denied at L4 by the %s policy of %s/%s: %s", d.Direction, d.Endpoint.Namespace, d.Endpoint.Name, d.Policies()), "", d)
		proxy.Reset(c)
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	deadline := time.Now().Add(s.o.HandshakeTimeout)
	_ = c.SetReadDeadline(deadline)
	h, err := ReadClientHello(c)
	if err != nil {
		refused := ""
		if errors.Is(err, ErrNotTLS) {
			refused = RefusedNotTLS
			err = fmt.Errorf("%w: this port admits TLS connections only (serverNames or terminatingTLS)", err)
		}
		k.refuse(err.Error(), refused, firstSide(k.cp))
		return
	}
	// A ClientHello came: the connection's slot is no longer reclaimed
	// for new clients at the proxy's connection limit.
	proxy.Started(c)
	k.sni = h.ServerName
	d := k.cp.DecideServerName(h.ServerName)
	if !d.Allowed {
		k.deny(d.DeniedBy)
		return
	}
	term, orig, err := k.cp.TLSContexts()
	if err != nil {
		k.refuse(err.Error(), RefusedUnsupported, firstSide(k.cp))
		return
	}
	if term == nil && orig == nil {
		k.passThrough(ctx, h, d)
		return
	}
	if term == nil {
		k.refuse("originatingTLS without terminatingTLS: the client speaks TLS the proxy cannot read", RefusedUnsupported, firstSide(k.cp))
		return
	}
	k.intercept(ctx, h, term, orig, deadline)
}

func firstSide(cp *proxy.ConnPolicy) *proxy.Side {
	if len(cp.Sides) > 0 {
		return &cp.Sides[0]
	}
	return nil
}

// deny answers a refused server name with the alert access_denied (see
// doc.go) and closes the connection.
func (k *conn) deny(side *proxy.Side) {
	reason := fmt.Sprintf("TLS server name %q is not allowed by the serverNames of %s", k.sni, side.Policies())
	refused := ""
	if k.sni == "" {
		reason = fmt.Sprintf("the ClientHello has no server name (SNI); the serverNames of %s admit named connections only", side.Policies())
		refused = RefusedNoServerName
	}
	k.event(monitor.VerdictDenied, reason, refused, side)
	_ = writeAlert(k.c, alertAccessDenied)
	if cw, ok := k.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = k.c.Close()
}

// passThrough connects to the original destination, sends it the bytes
// read so far and splices the rest, untouched.
func (k *conn) passThrough(ctx context.Context, h *Hello, d proxy.ServerNameDecision) {
	up, err := k.s.o.Dial(ctx, k.src, k.dst)
	if err != nil {
		k.refuse("upstream: "+err.Error(), "", firstSide(k.cp))
		return
	}
	if _, err := up.Write(h.Raw); err != nil {
		_ = up.Close()
		k.refuse("upstream: "+err.Error(), "", firstSide(k.cp))
		return
	}
	_ = k.c.SetReadDeadline(time.Time{})
	verdict, side := monitor.VerdictForwarded, d.RuleSide
	reason := fmt.Sprintf("TLS server name %q allowed: passed through without decrypting", k.sni)
	if d.Rule != "" {
		reason = fmt.Sprintf("TLS server name %q allowed by %s: passed through without decrypting", k.sni, d.Rule)
	}
	if d.Audited {
		verdict, side = monitor.VerdictAudited, d.DeniedBy
		reason = fmt.Sprintf("TLS server name %q is not allowed by the serverNames of %s (audit mode: passed through)", k.sni, d.DeniedBy.Policies())
	}
	if side == nil {
		side = firstSide(k.cp)
	}
	k.event(verdict, reason, "", side)
	proxy.Relay(ctx, k.c, up)
}

// intercept terminates the client's TLS with term's certificate and
// serves the decrypted stream: with proxy/http for HTTP rules, relayed
// as is for a port rule without L7 rules. The upstream leg originates TLS
// with orig's trust, or is cleartext without an originatingTLS.
func (k *conn) intercept(ctx context.Context, h *Hello, term, orig *l7.TLSContextRef, deadline time.Time) {
	side := firstSide(k.cp)
	parser, err := k.cp.Parser()
	if err != nil {
		k.refuse(err.Error(), RefusedUnsupported, side)
		return
	}
	if parser != l7.ParserHTTP && parser != l7.ParserNone {
		k.refuse(fmt.Sprintf("TLS interception with %s rules is not supported: only HTTP rules (or none) can be served decrypted", parser), RefusedUnsupported, side)
		return
	}
	if parser == l7.ParserHTTP && k.s.o.HTTP == nil {
		k.refuse("no HTTP proxy configured for intercepted TLS", RefusedUnsupported, side)
		return
	}
	tm, err := k.s.o.Secrets.Terminating(term)
	if err != nil {
		k.refuse(fmt.Sprintf("terminatingTLS of %s: %v", side.Policies(), err), RefusedSecret, side)
		return
	}
	var om *Originating
	if orig != nil {
		if om, err = k.s.o.Secrets.Originating(orig); err != nil {
			k.refuse(fmt.Sprintf("originatingTLS of %s: %v", side.Policies(), err), RefusedSecret, side)
			return
		}
	}
	cfg := &ctls.Config{
		Certificates: []ctls.Certificate{tm.Certificate},
		MinVersion:   ctls.VersionTLS12,
	}
	up := &upstream{s: k.s, src: k.src, dst: k.dst, sni: k.sni, orig: orig, om: om}
	if parser == l7.ParserHTTP {
		cfg.NextProtos = []string{"h2", "http/1.1"}
		if om != nil {
			// The upstream decides the protocol: proxy/http forwards h2 as
			// h2 and HTTP/1.1 as HTTP/1.1, so the client is offered what
			// the upstream chose among the client's own offers.
			cfg.NextProtos = up.probe(ctx, h.ALPN)
		}
	}
	if tm.ClientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = tm.ClientCAs, ctls.RequireAndVerifyClientCert
	}
	tc := ctls.Server(&replayConn{Conn: k.c, pre: h.Raw}, cfg)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	err = tc.HandshakeContext(hctx)
	cancel()
	defer up.close()
	if err != nil {
		k.refuse("TLS handshake with the client: "+err.Error(), RefusedHandshake, side)
		return
	}
	_ = k.c.SetReadDeadline(time.Time{})
	if parser == l7.ParserNone {
		u, err := up.dial(ctx, "")
		if err != nil {
			k.event(monitor.VerdictError, "upstream: "+err.Error(), "", side)
			_ = tc.Close()
			return
		}
		k.event(monitor.VerdictForwarded, fmt.Sprintf("TLS server name %q intercepted: relayed decrypted", k.sni), "", side)
		proxy.Relay(ctx, tc, u)
		return
	}
	key := fmt.Sprintf("sni=%q", k.sni)
	if orig != nil {
		key += fmt.Sprintf(" orig=%s v%d", orig, om.Version)
	}
	k.s.o.HTTP.ServeDecrypted(ctx, tc, k.src, k.dst, proxyhttp.Decrypted{
		ServerName: k.sni, Dial: up.dial, Key: key, UpstreamTLS: orig != nil,
	})
}

// upstream opens the upstream legs of one intercepted connection.
type upstream struct {
	s        *Server
	src, dst netip.AddrPort
	sni      string
	orig     *l7.TLSContextRef
	om       *Originating

	// first is the connection probe opened, speaking firstProto; the
	// first dial for that protocol takes it.
	mu         sync.Mutex
	first      net.Conn
	firstProto string
}

// probe connects to the upstream before the client's handshake completes,
// offering the HTTP protocols the client offered, and returns the ALPN
// list to offer the client: the upstream's choice alone. When the upstream
// cannot be reached the client is offered h2 and http/1.1, and its
// requests are answered 502 with the reason. The choice is remembered for
// alpnTTL per destination, server name, trust and offer, so that later
// connections need no upstream handshake of their own (their requests
// use pooled upstream connections).
func (u *upstream) probe(ctx context.Context, offered []string) []string {
	var want []string
	for _, p := range offered {
		if p == "h2" || p == "http/1.1" {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		return []string{"h2", "http/1.1"}
	}
	key := fmt.Sprintf("%s %q v%d %s", u.dst, u.sni, u.om.Version, strings.Join(want, ","))
	if proto, ok := u.s.alpnChoice(key); ok {
		return []string{proto}
	}
	c, proto, err := u.handshake(ctx, want)
	if err != nil {
		return []string{"h2", "http/1.1"}
	}
	if proto == "" {
		proto = "http/1.1"
	}
	u.s.rememberALPN(key, proto)
	u.mu.Lock()
	u.first, u.firstProto = c, proto
	u.mu.Unlock()
	return []string{proto}
}

// close closes a probed connection no request took.
func (u *upstream) close() {
	u.mu.Lock()
	c := u.first
	u.first = nil
	u.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// dial connects to the original destination and, with an originatingTLS,
// does the TLS handshake: the client's server name (the destination's
// address when it sent none) verified against the trusted CAs, ALPN proto
// when not "". A certificate the CAs do not sign is an error that says so.
func (u *upstream) dial(ctx context.Context, proto string) (net.Conn, error) {
	u.mu.Lock()
	if c := u.first; c != nil && (proto == u.firstProto || proto == "") {
		u.first = nil
		u.mu.Unlock()
		return c, nil
	}
	u.mu.Unlock()
	if u.om == nil {
		return u.s.o.Dial(ctx, u.src, u.dst)
	}
	var alpn []string
	if proto != "" {
		alpn = []string{proto}
	}
	c, got, err := u.handshake(ctx, alpn)
	if err != nil {
		return nil, err
	}
	if proto == "h2" && got != "h2" {
		_ = c.Close()
		return nil, fmt.Errorf("TLS to %s (server name %q): the upstream does not offer h2 (ALPN %q)", u.dst, u.sni, got)
	}
	return c, nil
}

// handshake opens a TLS connection to the upstream offering alpn and
// returns it with the protocol negotiated.
func (u *upstream) handshake(ctx context.Context, alpn []string) (net.Conn, string, error) {
	c, err := u.s.o.Dial(ctx, u.src, u.dst)
	if err != nil {
		return nil, "", err
	}
	name := u.sni
	if name == "" {
		name = u.dst.Addr().Unmap().String()
	}
	cfg := &ctls.Config{ServerName: name, RootCAs: u.om.RootCAs, MinVersion: ctls.VersionTLS12, NextProtos: alpn}
	if u.om.Certificate != nil {
		cfg.Certificates = []ctls.Certificate{*u.om.Certificate}
	}
	tc := ctls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, u.s.o.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = c.Close()
		return nil, "", fmt.Errorf("TLS to %s (server name %q, trust of originatingTLS %s/%s): %w", u.dst, name, u.orig.Namespace, u.orig.Name, err)
	}
	return tc, tc.ConnectionState().NegotiatedProtocol, nil
}
