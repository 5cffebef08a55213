package operator

// Leader election: the operator's Lease in the system namespace, and the
// Events the leader elector records there.
//
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch,namespace=portcullis-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=portcullis-system
