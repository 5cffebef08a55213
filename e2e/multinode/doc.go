// Package multinode is the end-to-end test of a cluster of three nodes
// (root only): a real control plane, internal/localcluster with
// Options.Nodes = 3 (the first node the root namespace, the others network
// namespaces with uplinks routed through it), and the agent binary
// (cmd/portcullis-agent, built by the test) running on every node as a
// DaemonSet would run it: `ip netns exec` into the node, its own bpffs,
// proxy port, API socket and kubeconfig, no state shared but the
// apiserver. Clients are the real curl in the pods' namespaces.
//
// TestStarWarsAcrossNodes: the xwing, the tiefighter and the deathstar on
// three different nodes, and a pod with the tiefighter's labels in
// another namespace (rogue) on the xwing's node. Each agent lists exactly
// its node's pods as endpoints. The rogue tiefighter is dropped wherever
// the xwing is (policy peers are namespaced, also across nodes). Without a policy the xwing lands. With Cilium's Star Wars
// L3/L4 policy programmed on every node, the tiefighter lands (200) and
// the xwing's connection is dropped (curl exit 28) by the deathstar's
// node, whose agent reports a DROPPED ingress event with both sides'
// labels (the xwing's identity taken from the ipcache, fed from its Pod
// object on another node); the xwing's own node reports no drop. The
// deathstar's agent stopped entirely leaves its pinned enforcement in
// place (the tiefighter still lands, the xwing is still dropped), and a
// restarted agent takes over its pins. Then Cilium's L7 policy (POST
// /v1/request-landing only): the deathstar's node redirects the
// tiefighter's connection at its uplink to its own proxy, which answers
// 200 to the landing and 403 to PUT /v1/exhaust-port (a DENIED event with
// the tiefighter's labels on the deathstar's agent, no
// redirect-unsupported drop), while the xwing is still dropped at L3/L4.
// The first node's agent (the router of the underlay) stopped and
// restarted does not disturb the tiefighter's traffic to the deathstar.
// Last, the xwing deleted while the deathstar's agent is down is gone from
// that node's pinned ipcache after the agent's return (the tiefighter's
// entry stays, and it still lands). Then an egress L7 rule of the
// tiefighter as well: its node's proxy forwards the POST (and the PUT) and
// dials the deathstar from the tiefighter's own address, so the
// deathstar's node sees the tiefighter (FORWARDED POST, DENIED PUT with
// 403 there, both with the tiefighter's address as source). Last, the
// gRPC door manager of examples/grpc with the public terminal on another
// node (grpc-go): GetName and RequestMaintenance OK, SetAccessCode
// PERMISSION_DENIED from the door manager's node.
package multinode
