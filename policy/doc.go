// Package policy is Portcullis' policy engine: it turns TrafficPolicy,
// ClusterTrafficPolicy and AdminTrafficPolicy objects, with the pods,
// namespaces and services they refer to, into per-endpoint map state — the
// (direction, peer identity, protocol, port range) → allow / deny /
// redirect-with-L7-rules entries that the agent writes into BPF maps — and
// explains single verdicts for `portcullis policy trace`.
//
// The package is pure: it has no Kubernetes client and touches no kernel,
// so it can be tested and fuzzed alone. Semantics follow Cilium's network
// policy (see docs/architecture.md); evaluation of one direction of one
// flow is:
//
//  1. the Admin tier, by ascending priority, first matching rule wins
//     (Allow, Deny, or Pass to step 2);
//  2. the namespace tier (TrafficPolicy, ClusterTrafficPolicy): a matching
//     deny denies; a matching allow allows (with the union of its L7 rules;
//     an L4-only allow that matches too makes HTTP and Kafka rules moot,
//     but not DNS rules or serverNames); an endpoint selected in that
//     direction by a default-deny rule denies the rest;
//  3. the Baseline tier, first matching rule wins;
//  4. the enforcement mode: default allows, always denies; never skips
//     all of the above.
//
// Ports name TCP, UDP, SCTP (ANY is the three), or VRRP (IP protocol 112)
// and IGMP (2), which have no ports, as in Cilium 1.18: a rule naming one
// covers the whole protocol, and its map state is one run that the
// datapath looks up as port 0. See docs/design/evaluation.md.
package policy
