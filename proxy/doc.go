// Package proxy is the node-local L7 proxy's protocol-independent core:
// the policy snapshot the agent publishes, the resolution of a redirected
// connection to the L7 rules that govern it ([ConnPolicy]), the
// transparent listener, the upstream dialer, the dispatch to a protocol
// server and the proxy's metrics. One package per protocol parses
// requests and asks a ConnPolicy for verdicts: proxy/http (HTTP/1.1, h2c,
// gRPC), proxy/kafka and proxy/dns.
//
// # Transparent side
//
// [ListenTransparent] opens 0.0.0.0:PORT (the agent's --proxy-port) with
// IP_TRANSPARENT in the node's namespace: the datapath's bpf_sk_assign
// hands it redirected flows whatever their destination (a listener on
// 127.0.0.1 would not be found). For each accepted connection the client
// is RemoteAddr() and the original destination LocalAddr(). [Proxy.Serve]
// resolves the connection's ConnPolicy through the [Store]. A connection
// that must be judged at the TLS layer ([ConnPolicy.NeedsTLS]: serverNames
// without L7 rules, terminatingTLS, originatingTLS) goes to Options.TLS
// (proxy/tls). The others are dispatched
// on [ConnPolicy.Parser]: HTTP to Options.HTTP, Kafka to Options.Kafka,
// DNS (over TCP) to Options.DNS; DNS over UDP reaches proxy/dns's own
// socket on the same port.
// Everything else is refused with a TCP reset (SO_LINGER 0) and an event,
// never passed unjudged: no snapshot yet or neither side a local endpoint
// (ERROR), a side that now denies the flow at L4 (DENIED, naming the side
// and its policies), sides that need different parsers (ERROR), a protocol
// without a server (ERROR "no ... proxy configured"). A redirected flow whose
// policy no longer redirects it (a plain L4 allow now, but established
// flows keep their path in the datapath) is relayed byte for byte.
//
// At most Options.MaxConns ([DefaultMaxConns]; the agent's
// --proxy-max-connections, the standalone's --max-connections)
// connections are served at once. A connection handed to the HTTP server
// is pending until that server reports its first request ([Started]); at
// the bound the oldest pending connection is reset to make room (event,
// L7.Refused [RefusedSlotReclaimed]), so sockets that never send a
// request cannot starve new clients; with none pending, new ones are
// reset with an event ([RefusedConnLimit]). A panic while serving one connection is recovered: that
// connection is reset and reported, the proxy goes on.
//
// # Closing without TIME_WAIT
//
// A TIME_WAIT socket of the proxy in the node namespace holds a pod's
// address and port and would capture a later direct flow on the same
// tuple. So the proxy's client and upstream sockets close normally only
// when the peer closed first (the peer then holds the TIME_WAIT);
// otherwise Close waits (at most 1 s) until the peer has acknowledged
// every byte sent (SIOCOUTQ = 0) and resets. The peer loses nothing it has
// not received, but a client that reads until the end of the stream sees a
// reset instead of an end of file after the data. TestTransparentNoTimeWait
// has the proxy close first, turns the port into a plain L4 allow and
// connects directly from the same client port: it goes through at once;
// with a plain close it would be captured by the proxy's TIME_WAIT socket.
//
// # Upstream
//
// Every upstream socket of the [Dialer] has SO_MARK bpf.MarkFromProxy: the
// destination pod's to_pod passes it without a second policy check, since
// the proxy judged the request under both sides' policy. When both the
// client and the server are local pods, the socket is bound with
// IP_TRANSPARENT to the client's address and a port the dialer picks at
// random in [TransparentPortLo]–[TransparentPortHi] (retrying a taken
// one), so the server sees the client pod's address, as it would without
// the proxy. The port range is the point: the kernel would pick the port
// among the node's sockets only, from the ephemeral range the pod also
// uses, and could give the upstream leg the very tuple of a connection
// the client pod already has towards that server (the two flows then share
// conntrack and socket lookups: resets and 502s under load, as the proxy
// benchmark's idle test once met). Below 32768 a leg never meets a pod's
// own ephemeral port (a pod that moves its ip_local_port_range down could
// still meet it). The per-socket IP_LOCAL_PORT_RANGE cannot do this: it
// only narrows the namespace's range. The datapath hands the server's
// replies to that socket (package bpf, marks). Otherwise the kernel picks
// the node's address for the route: an upstream that is not a local pod
// sees the node's address (its replies arrive from the uplink, where no
// program could hand them to the proxy; they would be routed to the client
// pod). If the transparent bind itself fails (no CAP_NET_ADMIN), the dial
// falls back to the node's address and the agent logs it. Dials time out
// after [DefaultDialTimeout].
//
// # Snapshots
//
// After every sync pass the agent builds a [Snapshot] — the repository's
// revision, every local endpoint with the EndpointPolicy written in that
// pass, and an address → identity function backed by an immutable copy of
// the ipcache as written (longest prefix, a miss is world; labels from the
// repository) — and Sets it; the swap is one atomic pointer store. A
// connection's policy is resolved when it is accepted and each request is
// judged with the snapshot current when it starts (the protocol servers
// re-resolve per request): in-flight requests finish under the snapshot
// they started with, the next request sees the new one. Until the first
// snapshot every connection is refused; the listener is up before the
// first sync writes a redirect entry. The snapshot follows every pass, not
// only passes that wrote everything: one endpoint stuck in lockdown would
// otherwise leave the proxy judging every other endpoint by policies older
// than the kernel's. An endpoint whose write failed in the pass (or that
// waits for its identity) is in the snapshot without a policy, and
// connections from or to it are refused (TestResolveUnwrittenEndpoint):
// left out, it would look like a remote peer whose side needs no check.
//
// # Events and metrics
//
// Every record (the protocol servers' one per request, the core's
// refusals) is published on the agent's monitor hub with Node set and
// counted ([Metrics]): portcullis_proxy_requests_total{protocol,verdict},
// portcullis_proxy_refused_total{reason} (the events whose L7.Refused
// says the proxy refused to protect itself: header-timeout, body-timeout,
// header-too-large, tls-on-plain-port, bad-request, connection-limit,
// slot-reclaimed, h2-abuse) and the histogram
// portcullis_proxy_request_duration_seconds{protocol}
// (from the event's latency), on controller-runtime's registry in the
// agent, on a registry of its own in the standalone proxy.
//
// # Tests
//
// go test ./proxy/: resolution (egress only, ingress only, both sides
// redirect, one side allow and one redirect, only the source local, L4
// deny after a change, audit side, no snapshot, neither side local, parser
// conflict, unwritten endpoint), metrics, and on loopback refusals,
// dispatch, panic recovery, the connection limit and the L4 relay. As
// root, on the real kernel datapath in throwaway namespaces (a node and
// two pods on veths, no netfilter rules; internal/netnstest):
// TestTransparentSourcePreserved (a pod's HTTP requests redirected by
// bpf_sk_assign into ListenTransparent and judged by proxy/http: the
// allowed one reaches the server pod, which sees the client pod's address
// — it fails without the datapath's reply assignment — and the denied one
// gets 403), TestTransparentNodeAddress (without the transparent bind the
// server sees the node's address and the marked leg still passes its
// policy) and TestTransparentNoTimeWait. End to end behind the agent:
// e2e/proxy.
//
// # Not done
//
// IPv6; keeping proxied connections
// across an agent restart (established proxied flows are reset, new ones
// are dropped with no-proxy until the agent is back); source address
// preservation towards servers that are not local pods.
package proxy
