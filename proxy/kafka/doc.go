// Package kafka is the node-local proxy for the Kafka protocol: it reads
// each request of a client connection, judges it under the connection's
// policy (ConnPolicy.DecideKafka: API key, version, client ID, topics) and
// forwards it to the broker, or answers it in Kafka's own words.
//
// [Server.ServeConn] serves one client connection, the proxy.ConnServer
// that proxy.Options.Kafka takes; each client connection gets one upstream
// connection (Kafka connections are long-lived). The policy is resolved
// per request, so a policy change applies to the next request on an open
// connection. The agent's transparent proxy hands Kafka flows to it (no
// address rewriting: clients reach the brokers' own addresses through the
// redirect), and `portcullis proxy` serves it standalone, advertising its
// own listen address. Tests run on loopback with real clients: franz-go's
// kfake broker with kgo clients here, kcat and a franz-go consumer group
// in cmd/portcullis.
//
// # Requests
//
// Requests are decoded with franz-go's kmsg (the request header by hand:
// kmsg decodes bodies only). Only APIs the policy language names, that
// kmsg decodes and, when they name topics, whose topics the proxy knows
// how to find, are served: a request the proxy cannot decode is never
// forwarded and ends the connection. The broker's ApiVersions answer is
// rewritten to those APIs and versions, so clients only send requests the
// proxy can judge; versions that name topics by ID only (Produce and
// Fetch v13+, OffsetCommit and OffsetFetch v10+, TxnOffsetCommit v6+) are
// capped below, since the proxy judges topics by name. An ApiVersions
// request of a newer version than the proxy decodes is answered with
// UNSUPPORTED_VERSION and the versions it does (KIP-511). Every Fetch is
// made sessionless (KIP-227's full fetch), so that each names all of its
// topics and is judged on them. A request naming several topics is
// allowed only if every topic is.
//
// # Denials
//
// A denied request is answered with the error Kafka's own authorizer
// returns for it: topic requests fail on their topics
// (TOPIC_AUTHORIZATION_FAILED), group requests on the group, transactional
// ones on the transactional id, everything else on the cluster; the broker
// never sees it. A denied Produce with acks=0 is dropped without a
// response; a denied request of an API the proxy has no response for
// closes the connection.
//
// # Limits
//
// Options, zero meaning Kafka's own defaults: MaxRequestBytes
// (socket.request.max.bytes, 100 MiB; a request's buffer grows with the
// bytes that arrive, not with the size announced), IdleTimeout
// (connections.max.idle.ms, 10 min), RequestTimeout (request.timeout.ms,
// 30 s, for reading a request and waiting for its response, plus the time
// the request itself lets the broker wait) and MaxInFlight (128 pipelined
// requests awaiting responses). Options.Advertise replaces the broker
// addresses of Metadata and FindCoordinator responses, so that clients of
// a non-transparent proxy keep connecting through it.
//
// # Events
//
// One monitor.Event per request (FORWARDED, DENIED with the denied topics
// or the side's policies, AUDITED under audit mode), with the API key
// name, version, client ID, topics and the error code of a denial; ERROR
// events for connections ended by a bad request or broker failure.
package kafka
