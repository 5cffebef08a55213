// Package proxy holds the L7 proxy's end-to-end tests (root only): real
// clients (curl, grpc-go, kcat, franz-go) in pods' network namespaces,
// the kernel datapath redirecting their flows to the agent's proxy, real
// servers behind it (a kfake Kafka broker among them). See proxy_test.go
// and kafka_test.go.
package proxy
