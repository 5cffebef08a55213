// Package v1alpha1 holds the policy.portcullis.dev/v1alpha1 API: TrafficPolicy
// and ClusterTrafficPolicy, whose rules are field-for-field Cilium's
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy rules, and
// AdminTrafficPolicy, the Admin/Baseline delegation tier modelled on
// Kubernetes' AdminNetworkPolicy.
//
// +kubebuilder:object:generate=true
// +groupName=policy.portcullis.dev
package v1alpha1
