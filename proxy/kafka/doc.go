// Package kafka is the L7 proxy's Kafka server: every request of a
// redirected Kafka connection is decoded and judged by the connection's
// policy before a byte of it reaches the broker.
//
// # Requests
//
// The wire format is franz-go's kmsg (request and response bodies of every
// API key and version, flexible versions and tagged fields included); the
// request header, the response header and the framing are parsed here
// because kmsg handles bodies only. The topics a request names come from
// one extractor per API key (request.go). Each request is judged by
// proxy.ConnPolicy.DecideKafka, resolved anew per request, so a policy
// change applies to the next request on an open connection, with Cilium's
// semantics: a request naming several topics passes only if every topic
// does; a request naming no topic passes when its API key is allowed.
//
// # Versions: fail closed
//
// A request the proxy cannot decode is never forwarded. So that clients
// never send one, the broker's ApiVersions answer is relayed with each
// API's maximum version lowered to what the proxy decodes, and the APIs it
// does not serve dropped (versions.go); versions that name topics by ID
// only (Produce and Fetch v13+, OffsetCommit and OffsetFetch v10+,
// TxnOffsetCommit v6+) are left out, since the policy names topics. An
// ApiVersions request above what the proxy decodes gets
// UNSUPPORTED_VERSION, as a broker answers (KIP-511). A client that sends
// an undecodable request anyway has its connection closed with an ERROR
// event naming the API key and version. Fetch sessions (KIP-227) are
// turned into full fetches, so that every fetch names its topics.
//
// # Denials
//
// A denied request gets a response of its own API key and version and
// correlation id, with the error Kafka's own authorizer returns (deny.go,
// one table by API key): TOPIC_AUTHORIZATION_FAILED (29) on every topic
// and partition of a topic request, GROUP_AUTHORIZATION_FAILED (30) for
// group requests, TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) for
// transactional ones, CLUSTER_AUTHORIZATION_FAILED (31) otherwise. The
// connection stays open. A Produce with acks=0 expects no answer: a denied
// one is dropped, with a DENIED event. Kafka clients pipeline requests and
// read responses in order, so the responses to forwarded requests and the
// proxy's own answers leave in request order: one goroutine per
// connection reads requests, another relays responses from a queue of
// in-flight requests (at most Options.MaxInFlight).
//
// # Limits
//
// A request larger than Options.MaxRequestBytes (default 100 MiB, Kafka's
// socket.request.max.bytes) or with a negative size closes the connection
// with an event. A request's buffer grows with the bytes that arrive, not
// with the size announced, and write buffers are pooled: a connection that
// has sent part of a request and stalled costs about 37 KiB
// (TestMemoryMidRequest holds 1,000 of them). Options.RequestTimeout cuts
// off a client that stalls inside a request; a broker's answer may take
// as long as the request allows (a Fetch's max wait, a JoinGroup's
// rebalance timeout) plus RequestTimeout.
//
// # Where brokers are
//
// Clients connect to the brokers that Metadata and FindCoordinator answers
// name. In the agent those are the broker pods' own addresses, which the
// datapath redirects to the proxy as well, so answers are relayed as they
// are. The standalone proxy (`portcullis proxy`) has one broker upstream:
// with Options.Advertise it rewrites every advertised broker to its own
// listen address, as Kafka gateways do, so that every connection of the
// client passes it.
//
// # Events and metrics
//
// One event per request (API key name and version, client id, topics,
// verdict, the deciding rule or the denying side, the error code answered,
// the latency from the request's first byte to the end of its response);
// the proxy core counts them in
// portcullis_proxy_requests_total{protocol="kafka",verdict} and
// portcullis_proxy_request_duration_seconds{protocol="kafka"}.
//
// Throughput and latency against a kfake broker, direct and through the
// proxy: docs/benchmarks/kafka.md.
package kafka
