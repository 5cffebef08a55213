// Package operator holds the Portcullis operator's reconcilers.
//
// [PolicyReconciler] (one per kind: TrafficPolicy, ClusterTrafficPolicy,
// AdminTrafficPolicy) validates a policy with the engine, resolves its
// secret references and derives its status. [SecretSyncReconciler] copies
// each secret that a policy may use into the secrets namespace. [Setup]
// wires both into a controller-runtime manager; cmd/portcullis-operator
// adds leader election (the Lease portcullis-operator.policy.portcullis.dev
// in the system namespace, released on shutdown), /healthz and /readyz,
// metrics (HTTPS with TokenReview/SubjectAccessReview checks unless
// --metrics-secure=false) and graceful shutdown on SIGTERM.
//
// # Status
//
// For the current metadata.generation (also written to
// status.observedGeneration and to each condition's observedGeneration):
//
//   - Accepted: True/Accepted when the engine compiled it; False/Invalid
//     with the engine's field errors (regexes and their size, CIDR except,
//     selectors, named ports, Kafka key names, TLS combinations, a
//     cluster-scoped policy's secret reference without a namespace), paths
//     as in the spec — everything CEL cannot check.
//   - ResolvedRefs: True when every secret reference is permitted and the
//     secret exists; False/RefNotPermitted (another namespace and no
//     ReferenceGrant allows it) or False/SecretNotFound.
//   - Programmed: True when every live agent has this generation in force;
//     False/Pending (naming who is missing, or "no agent has reported"),
//     False/Invalid when not accepted.
//
// A refused secret reference does not make the policy unaccepted: the
// agents still enforce it, and the port rule that needs the secret fails
// closed in the proxy. Withdrawing the whole policy instead could leave its
// endpoints without any selecting policy, i.e. default-allow. Status is
// written with a merge patch under the field manager portcullis-operator,
// and only when something changed. Events (events.k8s.io, reporting
// controller portcullis-operator) are emitted only when a condition changes
// status or reason: Normal Accepted, Warning Invalid, Warning
// RefNotPermitted/SecretNotFound, Normal ResolvedRefs (after a failure),
// Normal Programmed.
//
// # The agents' reporting contract
//
//  1. Liveness: each node agent holds the Lease portcullis-agent-<node> in
//     the system namespace (holderIdentity the node, leaseDurationSeconds,
//     renewed well within it). An agent counts as live while renewTime +
//     leaseDurationSeconds is in the future. The operator polls its Lease
//     cache every 2 s and re-evaluates every policy only when the set of
//     live agents changes (expiry is not an API event; renewals cause no
//     work).
//  2. Reports: for each policy, the agent server-side-applies its own
//     entry of status.nodes (listType=map, key name) on the status
//     subresource with the field manager portcullis-agent/<node>:
//     {name: <node>, observedGeneration: <generation in force>, message:
//     <why a newer generation is not in force, else empty>}. Each agent
//     owns its entry only, so agents never conflict and the operator's
//     patches never touch the list. An agent reports after the generation
//     is in its BPF maps (or could not be, with message).
//  3. Programmed is True iff there is at least one live agent and every
//     live agent's entry has observedGeneration >= metadata.generation.
//     Entries of agents that are not live are ignored (not pruned).
//
// Scale: one small entry per node per policy (about 100 bytes: 5000 nodes
// ≈ 0.5 MB, within etcd's object limit; maxItems 5000); each agent writes
// only when a policy's generation changes on its node. In RBAC it is patch
// on <kind>/status for the agent, nothing else.
//
// # Secret sync
//
// Secrets that policies refer to (terminatingTLS, originatingTLS,
// headerMatches[].secret) are copied into the secrets namespace, and
// agents read only the copies (their RBAC allows nothing else). A
// reference is permitted when the secret is in the policy's own namespace,
// or a Gateway API ReferenceGrant (gateway.networking.k8s.io/v1beta1) in
// the secret's namespace has from: {group: policy.portcullis.dev, kind:
// <the policy's kind>, namespace: <the policy's namespace>} and to:
// {group: "", kind: Secret, name: <the secret, or unset for all>}. The
// cluster-scoped kinds have no namespace, while ReferenceGrant requires one
// in from: for them, from.namespace is the grant's (and secret's) own
// namespace, and the reference must name the namespace. Without the
// ReferenceGrant CRD only same-namespace references are permitted
// (installing it needs an operator restart).
//
// The copy of <ns>/<name> is <secrets namespace>/<ns>.<name> (a hash
// suffix when that exceeds 253 characters; [SecretCopyName]), labelled
// app.kubernetes.io/managed-by: portcullis-operator and
// policy.portcullis.dev/source-namespace, annotated with the source's
// namespace and name (policy.portcullis.dev/source-name), with the
// source's type and data. The reconciler is keyed by the source secret and
// is level-based: a copy exists iff the source exists and at least one
// policy (of any kind) refers to it with a permitted reference. It runs on
// source changes (rotation), copy changes (an edited or deleted copy is
// restored), policy changes (old and new references) and ReferenceGrant
// changes. A secret in the secrets namespace that is not the operator's
// copy is never overwritten.
//
// # RBAC
//
// `make manifests` generates config/rbac/role.yaml from the markers in
// this package (ClusterRole: read secrets, policies, ReferenceGrants,
// patch policy status, create events; Role in the secrets namespace: write
// secrets; Role in the system namespace: leases) and
// config/rbac/agent_role.yaml from controllers/agent's markers. The
// controller-gen runs are separate (one per role) so the markers do not
// merge. portcullis-policy-edit (TrafficPolicy write) aggregates into admin
// and edit, portcullis-policy-view (TrafficPolicy read) into admin, edit
// and view: whoever administers or edits a namespace manages its
// TrafficPolicies. ClusterTrafficPolicy and AdminTrafficPolicy are in no
// aggregated role.
//
// # Tests
//
// envtest with a real kube-apiserver and etcd from KUBEBUILDER_ASSETS, one
// per package: Accepted/Invalid with field paths and observedGeneration,
// transition-only Events, the reporting contract with simulated agents
// (Leases and server-side apply from their own field managers), secret
// sync with and without (and with non-matching) ReferenceGrants, rotation,
// restore, cleanup, cluster-scoped references, and RBAC by
// SubjectAccessReview against the apiserver's RBAC authorizer. envtest runs
// no kube-controller-manager, so the test performs the clusterrole
// aggregation itself (union of the rules of the selected ClusterRoles)
// before asking.
package operator
