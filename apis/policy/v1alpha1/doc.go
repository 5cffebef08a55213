// Package v1alpha1 holds the policy.portcullis.dev/v1alpha1 API: TrafficPolicy
// and ClusterTrafficPolicy, whose rules are field-for-field Cilium's
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy rules, and
// AdminTrafficPolicy, the Admin/Baseline delegation tier modelled on
// Kubernetes' AdminNetworkPolicy. Short names tp, ctp and atp, category
// portcullis; status conditions Accepted, ResolvedRefs and Programmed
// (set by the operator) and status.nodes (one entry per node agent).
//
// # Kinds
//
// TrafficPolicy and ClusterTrafficPolicy carry Cilium's rule type field for
// field (spec is one rule, specs a list), so a CiliumNetworkPolicy becomes
// a TrafficPolicy by changing apiVersion and kind; `portcullis policy
// convert` does that and refuses the Cilium fields Portcullis does not
// implement (fromRequires, toGroups, toNodes, authentication, generic
// l7proto, CIDR groups, ...) by name instead of dropping them.
//
// AdminTrafficPolicy has tier Admin or Baseline, priority 0–1000, a
// subject (namespaces or pods) and ordered ingress/egress rules with action
// Allow, Deny or Pass, peers (namespaces, pods, networks, entities), ports
// in Cilium's PortProtocol form and, on Allow, L7 rules.
//
// [Policy] is the interface the three kinds implement and [Kinds] the one
// list of them; the engine, the operator and the agent take their per-kind
// tables from it. well_known.go holds the names the operator and the agents
// agree on (namespaces, the agent Lease prefix, field managers, the audit
// annotation, the default proxy port).
//
// # What the schema checks
//
// What can be checked statically is checked by OpenAPI and CEL: one L7
// protocol per port rule, Kafka role xor apiKey, Kafka topics, ports and
// endPort, DNS rules without ranges, toFQDNs alone in its rule, Pass only
// in the Admin tier, priority bounds, exactly-one-of unions.
//
// List bounds (maxItems) keep every CEL rule inside the apiserver's cost
// budget, whose estimate multiplies a rule's cost by every enclosing list
// bound; a test runs the apiserver's CRD validation to prove it. Cilium has
// no such bounds, so a Cilium policy larger than these is refused with a
// clear error rather than accepted: at most 8 specs, 32 rules per
// ingress/egress/... section, 16 toPorts per rule and 16 ports per port
// rule, 128 toCIDR and 32 toCIDRSet entries, 128 Kafka or DNS rules per
// port.
//
// The rest (regular expressions and their size, CIDR except inside its
// cidr, label selector operators, named ports, Kafka API key names,
// TLS/serverNames combinations, headerMatches[].regex) is checked by the
// engine when it compiles a policy, with the same field paths; the
// operator reports it in the Accepted condition and `portcullis policy
// validate` prints it.
//
// # The one extension: headerMatches[].regex
//
// A regular expression the whole header value must match. Cilium's
// headers ("X-Token: v") and headerMatches[].value are literal (Envoy exact
// matches) and stay literal here, so a Cilium policy means the same; a
// pattern such as "X-Token: [0-9]+" needed a new field rather than a
// reinterpretation. regex excludes value and secret and allows only the
// mismatch actions LOG and DELETE (ADD and REPLACE would have nothing to
// set). These checks are the engine's, not CEL's: a rule on each
// headerMatches entry sits under five list bounds (about 6.7e7 entries
// under specs) and is over the apiserver's cost budget even at cost 1, so
// the apiserver accepts a bad regex and the Accepted condition reports it.
// A regex in a cilium.io policy is refused by the loader as an unknown
// field (Cilium has none), though the converted TrafficPolicy has it.
//
// +kubebuilder:object:generate=true
// +groupName=policy.portcullis.dev
package v1alpha1
