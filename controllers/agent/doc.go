// Package agent will hold the node agent's reconcilers (pods, namespaces,
// services and policies into the engine's map state, then into the BPF
// maps), issue 4. For now it holds the agent's RBAC markers (rbac.go),
// which generate config/rbac/agent_role.yaml with `make manifests`, so the
// agent's permissions are reviewed and tested before its code exists.
//
// The agent's side of the reporting contract (docs/architecture.md,
// "Operator"): it holds the Lease portcullis-agent-<node> in
// portcullis-system while it runs, and for each policy it applies
// status.nodes[name=<node>] = {observedGeneration, message} with
// server-side apply and the field manager portcullis-agent/<node>.
package agent
