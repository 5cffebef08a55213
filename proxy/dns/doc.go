// Package dns is the DNS proxy: every query of a flow whose policy has
// DNS rules (rules.dns: matchName, matchPattern) is judged by those rules
// before it reaches a server, and the answers of allowed queries are what
// toFQDNs selectors learn addresses from.
//
// # Verdicts
//
// A query is resolved to its flow's [proxy.ConnPolicy] (the client, the
// address it asked, UDP or TCP) once per query, so a policy change
// applies to the next query, and judged with [proxy.ConnPolicy.DecideDNS]
// on every redirected side: Cilium's semantics (case-insensitive, the
// trailing dot optional, "*" within one label, "*" alone for every
// name; package policy/l7). Then:
//
//   - allowed: the query is forwarded to the server the client asked (the
//     packet's original destination, or Options.Upstream) with a fresh
//     random ID, and the server's answer is relayed byte for byte with
//     the client's ID put back. The answer must be a response to that ID
//     and question; anything else is no answer.
//   - denied: the proxy answers itself, REFUSED, or NXDOMAIN with
//     Options.RejectCode (the agent's --dns-reject-response-code
//     nameError), echoing the query's ID, RD flag and question.
//   - malformed (not a DNS message, truncated, a response, not exactly
//     one question, an opcode other than QUERY, a class other than IN):
//     dropped with an event. Over TCP the connection is closed, since the
//     next message boundary cannot be trusted.
//   - no answer from the server within Options.Timeout
//     ([DefaultTimeout], under the 5 s stub resolvers wait before they
//     retry), an unreachable server or an answer that does not parse:
//     SERVFAIL.
//   - no policy snapshot yet, or the endpoint's policy not written: no
//     answer and an event, so the client retries once the agent is ready
//     instead of failing the lookup for good (fail closed).
//
// # Transports
//
// UDP: [ListenUDP] opens 0.0.0.0:PORT (the agent's proxy port) with
// IP_TRANSPARENT, to which the datapath's bpf_sk_assign hands redirected
// packets whatever their destination, and IP_RECVORIGDSTADDR, which gives
// each packet's original destination. [Server.ServeUDP] judges each
// packet in its own goroutine (at most Options.MaxInFlight at once;
// beyond, dropped with an event: the client retries) and forwards it over
// one of four connected UDP sockets the proxy keeps per server (at most
// 64 servers; beyond, a socket per query), picked at random: answers are
// matched to queries by the random ID the proxy gave the query, and an
// answer nobody waits for is dropped. A socket per query cost a quarter
// of the proxy's CPU under dnsperf. The answer goes back FROM the
// address the client asked: a stub resolver drops answers from any other
// address. That needs a socket bound to that address and port, which is
// not the node's: the proxy keeps one per address (at most 256) bound
// with IP_TRANSPARENT. The node never delivers packets to those sockets
// (the addresses are not local, and the datapath assigns queries to the
// listener). A packet to the listener's own port (the standalone proxy)
// is answered through the listener, its source chosen with IP_PKTINFO.
//
// TCP: [Server.ServeConn] serves a connection the transparent TCP
// listener accepted (proxy.Proxy dispatches connections whose parser is
// DNS): length-prefixed messages, several per connection, each judged and
// answered in turn, the allowed ones over one TCP connection to the
// server opened at the first. A connection idle for Options.IdleTimeout
// ([DefaultIdleTimeout]) is closed.
//
// Sockets towards servers carry Options.Mark (bpf.MarkFromProxy in the
// agent), which the datapath passes without a second policy check: the
// proxy has judged the query. Answers towards clients carry no mark: they
// pass the client's to_pod as replies of its flow, and when the client
// asked a Service's ClusterIP (translated to a backend before the
// redirect, so the proxy answers from the backend's address) the
// datapath's reverse translation gives them the ClusterIP back.
//
// # Events and metrics
//
// One event per query (and per dropped packet) goes to Options.Record:
// the L7 part's protocol is "dns" and its DNS part has the query name and
// type, the response code sent to the client and the answer's addresses;
// the verdict is FORWARDED, AUDITED, DENIED (the deciding policy named),
// DROPPED (malformed) or ERROR (SERVFAIL, no policy). The agent counts
// them like the other protocols' (portcullis_proxy_requests_total with
// protocol dns, and the latency histogram).
//
// # Tests
//
// go test ./proxy/dns/ (as root: IP_TRANSPARENT): dig against the proxy
// in front of dnsmasq (authoritative only, never forwarding;
// internal/dnstest) over UDP and TCP: pattern, matchName, case and
// trailing dot, CNAME chain, one label per "*", denied names REFUSED
// although dnsmasq has them, NXDOMAIN under nameError with the ID and
// question echoed, several queries on one TCP connection, SERVFAIL from a
// silent server, malformed packets dropped, no snapshot. FuzzQuery and
// FuzzAnswer feed hostile queries and hostile answers (compression loops,
// huge records, other IDs) through the whole query path. TestDNSPerf
// (PORTCULLIS_DNSPERF=1) runs dnsperf direct to dnsmasq and through the
// proxy: the most queries per second and the latency percentiles at 1,000
// queries per second.
package dns
