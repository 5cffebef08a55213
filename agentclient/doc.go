// Package agentclient is the client of the node agent's local API (HTTP
// on a unix socket: endpoint table, flow-event stream, live trace) and
// the API's wire types. The wire types are this package's own, with their
// JSON pinned by golden files in testdata, so that a change to the engine
// (policy, policy/l7, monitor) cannot change the API unnoticed; the
// server in controllers/agent converts from the engine's types, and the
// `portcullis endpoint list`, `monitor` and `policy trace --live` commands
// use the client.
package agentclient
