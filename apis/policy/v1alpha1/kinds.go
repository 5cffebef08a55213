package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The names of the three policy kinds.
const (
	TrafficPolicyKind        = "TrafficPolicy"
	ClusterTrafficPolicyKind = "ClusterTrafficPolicy"
	AdminTrafficPolicyKind   = "AdminTrafficPolicy"
)

// Policy is what the three policy kinds share: an API object with a
// PolicyStatus. The engine compiles a Policy, the operator writes its
// status, the agent reports on it.
// +kubebuilder:object:generate=false
type Policy interface {
	metav1.Object
	runtime.Object
	// PolicyStatus returns the object's status for the caller to read or
	// fill in.
	PolicyStatus() *PolicyStatus
}

// PolicyList is a list of policies of one kind.
// +kubebuilder:object:generate=false
type PolicyList interface {
	metav1.ListInterface
	runtime.Object
	// Policies returns pointers to the list's items.
	Policies() []Policy
}

// Kind describes one policy kind to code that handles every kind alike
// (the operator's and the agent's reconcilers, the loader).
// +kubebuilder:object:generate=false
type Kind struct {
	// Name is the API kind, e.g. "TrafficPolicy".
	Name string
	// Namespaced is true for a kind whose objects live in a namespace.
	Namespaced bool
	// New returns an empty object of the kind.
	New func() Policy
	// NewList returns an empty list of the kind.
	NewList func() PolicyList
}

// GroupVersionKind returns the kind's API group, version and kind.
func (k Kind) GroupVersionKind() schema.GroupVersionKind { return GroupVersion.WithKind(k.Name) }

// Kinds lists the policy kinds, namespaced first, then by tier.
var Kinds = []Kind{
	kindOf[TrafficPolicy, TrafficPolicyList](TrafficPolicyKind, true),
	kindOf[ClusterTrafficPolicy, ClusterTrafficPolicyList](ClusterTrafficPolicyKind, false),
	kindOf[AdminTrafficPolicy, AdminTrafficPolicyList](AdminTrafficPolicyKind, false),
}

// KindOf returns the Kind named name, and false if there is none.
func KindOf(name string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// kindOf builds a Kind from the object and list types, so that the table
// above cannot pair a kind with another kind's list.
func kindOf[T, L any, PT interface {
	*T
	Policy
}, PL interface {
	*L
	PolicyList
}](name string, namespaced bool) Kind {
	return Kind{
		Name:       name,
		Namespaced: namespaced,
		New:        func() Policy { return PT(new(T)) },
		NewList:    func() PolicyList { return PL(new(L)) },
	}
}

// policies returns pointers to the items of a list.
func policies[T any, PT interface {
	*T
	Policy
}](items []T) []Policy {
	out := make([]Policy, len(items))
	for i := range items {
		out[i] = PT(&items[i])
	}
	return out
}

// PolicyStatus implements Policy.
func (p *TrafficPolicy) PolicyStatus() *PolicyStatus { return &p.Status }

// PolicyStatus implements Policy.
func (p *ClusterTrafficPolicy) PolicyStatus() *PolicyStatus { return &p.Status }

// PolicyStatus implements Policy.
func (p *AdminTrafficPolicy) PolicyStatus() *PolicyStatus { return &p.Status }

// Policies implements PolicyList.
func (l *TrafficPolicyList) Policies() []Policy { return policies(l.Items) }

// Policies implements PolicyList.
func (l *ClusterTrafficPolicyList) Policies() []Policy { return policies(l.Items) }

// Policies implements PolicyList.
func (l *AdminTrafficPolicyList) Policies() []Policy { return policies(l.Items) }
