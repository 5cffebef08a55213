// Package agent is the node agent (docs/architecture.md, "Agent"):
// controller-runtime reconcilers, without leader election, that feed
// Namespaces, the three policy kinds, Pods and Services (with their
// EndpointSlices) into one policy.Repository, and a sync loop that writes
// the engine's state into the pinned BPF datapath: the ipcache (pod
// addresses and CIDR identities), each local endpoint's policy entries
// (through the datapath's diff writer), its programs and its flags. [Run]
// is what cmd/portcullis-agent runs; the e2e test runs it in-process.
//
// The agent's permissions are the RBAC markers in rbac.go, which generate
// config/rbac/agent_role.yaml with `make manifests`.
//
// The agent's side of the reporting contract (docs/architecture.md,
// "Operator"): it holds the Lease portcullis-agent-<node> in
// portcullis-system while it runs, and for each policy it applies
// status.nodes[name=<node>] = {observedGeneration, message} with
// server-side apply and the field manager portcullis-agent/<node>.
package agent
