// Package policy is Portcullis' policy engine: it turns TrafficPolicy,
// ClusterTrafficPolicy and AdminTrafficPolicy objects, with the pods,
// namespaces and services they refer to, into per-endpoint map state — the
// (direction, peer identity, protocol, port range) → allow / deny /
// redirect-with-L7-rules entries that the agent writes into BPF maps — and
// explains single verdicts for `portcullis policy trace`.
//
// The package is pure: it has no Kubernetes client and touches no kernel,
// so it can be tested and fuzzed alone. The agent and the CLI drive the
// same [Repository]. Semantics follow Cilium's network policy.
//
// # Evaluation
//
// One direction of one flow is decided by one function (decide, used by
// the map state, trace, the agent and the proxy alike; the full rules,
// with the Cilium quotes behind them, are in docs/design/evaluation.md):
//
//  1. the Admin tier, by ascending priority (then name), first matching
//     rule wins (Allow — a redirect if it carries L7 rules —, Deny, or
//     Pass to step 2);
//  2. the namespace tier (TrafficPolicy, ClusterTrafficPolicy): a matching
//     deny denies; a matching allow allows (with the union of its L7 rules;
//     an L4-only allow that matches too makes HTTP and Kafka rules moot,
//     but not DNS rules or serverNames; two L7 protocols on one port and
//     peer fail closed); an endpoint selected in that direction by a
//     default-deny rule (an ingress/ingressDeny section, unless
//     enableDefaultDeny says false) denies the rest;
//  3. the Baseline tier, first matching rule wins;
//  4. the enforcement mode: default allows, always denies; never skips
//     all of the above. Audit (global, per namespace through the
//     annotation policy.portcullis.dev/audit-mode: "true", per endpoint)
//     reports a deny as AUDITED and lets the flow pass.
//
// An empty rule (ingress: [{}]) selects the endpoint without allowing
// anything; a rule with ports and no peers allows every peer on them; port
// 0 means every port; protocol ANY means TCP, UDP and SCTP; ICMP rules
// match ICMP (or ICMPv6) with the type in the port field, as Cilium's
// datapath does; VRRP and IGMP (Cilium 1.18) have no ports, their rules
// cover the whole port space and the datapath looks them up as port 0.
//
// # Identities
//
// A pod's identity labels are its labels (minus per-replica ones such as
// pod-template-hash), io.kubernetes.pod.namespace, its namespace's labels
// as io.cilium.k8s.namespace.labels.<key>, its service account as
// io.cilium.k8s.policy.serviceaccount and io.cilium.k8s.policy.cluster=default,
// all with source k8s. Equal label sets share one numeric identity (from
// 256). Reserved identities keep Cilium's numbers (host 1, world 2,
// unmanaged 3, health 4, init 5, remote-node 6, kube-apiserver 7,
// ingress 8). Every prefix a policy names (a toCIDR, an except, an address
// learnt for toFQDNs, an external service backend) gets a CIDR identity
// (from 2^24) labelled reserved:world, so an address outside the cluster
// takes the identity of the longest named prefix holding it, else world —
// the ipcache's longest-prefix match. Nodes ([Repository.UpsertNode]):
// this node's addresses are the reserved identity host, other nodes'
// remote-node.
//
// # Selectors
//
// Selector keys may carry Cilium's source prefix (k8s:, any:, reserved:);
// k8s:app and app match the same pod label. As in Cilium, a namespaced
// policy's endpointSelector only selects its own namespace, and a peer
// selector that names no namespace (neither io.kubernetes.pod.namespace
// nor a namespace label) means the policy's namespace; in a cluster-wide
// policy such a selector means "any pod", never reserved identities.
// Entities map to reserved labels (cluster adds every pod of the cluster;
// all is everything). CIDR selectors select CIDR identities inside the
// prefix and outside every exception; they never select pods. toFQDNs and
// toServices selectors are resolved from DNS answers ([Repository.ObserveDNS])
// and Service backends ([Repository.UpsertService]).
//
// Selectors are interned in a selector cache: one instance per canonical
// key with the set of identities it selects, shared by every rule that
// uses it (rules hold pointers to the cached instance).
//
// # Map state
//
// For each local endpoint identity and direction the engine computes
// entries keyed by (peer identity, protocol, port range) with a verdict
// (allow, deny, redirect), the deciding rule and, for redirects, the
// merged l7.Policy. It does so by evaluating the decision function, not by
// a second set of precedence rules: the port space of each protocol is cut
// at every boundary a rule names, each segment is decided, and equal
// neighbours are merged. Identities that only universal selectors select
// share the wildcard entry set (identity 0); an identity that some specific
// selector selects gets its own complete entry set only if its verdicts
// differ. The datapath's lookup is therefore simple and exact: the peer's
// own entries if it has any, else the wildcard ones; within them the
// protocol's port range, else the entry for every protocol. A property
// test over random policies checks that this lookup ([MapState.Lookup])
// equals the decision function for every identity, protocol and boundary
// port, and that incremental updates end in the same state as a build from
// scratch.
//
// # Incremental updates
//
// A policy change recomputes only the endpoint identities its subject
// selectors select (before and after). A new identity (a pod with a new
// label set, or a pod whose namespace labels changed) is matched once
// against every cached selector; each endpoint whose rules use a selector
// that now selects it recomputes the entries of that one peer. Endpoints
// sharing an identity share one computed state. Costs are in
// docs/benchmarks.md.
//
// # Simplifications
//
// Named ports are resolved against the union of the cluster's container
// ports of that name (Cilium does this for egress; for ingress it uses the
// endpoint's own, which only differs when one name maps to different
// numbers on different pods). Host policies (nodeSelector) are refused
// until the datapath has host endpoints. A Kafka rule with a topic allows
// topic-less requests of its API keys (heartbeat, join group, a metadata
// request for all topics), as Cilium does. The engine has no "remote pod"
// entry point: the agent feeds pods of other nodes as endpoints too, and
// their map state is computed but never written.
package policy
