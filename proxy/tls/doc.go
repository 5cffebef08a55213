// Package tls judges redirected TLS connections at the TLS layer: by the
// server name of their ClientHello (a port rule's serverNames) and, when
// the port rule has a terminatingTLS, by intercepting them.
//
// # Server names without keys
//
// The proxy reads the client's first flight and parses the ClientHello
// with crypto/tls itself (GetConfigForClient over a connection that
// records what crypto/tls read and drops what it writes), so a hello
// split over records is reassembled as a TLS server would. Nothing is sent
// to the client before the verdict. The server name is matched as the
// engine compiled the patterns (l7.ServerNameMatcher: exact, "*." for one
// more label, "**." for one or more), on every redirected side
// (proxy.ConnPolicy.DecideServerName):
//
//   - allowed: the proxy connects to the original destination, sends it
//     the recorded bytes and splices the rest both ways, untouched; the
//     client completes its handshake with the server itself and sees the
//     server's own certificate. One event: FORWARDED, naming the server
//     name and the allowing rule.
//   - denied, or no server name: the proxy answers with a fatal alert
//     access_denied (49) in a TLS 1.2 plaintext record, half-closes and
//     closes. One event: DENIED, naming the server name and the policy
//     (L7.ServerName holds the name; L7.Refused is "no-server-name" when
//     the client sent none).
//   - not TLS at all: reset, event ERROR, L7.Refused "not-tls".
//
// Until its ClientHello is in, a connection's slot under the proxy's
// connection limit may be reclaimed for a new client, as an HTTP
// connection's until its first request (proxy.Started); the hello must
// come within Options.HandshakeTimeout.
//
// Why access_denied and not unrecognized_name: the refusal is an access
// control decision of the operator's policy, and RFC 8446 defines
// access_denied for exactly that ("when access control was applied, the
// sender decided not to proceed"); clients show it as such (openssl:
// "tlsv1 alert access denied", curl exit 35 with the same text), which
// points the user at the policy. unrecognized_name says the server does
// not know the name, which sends users looking at DNS and certificates,
// and is often sent, and ignored, as a mere warning. A connection without
// SNI gets the same alert: the policy admits named connections only. The
// event says which case it was.
//
// Together with HTTP rules and no terminatingTLS the engine refuses
// serverNames (l7.ErrServerNamesNeedTermination); a serverNames rule
// without L7 rules is a connection-level check only, as in Cilium.
//
// # Interception
//
// A port rule with terminatingTLS has its connections terminated: after
// the server-name check (the same as above: a name no rule applies to is
// refused with the alert before any certificate is shown), the proxy
// completes the handshake with the certificate and key of the referenced
// secret (keys tls.crt and tls.key unless the context names others),
// offering ALPN h2 and http/1.1. The decrypted stream is served by
// proxy/http (HTTP/1.1, HTTP/2, gRPC) exactly as a cleartext one, with the
// client's server name given to the rules (l7.HTTPRequest.ServerName) and
// shown in every event. A port rule without L7 rules that terminates is
// relayed decrypted. Kafka rules with terminatingTLS are refused (reset,
// event "tls-unsupported"): nothing passes unjudged.
//
// Client certificates: a terminatingTLS verifies client certificates only
// when its trustedCA field names a key of the secret explicitly; then
// every client must present a certificate those CAs sign. A ca.crt that
// merely sits in the secret (as in every cert-manager Secret) is ignored
// by a terminatingTLS. Cilium instead turns client-certificate checks on
// whenever the secret holds ca.crt, which silently breaks clients that
// present none; here that takes a line of policy.
//
// The upstream leg: with an originatingTLS the proxy connects to the
// original destination and originates TLS with the client's server name
// (the destination's address when the client sent none), verifying the server's
// certificate against the CAs under the context's trustedCA key (ca.crt by
// default; a context without CAs is an unusable reference, never an
// unverified connection), and presenting a client certificate when the
// context names one (certificate, and privateKey or tls.key). A
// verification failure is answered 502 (gRPC UNAVAILABLE) with an event
// whose reason is crypto/tls's ("x509: certificate signed by unknown
// authority", ...). Without an originatingTLS the upstream leg is
// cleartext, as in Cilium.
//
// ALPN: proxy/http forwards HTTP/2 as HTTP/2 and HTTP/1.1 as HTTP/1.1, so
// both legs must speak the same protocol. With an originatingTLS the
// proxy therefore connects to the upstream before it answers the client's
// hello, offering the HTTP protocols the client offered, and offers the
// client only the upstream's choice; that first upstream connection
// carries the first request. The choice is remembered for a minute per
// destination, server name, trust and offer, so later connections cost no
// upstream handshake of their own (their requests take pooled upstream
// connections); an upstream that drops h2 within that minute answers the
// next h2 client's requests with 502 and the reason. An unreachable or untrusted upstream leaves
// the client offered h2 and http/1.1, and its requests get 502 with the
// reason. Without an originatingTLS the client is offered h2 and
// http/1.1 and the cleartext upstream must speak what it chose (HTTP/2
// with prior knowledge for h2, as gRPC servers do). Upstream connections are pooled per source
// address, destination, server name and version of the trust. A client
// connection keeps the material it was accepted with; a rotation of
// either secret applies to the connections accepted after it.
//
// # Secrets
//
// Secrets holds the referenced secrets by the namespace and name the
// policy uses. Each handshake looks its material up, so a Put (a
// rotation) applies to the next handshake. A missing, refused or
// unparsable reference fails closed: the connection is reset with an
// ERROR event naming the policy and the reference (L7.Refused
// "tls-secret"). Errors name the secret and the key, never their values.
// In the agent the store is fed from the operator's copies in the secrets
// namespace (controllers/agent); `portcullis proxy` fills it from the
// Secret objects of its --policy files.
//
// # Tests
//
// servernames_test.go: openssl s_client and curl against a Go TLS server
// through the pass-through (the upstream's own certificate, verified; the
// alert for the others; events). intercept_test.go: curl over HTTP/2 and
// HTTP/1.1 (200, 403 over TLS, request lines and server name in events),
// an untrusted upstream (502 with the x509 reason), client certificates
// only with an explicit trustedCA, unusable secrets (reset, event naming
// policy and reference, no PEM in it), rotation, the upstream's protocol
// offered to the client. grpc_test.go: grpc-go over interception
// (PermissionDenied naming the policy; UNAVAILABLE for an untrusted
// upstream). fuzz_test.go: FuzzReadClientHello. End to end through the
// datapath: e2e/tls.
//
// # Not done
//
// Kafka rules with terminatingTLS (refused); TLS origination for a
// cleartext client (originatingTLS without terminatingTLS, refused);
// translation between HTTP/2 and HTTP/1.1 across the two legs; applying a
// rotation to connections already open.
package tls
