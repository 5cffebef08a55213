// Package agentclient is the node agent's local API: the wire types of its
// HTTP API on a unix socket (endpoint table, flow-event stream, live
// trace) and a client for them. The server is in controllers/agent; the
// `portcullis endpoint list`, `monitor` and `policy trace --live` commands
// use the client.
package agentclient
