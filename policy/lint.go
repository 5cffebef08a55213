package policy

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Warning is something in a valid policy that is almost always a mistake.
type Warning struct {
	// Field is the path of the field, such as "spec.ingress[0].fromEndpoints".
	Field   string
	Message string
}

func (w Warning) String() string { return w.Field + ": " + w.Message }

// Lint returns the warnings for a policy object: today, peer lists that
// are present but empty (fromEndpoints: []). Such a list selects no peer,
// so its rule allows or denies nothing while still putting the endpoint
// in default deny; the author usually meant to leave the field out, which
// selects every peer. Objects of other kinds have no warnings.
func Lint(obj runtime.Object) []Warning {
	var one *v1alpha1.Rule
	var many []v1alpha1.Rule
	switch p := obj.(type) {
	case *v1alpha1.TrafficPolicy:
		one, many = p.Spec, p.Specs
	case *v1alpha1.ClusterTrafficPolicy:
		one, many = p.Spec, p.Specs
	default:
		return nil
	}
	var out []Warning
	if one != nil {
		out = append(out, lintRule(one, field.NewPath("spec"))...)
	}
	for i := range many {
		out = append(out, lintRule(&many[i], field.NewPath("specs").Index(i))...)
	}
	return out
}

type peerList struct {
	name    string
	present bool
	n       int
}

func lintRule(r *v1alpha1.Rule, fld *field.Path) []Warning {
	var out []Warning
	check := func(p *field.Path, dir string, lists []peerList) {
		for _, l := range lists {
			if l.present && l.n == 0 {
				out = append(out, Warning{Field: p.Child(l.name).String(),
					Message: "an empty peer list selects no peer: the rule matches nothing, and the endpoint is still in default deny for " + dir + "; leave the field out to select every peer"})
			}
		}
	}
	ingress := func(c *v1alpha1.IngressCommonRule) []peerList {
		return []peerList{
			{"fromEndpoints", c.FromEndpoints != nil, len(c.FromEndpoints)},
			{"fromCIDR", c.FromCIDR != nil, len(c.FromCIDR)},
			{"fromCIDRSet", c.FromCIDRSet != nil, len(c.FromCIDRSet)},
			{"fromEntities", c.FromEntities != nil, len(c.FromEntities)},
		}
	}
	egress := func(c *v1alpha1.EgressCommonRule) []peerList {
		return []peerList{
			{"toEndpoints", c.ToEndpoints != nil, len(c.ToEndpoints)},
			{"toCIDR", c.ToCIDR != nil, len(c.ToCIDR)},
			{"toCIDRSet", c.ToCIDRSet != nil, len(c.ToCIDRSet)},
			{"toEntities", c.ToEntities != nil, len(c.ToEntities)},
			{"toServices", c.ToServices != nil, len(c.ToServices)},
		}
	}
	for i := range r.Ingress {
		check(fld.Child("ingress").Index(i), "ingress", ingress(&r.Ingress[i].IngressCommonRule))
	}
	for i := range r.IngressDeny {
		check(fld.Child("ingressDeny").Index(i), "ingress", ingress(&r.IngressDeny[i].IngressCommonRule))
	}
	for i := range r.Egress {
		er := &r.Egress[i]
		lists := append(egress(&er.EgressCommonRule), peerList{"toFQDNs", er.ToFQDNs != nil, len(er.ToFQDNs)})
		check(fld.Child("egress").Index(i), "egress", lists)
	}
	for i := range r.EgressDeny {
		check(fld.Child("egressDeny").Index(i), "egress", egress(&r.EgressDeny[i].EgressCommonRule))
	}
	return out
}
