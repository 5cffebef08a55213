// Package workloads holds the demo's and the proxy e2e tests' servers and
// clients, written to run inside a pod (a network namespace) as a re-exec
// of the calling binary: the Star Wars deathstar (HTTP/1.1 and h2c, as in
// Cilium's Star Wars demo), the Cloud City door manager (gRPC, the service
// of Cilium's gRPC guide, defined by hand: no protoc) and its client, a
// keep-alive HTTP client that counts its connections, and a Kafka broker
// (franz-go's kfake) with a franz-go client.
//
// The deathstar answers POST /v1/request-landing with 200 "Ship landed",
// PUT /v1/exhaust-port with 503 "Panic: deathstar exploded" and GET /v1/,
// as in Cilium's demo, over HTTP/1.1 and h2c (x/net/http2/h2c). The door
// manager is the service cloudcity.DoorManager — the paths of Cilium's
// gRPC guide and of examples/grpc — defined by a hand-written
// grpc.ServiceDesc whose messages are protobuf wrapper types: no protoc,
// no generated code. The gRPC client keeps one connection.
//
// A binary that wants to run them calls [RunIfChild] first thing in main
// (or TestMain); the parent starts one with [Start] on a pod's command
// (localcluster.Pod.Command). Parent and child talk JSON lines: the child
// answers each command read from stdin with one line, and servers report
// each request they see. A child exits when its stdin closes, so it never
// outlives its parent.
package workloads
