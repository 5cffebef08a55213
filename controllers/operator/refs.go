package operator

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// SecretRef is a secret that a policy refers to, with its namespace
// defaulted to the policy's.
type SecretRef struct {
	Namespace string
	Name      string
	// Path is the first field that refers to the secret.
	Path *field.Path
}

// Key is "namespace/name".
func (r SecretRef) Key() string { return r.Namespace + "/" + r.Name }

// PolicyRefs returns the distinct secret references of a policy, sorted by
// key: terminatingTLS and originatingTLS secrets and headerMatches
// secrets. A cluster-scoped policy has no namespace to default to, so a
// reference without one is returned as a field error and left out.
func PolicyRefs(obj client.Object) ([]SecretRef, field.ErrorList) {
	w := refWalker{ns: obj.GetNamespace(), seen: map[string]bool{}}
	switch p := obj.(type) {
	case *v1alpha1.TrafficPolicy:
		w.rules(p.Spec, p.Specs)
	case *v1alpha1.ClusterTrafficPolicy:
		w.rules(p.Spec, p.Specs)
	case *v1alpha1.AdminTrafficPolicy:
		for i := range p.Spec.Ingress {
			w.l7(p.Spec.Ingress[i].Rules, field.NewPath("spec", "ingress").Index(i).Child("rules"))
		}
		for i := range p.Spec.Egress {
			w.l7(p.Spec.Egress[i].Rules, field.NewPath("spec", "egress").Index(i).Child("rules"))
		}
	}
	sort.Slice(w.refs, func(i, j int) bool { return w.refs[i].Key() < w.refs[j].Key() })
	return w.refs, w.errs
}

type refWalker struct {
	ns   string
	seen map[string]bool
	refs []SecretRef
	errs field.ErrorList
}

func (w *refWalker) rules(one *v1alpha1.Rule, many []v1alpha1.Rule) {
	if one != nil {
		w.rule(one, field.NewPath("spec"))
	}
	for i := range many {
		w.rule(&many[i], field.NewPath("specs").Index(i))
	}
}

func (w *refWalker) rule(r *v1alpha1.Rule, fld *field.Path) {
	for i := range r.Ingress {
		w.ports(r.Ingress[i].ToPorts, fld.Child("ingress").Index(i).Child("toPorts"))
	}
	for i := range r.Egress {
		w.ports(r.Egress[i].ToPorts, fld.Child("egress").Index(i).Child("toPorts"))
	}
}

func (w *refWalker) ports(prs []v1alpha1.PortRule, fld *field.Path) {
	for i := range prs {
		pr := &prs[i]
		p := fld.Index(i)
		if t := pr.TerminatingTLS; t != nil {
			w.add(t.Secret, p.Child("terminatingTLS", "secret"))
		}
		if t := pr.OriginatingTLS; t != nil {
			w.add(t.Secret, p.Child("originatingTLS", "secret"))
		}
		w.l7(pr.Rules, p.Child("rules"))
	}
}

func (w *refWalker) l7(r *v1alpha1.L7Rules, fld *field.Path) {
	if r == nil {
		return
	}
	for i := range r.HTTP {
		for j := range r.HTTP[i].HeaderMatches {
			w.add(r.HTTP[i].HeaderMatches[j].Secret, fld.Child("http").Index(i).Child("headerMatches").Index(j).Child("secret"))
		}
	}
}

func (w *refWalker) add(s *v1alpha1.Secret, fld *field.Path) {
	if s == nil || s.Name == "" {
		return // the engine reports a missing name
	}
	ns := s.Namespace
	if ns == "" {
		ns = w.ns
	}
	if ns == "" {
		w.errs = append(w.errs, field.Required(fld.Child("namespace"), "a cluster-scoped policy must name the secret's namespace"))
		return
	}
	ref := SecretRef{Namespace: ns, Name: s.Name, Path: fld}
	if w.seen[ref.Key()] {
		return
	}
	w.seen[ref.Key()] = true
	w.refs = append(w.refs, ref)
}

// ReferenceGrant's "from" group for policies, and the "to" kind.
const (
	grantFromGroup = "policy.portcullis.dev"
	grantToKind    = "Secret"
)

// grants decides whether a policy may use a secret in another namespace.
type grants struct {
	reader client.Reader
	// enabled is false when the ReferenceGrant API is not installed: then
	// only same-namespace references are permitted.
	enabled bool
}

// permitted reports whether a policy of kind in namespace fromNS ("" for
// the cluster-scoped kinds) may use ref. The same namespace is always
// permitted. Otherwise a ReferenceGrant in ref's namespace must list
// {group: policy.portcullis.dev, kind, namespace: fromNS} in from and
// {group: "", kind: Secret, name: ref's name or unset} in to. A
// cluster-scoped policy has no namespace of its own; ReferenceGrant
// requires one in from, so such a grant names the grant's own namespace.
func (g *grants) permitted(ctx context.Context, kind, fromNS string, ref SecretRef) (bool, string, error) {
	if fromNS != "" && fromNS == ref.Namespace {
		return true, "", nil
	}
	if !g.enabled {
		return false, fmt.Sprintf("secret %s is in another namespace and the ReferenceGrant API (gateway.networking.k8s.io/v1beta1) is not installed", ref.Key()), nil
	}
	var list gatewayv1beta1.ReferenceGrantList
	if err := g.reader.List(ctx, &list, client.InNamespace(ref.Namespace)); err != nil {
		return false, "", fmt.Errorf("listing ReferenceGrants in %s: %w", ref.Namespace, err)
	}
	wantNS := fromNS
	if wantNS == "" {
		wantNS = ref.Namespace
	}
	for i := range list.Items {
		if grantAllows(&list.Items[i].Spec, kind, wantNS, ref.Name) {
			return true, "", nil
		}
	}
	return false, fmt.Sprintf("no ReferenceGrant in namespace %s allows %s from namespace %q to use secret %s", ref.Namespace, kind, wantNS, ref.Name), nil
}

func grantAllows(spec *gatewayv1beta1.ReferenceGrantSpec, kind, fromNS, name string) bool {
	from := false
	for _, f := range spec.From {
		if string(f.Group) == grantFromGroup && string(f.Kind) == kind && string(f.Namespace) == fromNS {
			from = true
			break
		}
	}
	if !from {
		return false
	}
	for _, t := range spec.To {
		if string(t.Group) == "" && string(t.Kind) == grantToKind && (t.Name == nil || string(*t.Name) == name) {
			return true
		}
	}
	return false
}
