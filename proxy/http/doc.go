// Package http is the node-local proxy for HTTP/1.1, HTTP/2 with prior
// knowledge (h2c) and gRPC: it reads each request, asks the connection's
// policy for a verdict, answers a denial in the protocol's words (403, or
// gRPC PERMISSION_DENIED) and forwards an allowed request, with the
// policy's header actions applied, to the connection's original
// destination over a pooled upstream connection.
//
// The transparent listener and the upstream dialer (socket mark,
// IP_TRANSPARENT) live in package proxy; this package serves one accepted
// connection at a time through [Server.ServeConn]:
//
//	s := proxyhttp.New(proxyhttp.Options{Resolver: store, Dial: dial, Record: hub.Publish})
//	s.ServeConn(ctx, conn, src, dst) // serves until the connection ends; closes conn
//	s.Close()                        // closes client and pooled upstream connections
//
// ServeConn peeks at the first bytes: the HTTP/2 client preface selects
// HTTP/2, anything else is read as HTTP/1.1 (the peek stops at the first
// byte that differs, so a short HTTP/1.1 request is never held up).
//
// # A verdict for every request
//
// Options.Resolver.Resolve(src, dst, 6) is called once per request, not
// per connection: a policy change applies to the next request of a
// keep-alive connection (or the next HTTP/2 stream), and a request in
// flight finishes under the ConnPolicy it started with. The request
// (method; path in origin form with the query; Host or :authority;
// headers) goes to ConnPolicy.DecideHTTP. Fail closed: no Resolver, a nil
// ConnPolicy, a ConnPolicy with Denied set (L4 deny after a policy change,
// no snapshot, no local endpoint) or one whose L7 parser is not HTTP
// refuses every request; a request the proxy cannot parse is refused
// before any policy is asked. Nothing is forwarded without an allow.
//
// # Denials
//
// In the protocol's words, and the connection stays usable:
//
//   - HTTP/1.1 and HTTP/2: 403 Forbidden, Content-Type: text/plain,
//     Content-Length: 15, body exactly "Access denied\r\n" (no body for
//     HEAD). On HTTP/1.1 a denied request's body of up to MaxDiscardBytes
//     (Content-Length) is read and dropped to keep the connection; a
//     larger or chunked body, Expect: 100-continue or an Upgrade closes it
//     after the 403.
//   - gRPC (content-type application/grpc, +proto, ;...): a trailers-only
//     response, one HEADERS frame ending the stream with HTTP status 200,
//     content-type application/grpc, grpc-status 7 and grpc-message
//     "access denied by TrafficPolicy ns/name" (percent-encoded as gRPC
//     requires); grpc-go clients see codes.PermissionDenied.
//   - Upstream failures: 502 (504 when the upstream stopped answering for
//     IdleTimeout), gRPC UNAVAILABLE (14); an ERROR event.
//
// # HTTP/1.1 is read by hand
//
// Not by net/http's server (the reasons are in
// docs/design/http1-own-parser.md): net/http's server accepts
// Content-Length with Transfer-Encoding by dropping Content-Length, a
// request-smuggling vector in front of an upstream that parses
// differently, and it has no limit on the number of fields. The proxy
// reads the head with bufio (ReadSlice, limits enforced while reading),
// converts it to one string whose substrings become the method, path,
// host and header values (one allocation), and keeps the fields in order.
// Refused with an error status and a closed connection (lingering close,
// so the client reads the answer): both Content-Length and
// Transfer-Encoding, different Content-Lengths (also as a list), a
// Content-Length that is not digits, any Transfer-Encoding other than
// exactly chunked (also two TE fields, and any TE on HTTP/1.0), obsolete
// line folding, whitespace before the colon, controls in values, no or
// several Host fields, a malformed request line (400); too many or too
// large header fields (431); an HTTP version other than 1.0/1.1 (505);
// CONNECT (501); an Expect other than 100-continue (417). Bodies: fixed
// length copied (from the read buffer when already there), chunked
// decoded and re-encoded with net/http/httputil (chunk extensions
// dropped, trailers passed on), close-delimited responses end the client
// connection. Responses are checked as strictly (a malformed status line,
// conflicting lengths, folding, controls or a Transfer-Encoding other than
// chunked is a 502) and reframed: a chunked response never reaches the
// client with its Content-Length, and the upstream's hop-by-hop fields are
// dropped.
//
// # What the upstream sees
//
// The request line in origin form (an absolute-form target
// http://host/p?q becomes /p?q with Host: host, as RFC 9112 requires of
// the recipient) with HTTP/1.1; Host first (the original destination's
// address for an HTTP/1.0 request without one); one Content-Length with
// the value the proxy parsed; the client's other fields in their order,
// minus hop-by-hop ones (Connection and the fields it names except Host
// and Content-Length, Keep-Alive, Proxy-Connection, TE,
// Transfer-Encoding, Upgrade, HTTP2-Settings, Expect), with the policy's
// header actions applied (ADD, REPLACE, DELETE; LOG changes nothing).
// Actions may rewrite Host (:authority on HTTP/2) but never the framing:
// Content-Length, Transfer-Encoding and hop-by-hop fields are always
// written from what the proxy parsed, so a policy cannot desynchronize the
// upstream. Transfer-Encoding: chunked for chunked bodies; nothing added
// (no Via, no X-Forwarded-For: the proxy is transparent and the upstream
// sees the client's address through Dial; on HTTP/2 not even the
// transport's default User-Agent). Expect: 100-continue is answered by the
// proxy itself once the request is allowed, so the body always follows
// the head upstream. The HTTP/2 leg adds no Accept-Encoding (the
// transport's gzip is off, so responses pass undecoded).
//
// # What is judged is what is forwarded
//
// The path is normalized before the policy sees it, and the upstream
// receives the normalized path, never the raw one (HTTP/1.1 and HTTP/2
// alike; the query is left as sent): percent-escapes of unreserved
// characters decoded (%7E → ~, %2e → .), other escapes' hex upper-cased,
// runs of slashes merged, dot segments removed (RFC 3986 §5.2.4), so
// /public/%2e%2e/secret is judged and sent as /secret. Refused with 400
// before any verdict: a backslash, an escaped slash or backslash (%2F,
// %5C: upstreams disagree on whether it separates segments), a malformed
// escape. Options NoNormalizePath, NoMergeSlashes and EscapedSlashes
// (Keep) relax this as Envoy's normalize_path, merge_slashes and
// path_with_escaped_slashes_action do. Also 400: a Host or :authority
// that is not an RFC 3986 reg-name, IPv4 address or bracketed IPv6
// literal with an optional numeric port, and header field names with an
// underscore (an upstream may read X_User as X-User, past a header rule;
// Envoy's edge guidance rejects them; Options.AllowHeaderUnderscores
// forwards them).
//
// Upgrade: an allowed request with Connection: upgrade (WebSocket) is
// forwarded with Connection: Upgrade and its Upgrade; on 101 the bytes are
// spliced both ways until both ends close, with no more verdicts (the
// upgrade request was the verdict). An upgrade to h2c is not passed on
// (the request goes on without it, as Envoy does): it would turn the
// connection into HTTP/2 spliced past the proxy.
//
// # HTTP/2 and gRPC
//
// golang.org/x/net/http2: http2.Server.ServeConn on the client side (it
// answers malformed frames with GOAWAY and enforces MaxConcurrentStreams,
// MaxHeaderBytes as the header list size and flow control, which bounds
// buffered request bodies), a handler per stream that decides and
// forwards, and upstream http2.ClientConns made by
// http2.Transport.NewClientConn on connections from Dial (h2c prior
// knowledge). Responses are streamed (flushed per read) and trailers are
// passed on, so gRPC streaming and status trailers go through unchanged.
//
// Abuse accounting: the proxy follows the client's frames as x/net reads
// them and cuts a connection with GOAWAY ENHANCE_YOUR_CALM and an ERROR
// event (L7.Refused "h2-abuse") for premature resets (once at least 500
// streams were opened, more than half reset by the client within a
// second of opening: Envoy's rule), more than one consecutive empty DATA
// (without END_STREAM), HEADERS or CONTINUATION frame (Envoy's default;
// x/net bounds a header block's decoded size, not its frame count), and
// more than 100 SETTINGS or 100 PING frames in a second (x/net bounds
// only the acknowledgements a client leaves unread). An allowed stream
// the client has already reset is not forwarded. Denied or refused
// streams record at most 100 events a second per connection; the rest are
// counted into one summary event (the latest shown, Refused "h2-abuse")
// at the next second's first event or the connection's end.
//
// # Upstream pooling
//
// Per (source address, destination), because a transparent proxy's
// upstream connection carries the client's address. HTTP/1.1: a keep-alive
// client connection holds the upstream connection of its previous request
// for its next one (taken before the client sees the end of the response)
// and hands it to the pool when it ends; otherwise, with more client
// connections per key than the pool keeps, upstream connections were
// closed and redialled as they came and went. The pool keeps at most
// MaxIdleUpstreamPerKey idle connections per key, none idle for longer
// than IdleTimeout, at most MaxUpstreamKeys keys (the least recently used
// key's connections are closed first). An idle upstream connection, held
// or pooled, gives its buffers back. Each request is still judged under
// the snapshot current when it starts, and a denied one never touches the
// held connection; a GET, HEAD, OPTIONS or TRACE without a body that fails
// on a reused connection before any response byte is retried once on a
// new one (the server may have closed it while idle; other methods get
// 502, as the server may have acted). HTTP/2: at most
// MaxIdleUpstreamPerKey multiplexed connections per key, the same key
// bound; requests that find no connection with room wait for the dial in
// progress for their key instead of dialling their own, so a burst of
// streams opens one connection (then one more each time the upstream's
// stream limit is reached), not one each. Dial therefore must not depend
// on the source port.
//
// HTTP/2 memory: flow-control windows of 64 KiB a stream and 1 MiB a
// connection on both legs (client request bodies; upstream responses,
// where x/net's transport defaults to 4 MiB a stream and 1 GiB a
// connection): a client that stops reading holds its upstream back by
// flow control, and each stream costs at most its window, a 32 KiB copy
// buffer and x/net's write buffer. Five clients with 100 stalled streams
// each on a large response grow the heap by about 30 MiB
// (TestH2MemoryBounded). The upstream connection's window is shared by the
// streams of one (source address, destination): a source that stalls its
// own streams slows its other streams to that destination, no one
// else's. Options.StreamIdleTimeout (5 min, Envoy's stream_idle_timeout)
// resets a stream on which nothing moved for that long (504 before the
// response head; gRPC included).
//
// # Limits
//
// Options, zero meaning the Default* constants:
//
//   - MaxHeaderBytes (64 KiB): request (431) or response (502) head;
//     HTTP/2 header list.
//   - MaxHeaderCount (100): header fields (431).
//   - ReadHeaderTimeout (10 s): one absolute deadline from the accept for
//     the protocol sniffing and the first request head (HTTP/2: the
//     preface and the client's first SETTINGS frame); no trickle of bytes
//     extends it and the first byte does not restart it. A head begun
//     and not finished gets 408 and the close; a connection silent until
//     then (or stopped inside the HTTP/2 preface) is closed without an
//     answer. Later requests of a keep-alive connection: from their first
//     byte. On HTTP/2 each header block too (HEADERS to END_HEADERS,
//     which x/net leaves unbounded while nothing else may pass the
//     connection), stalled or trickled: GOAWAY ENHANCE_YOUR_CALM. Each
//     cut is an ERROR event (L7.Refused "header-timeout").
//   - BodyTimeout (30 s) and MinBodyRate (1 KiB/s): a request body,
//     allowed or denied, HTTP/1.1 or HTTP/2, must be in by the end of its
//     head plus BodyTimeout plus one second per MinBodyRate bytes
//     received (a minimum rate that never cuts a fast upload); later is
//     408 and an event ("body-timeout"). Not gRPC: its streams are long
//     by design. A client's body that fails otherwise (a malformed chunk,
//     a cut) is 400, not 502: the upstream did nothing wrong.
//   - IdleTimeout (60 s): idle keep-alive connection; each body read/write
//     on either side; upstream response head (504).
//   - MaxConcurrentStreams (100): streams per HTTP/2 client connection.
//   - MaxIdleUpstreamPerKey (64): pooled upstream connections per (source
//     address, destination), besides one held per client connection.
//   - MaxUpstreamKeys (1024): (source address, destination) pairs with
//     pooled connections.
//   - MaxDiscardBytes (64 KiB): largest denied body dropped to keep a
//     connection.
//
// Connection slots: the core's connection limit (package proxy,
// MaxConns) counts a connection as pending from its accept until this
// package reports its first request head (HTTP/2: its first SETTINGS
// frame) with proxy.Started; at the limit the oldest pending connection
// is reset to make room for the new one, with an event
// ("slot-reclaimed"). So sockets that never complete a request cannot
// starve new clients, whatever their source, while connections that did
// keep their slots; only when every slot is held by a started connection
// are new ones refused ("connection-limit"). Chosen over per-source
// limits because one node-local source (a pod, or every pod behind one
// node address) may legitimately hold many connections.
//
// Memory per HTTP/1.1 connection is bounded: 4 KiB read and write buffers
// (pooled, and held only during a request: an idle keep-alive connection
// gives them back and waits in a read of at most 512 bytes into its own
// small buffer, which holds most request heads whole, so this costs no
// extra system call), the head (at most MaxHeaderBytes) and a pooled
// 32 KiB copy buffer while a body moves; a slow client is cut off after
// IdleTimeout without progress.
//
// # Defaults beside Envoy's and haproxy's
//
// Envoy's defaults, its edge-proxy guidance where it differs ("edge"), and
// haproxy's; the reasons are in docs/design/proxy-limits.md.
//
//	what                    portcullis                   Envoy                                haproxy
//	request head            10 s from the accept, 408    request_headers_timeout off          timeout http-request, absolute, 408
//	silent new connection   cut at 10 s, no answer       idle_timeout (1 h)                   timeout http-request, 408
//	idle keep-alive         60 s                         idle_timeout 1 h                     timeout http-keep-alive
//	request body            30 s + 1 s per KiB, 408      request_timeout off                  timeout client (per read)
//	                        (not gRPC)
//	HTTP/2 stream idle      5 min, 504 before the head   stream_idle_timeout 5 min            timeout client / server
//	connection limit        oldest pending slot          none by default (overload manager,   maxconn: the rest wait
//	                        reclaimed, else reset        listener limits)                     in the kernel's backlog
//	head size / fields      64 KiB / 100, 431            60 KiB / 100, 431                    tune.bufsize 16 KiB / 101, 400
//	TLS on a plain port     400 at once, event           codec error, 400                     400
//	path                    normalized, slashes merged,  normalize_path, merge_slashes off,   kept (normalize-uri
//	                        %2F %5C refused (400)        escaped slashes kept (edge: on)      is opt-in)
//	underscores in names    400                          allowed (edge: REJECT_REQUEST)       allowed
//	h2 premature resets     >1/2 of >=500 within 1 s     the same rule (premature_reset_*)    counted as glitches
//	h2 empty frames         1 in a row                   1 in a row (max_consecutive_         counted as glitches
//	                                                     inbound_frames_with_empty_payload)
//	h2 SETTINGS, PING       100 a second each            1000 queued control frames           counted as glitches
//	h2 stream window        64 KiB, both legs            256 MiB (edge: 64 KiB)               64 KiB (tune.h2.initial-
//	h2 connection window    1 MiB, both legs             256 MiB (edge: 1 MiB)                window-size), 16 KiB buffers
//
// # Events
//
// Refusals of the proxy's own (not by policy) are ERROR events with
// L7.Refused set, counted by package proxy's metrics in
// portcullis_proxy_refused_total{reason}: header-timeout (the head
// deadline; HTTP/2 preface and SETTINGS included), body-timeout,
// header-too-large (431s, also the ones x/net's HTTP/2 server answers by
// itself, seen by their body on the way out), tls-on-plain-port,
// bad-request (400s before a verdict, a client's malformed body), h2-abuse
// (GOAWAY ENHANCE_YOUR_CALM, and the summaries of rate-limited stream
// events); the core adds connection-limit and slot-reclaimed.
//
// One monitor.Event (TypeL7, Node from Options.Node) per request through
// Options.Record (called synchronously: it must not block): protocol
// http/1.1, h2 or grpc, method, path, host, status (403 for denials, the
// upstream's otherwise), GRPCStatus for gRPC, latency to the response
// head; verdict FORWARDED (Policy: the allowing rule), DENIED or AUDITED
// (Policy: the side's policies, Direction: that side's, Reason
// no-l7-rule-matched, or why the connection is refused, such as "no policy
// snapshot"), ERROR (unparseable request or upstream failure, Reason says
// which). Source and destination carry address, identity, pod and labels;
// their rendering is cached per connection.
//
// # Tests
//
// Real net/http, x/net/http2 and grpc-go clients and servers on
// 127.0.0.2 → proxy → 127.0.0.3, policies from YAML through the loader and
// a real policy.Repository: allow and deny on HTTP/1.1 and h2c with the
// exact 403; keep-alive across denials; a policy change between two
// requests of one connection (HTTP/1.1 and HTTP/2; an L7 denial and an L4
// one); refusal without a snapshot and under a Kafka policy; header
// actions seen by the upstream; Expect: 100-continue; chunked request and
// response with trailers; a denied body dropped without being taken for a
// request; upgrade echo, denied upgrade, h2c upgrade not passed on;
// absolute form; malformed or smuggling requests → error status and close
// with nothing upstream; header timeout; upstream down → 502/UNAVAILABLE;
// audit mode; pooling and the held upstream connection; GOAWAY on a
// malformed frame; grpc-go PermissionDenied naming the policy, with the
// connection usable after it; gRPC server and bidirectional streams with
// their trailers; malformed or ambiguous upstream responses; Close ending
// a request that waits on a silent upstream; an upstream response cut
// mid-body reaching the client cut; a stale pooled connection (GET
// retried, POST 502); header actions on Host, Content-Length and
// Transfer-Encoding leaving the framing intact; no User-Agent added on
// HTTP/2.
//
// Hostile peers (hardening_*_test.go, the attack clients written with
// x/net's Framer against the real proxy on loopback): rapid reset without
// a crash; head deadlines from the accept (HTTP/1.1 trickle, a late first
// byte, the HTTP/2 preface and SETTINGS trickled, a silent connection, a
// stalled or trickled HTTP/2 header block); body deadlines on both
// protocols; slots reclaimed at the core's connection limit; path
// normalization judged and forwarded alike, Host and field-name checks;
// no Accept-Encoding added; TLS on the plain port; premature resets,
// empty frames, SETTINGS and PING floods cut with ENHANCE_YOUR_CALM;
// denied stream events summarized; reset streams not forwarded; refusals
// counted by reason (x/net's own 431 included); bounded per-stream
// buffering, memory under 500 stalled streams, coalesced upstream dials,
// the stream idle timeout.
//
// Fuzz targets: FuzzServeConn (raw bytes as a client connection; the
// upstream parses what it receives with net/http and fails on any request
// the policy denies, so a smuggled request would be seen; every upstream
// request must have a FORWARDED event), FuzzParseRequest (differential:
// every head the proxy accepts is written upstream as the proxy would and
// parsed by net/http, which must agree on method, target, host and body
// length and find the next request where the proxy ends this one),
// FuzzParseResponse (the same for responses) and FuzzDecideHTTP.
// BenchmarkHTTP1Request is reported in docs/benchmarks.md.
//
// # Not done
//
// TLS itself: proxy/tls terminates and originates it and hands the
// decrypted stream to ServeDecrypted (a TLS client hello on a plain
// port is answered 400 at once, with an event "tls-on-plain-port", and
// closed); CONNECT and HTTP/2 extended CONNECT
// (501); HTTP/1.1 → h2c upgrade (not passed on); HTTP/1.1 pipelining is
// served in order (no parallelism); trailers of HTTP/1.0 clients are
// dropped; no per-request upstream timeout other than IdleTimeout; an
// HTTP/1.1 client that goes away while its request waits on the upstream
// is noticed only when the upstream answers or times out (Server.Close
// and the ServeConn context do cut such a wait short).
package http
