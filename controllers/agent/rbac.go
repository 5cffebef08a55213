package agent

// The node agent's permissions: read what identities and policies are
// made of, report per-policy status, hold its Lease, and read TLS material
// ONLY in the secrets namespace (a Role there, never a ClusterRole).
//
// +kubebuilder:rbac:groups="",resources=pods;namespaces;services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.portcullis.dev,resources=trafficpolicies;clustertrafficpolicies;admintrafficpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.portcullis.dev,resources=trafficpolicies/status;clustertrafficpolicies/status;admintrafficpolicies/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch,namespace=portcullis-system
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch,namespace=portcullis-secrets
