package loader

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Objects returns the objects of all documents, in order.
func (r *Result) Objects() []runtime.Object {
	out := make([]runtime.Object, 0, len(r.Documents))
	for _, d := range r.Documents {
		out = append(out, d.Object)
	}
	return out
}

// TrafficPolicies returns the TrafficPolicies, converted
// CiliumNetworkPolicies included, in order.
func (r *Result) TrafficPolicies() []*v1alpha1.TrafficPolicy {
	return collect[*v1alpha1.TrafficPolicy](r)
}

// ClusterTrafficPolicies returns the ClusterTrafficPolicies, converted
// CiliumClusterwideNetworkPolicies included, in order.
func (r *Result) ClusterTrafficPolicies() []*v1alpha1.ClusterTrafficPolicy {
	return collect[*v1alpha1.ClusterTrafficPolicy](r)
}

// AdminTrafficPolicies returns the AdminTrafficPolicies in order.
func (r *Result) AdminTrafficPolicies() []*v1alpha1.AdminTrafficPolicy {
	return collect[*v1alpha1.AdminTrafficPolicy](r)
}

// Namespaces returns the Namespaces in order.
func (r *Result) Namespaces() []*corev1.Namespace { return collect[*corev1.Namespace](r) }

// NamespaceLabels maps each Namespace's name to its labels, with
// kubernetes.io/metadata.name set to the name as the API server sets it.
// The maps are copies.
func (r *Result) NamespaceLabels() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, ns := range r.Namespaces() {
		l := make(map[string]string, len(ns.Labels)+1)
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[corev1.LabelMetadataName] = ns.Name
		out[ns.Name] = l
	}
	return out
}

func collect[T runtime.Object](r *Result) []T {
	var out []T
	for _, d := range r.Documents {
		if o, ok := d.Object.(T); ok {
			out = append(out, o)
		}
	}
	return out
}
