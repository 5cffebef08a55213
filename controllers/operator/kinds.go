package operator

import (
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// Kind describes one policy kind to the generic reconcilers.
type Kind struct {
	// Name is the API kind, e.g. "TrafficPolicy".
	Name       string
	newObject  func() client.Object
	newList    func() client.ObjectList
	items      func(client.ObjectList) []client.Object
	status     func(client.Object) *v1alpha1.PolicyStatus
	compile    func(client.Object) field.ErrorList
	namespaced bool
}

// The three policy kinds.
var (
	TrafficPolicyKind = Kind{
		Name:       "TrafficPolicy",
		namespaced: true,
		newObject:  func() client.Object { return &v1alpha1.TrafficPolicy{} },
		newList:    func() client.ObjectList { return &v1alpha1.TrafficPolicyList{} },
		items: func(l client.ObjectList) []client.Object {
			ls := l.(*v1alpha1.TrafficPolicyList).Items
			out := make([]client.Object, len(ls))
			for i := range ls {
				out[i] = &ls[i]
			}
			return out
		},
		status: func(o client.Object) *v1alpha1.PolicyStatus { return &o.(*v1alpha1.TrafficPolicy).Status },
		compile: func(o client.Object) field.ErrorList {
			_, errs := policy.CompileTrafficPolicy(o.(*v1alpha1.TrafficPolicy), compileOptions)
			return errs
		},
	}
	ClusterTrafficPolicyKind = Kind{
		Name:      "ClusterTrafficPolicy",
		newObject: func() client.Object { return &v1alpha1.ClusterTrafficPolicy{} },
		newList:   func() client.ObjectList { return &v1alpha1.ClusterTrafficPolicyList{} },
		items: func(l client.ObjectList) []client.Object {
			ls := l.(*v1alpha1.ClusterTrafficPolicyList).Items
			out := make([]client.Object, len(ls))
			for i := range ls {
				out[i] = &ls[i]
			}
			return out
		},
		status: func(o client.Object) *v1alpha1.PolicyStatus { return &o.(*v1alpha1.ClusterTrafficPolicy).Status },
		compile: func(o client.Object) field.ErrorList {
			_, errs := policy.CompileClusterTrafficPolicy(o.(*v1alpha1.ClusterTrafficPolicy), compileOptions)
			return errs
		},
	}
	AdminTrafficPolicyKind = Kind{
		Name:      "AdminTrafficPolicy",
		newObject: func() client.Object { return &v1alpha1.AdminTrafficPolicy{} },
		newList:   func() client.ObjectList { return &v1alpha1.AdminTrafficPolicyList{} },
		items: func(l client.ObjectList) []client.Object {
			ls := l.(*v1alpha1.AdminTrafficPolicyList).Items
			out := make([]client.Object, len(ls))
			for i := range ls {
				out[i] = &ls[i]
			}
			return out
		},
		status: func(o client.Object) *v1alpha1.PolicyStatus { return &o.(*v1alpha1.AdminTrafficPolicy).Status },
		compile: func(o client.Object) field.ErrorList {
			_, errs := policy.CompileAdminTrafficPolicy(o.(*v1alpha1.AdminTrafficPolicy), compileOptions)
			return errs
		},
	}

	// Kinds lists the three policy kinds.
	Kinds = []Kind{TrafficPolicyKind, ClusterTrafficPolicyKind, AdminTrafficPolicyKind}
)

// compileOptions validate without reading secrets: header-match secret
// values are the agents' business (they read the copies in the secrets
// namespace); whether a reference may be used is ResolvedRefs.
var compileOptions = policy.Options{Secrets: placeholderSecrets{}}

type placeholderSecrets struct{}

func (placeholderSecrets) Resolve(_, _ string) (string, error) { return "<secret>", nil }
