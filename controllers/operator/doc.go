// Package operator holds the Portcullis operator's reconcilers.
//
// [PolicyReconciler] (one per kind: TrafficPolicy, ClusterTrafficPolicy,
// AdminTrafficPolicy) validates a policy with the engine, resolves its
// secret references and derives its status: Accepted (the engine's
// checks, everything CEL cannot check), ResolvedRefs (secret references
// permitted and present) and Programmed (every live node agent reports
// the current generation in status.nodes). Events are emitted on
// condition transitions only.
//
// [SecretSyncReconciler] copies each secret that a policy may use into
// the secrets namespace and deletes copies nobody refers to any more; a
// reference into another namespace needs a Gateway API ReferenceGrant
// (gateway.networking.k8s.io/v1beta1) in that namespace.
//
// [Setup] wires both into a controller-runtime manager. The RBAC markers
// in this package generate config/rbac/role.yaml (make manifests).
package operator
