// Package proxy holds the L7 proxy's end-to-end tests (root only): real
// clients (curl, grpc-go, kcat, franz-go) in pods' network namespaces,
// the kernel datapath redirecting their flows to the agent's proxy, real
// servers (internal/workloads, a kfake Kafka broker among them) behind it. The environment is e2e/internal/harness's:
// a local cluster, the operator's status reconcilers, agent.Run in-process
// on a bpffs of its own with the proxy on a free port below the ephemeral
// range, the node lock, cleanup also on failure.
//
// TestProxy makes the pods of examples/starwars and examples/grpc, starts
// the deathstar and the door manager in theirs, checks that without a
// policy everything reaches them (the deathstar explodes), applies the two
// example files unchanged through the apiserver, waits for Programmed, and
// then, with the clients a user would run:
//
//   - Star Wars over HTTP/1.1 (curl in the tiefighter): POST
//     /v1/request-landing → 200 "Ship landed", received from the
//     tiefighter's own address; PUT /v1/exhaust-port → 403 "Access
//     denied\r\n", never received; L7 events FORWARDED and DENIED (403,
//     naming default/rule1) on the agent's hub.
//   - L3 drop (curl in the xwing): times out (exit 28), a DROPPED event
//     from its address.
//   - HTTP/2 (curl --http2-prior-knowledge): the same over h2, a DENIED
//     event with protocol h2.
//   - gRPC (grpc-go client in the public terminal): GetName, GetLocation,
//     RequestMaintenance OK; SetAccessCode, GetStatus codes.PermissionDenied
//     with "access denied by TrafficPolicy default/door-manager", never
//     received, all on one connection; a DENIED event with grpc status 7;
//     the policy changed to GetLocation only: the next GetName on the open
//     HTTP/2 connection is denied, and allowed again once restored.
//   - Header regex (curl with X-Token): a second policy GET /v1/ with
//     headerMatches [{name: X-Token, regex: "[0-9]+"}]: 12345 → 200; abc,
//     12a (the whole value must match) and no X-Token → 403.
//   - Policy change under keep-alive (Go client on one connection): request
//     1 allowed; rule1 changed to GET /v1/ only; request 2 → 403, request 3
//     (GET /v1/) → 200; rule1 restored, request 4 → 200; one connection
//     dialled throughout.
//
// TestKafka (kafka_test.go) runs Cilium's Kafka demo the same way, with
// kcat and a franz-go client against a kfake broker in a pod.
//
// It takes about 13 s (plus the build) on a 2-core machine.
package proxy
