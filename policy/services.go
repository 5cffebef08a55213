package policy

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy/l7"
)

// serviceRef is a compiled toServices entry: one Service by name, or the
// Services of a namespace (any, if empty) whose labels match a selector.
type serviceRef struct {
	namespace string
	name      string
	selector  *labelSelector
}

func (s *serviceRef) String() string {
	if s.selector != nil {
		return s.namespace + "/" + s.selector.Key()
	}
	return s.namespace + "/" + s.name
}

func (s *serviceRef) selects(svc *Service) bool {
	if s.selector == nil {
		return svc.Namespace == s.namespace && svc.Name == s.name
	}
	if s.namespace != "" && svc.Namespace != s.namespace {
		return false
	}
	ls := Labels{}
	for k, v := range svc.Labels {
		ls.Add(SourceK8s, k, v)
	}
	return s.selector.matches(nil, &Identity{Labels: ls})
}

func compileServiceRef(svc v1alpha1.Service, policyNS string, fld *field.Path) (*serviceRef, field.ErrorList) {
	switch {
	case svc.K8sService != nil && svc.K8sServiceSelector != nil:
		return nil, field.ErrorList{field.Invalid(fld, "", "exactly one of k8sService and k8sServiceSelector")}
	case svc.K8sService != nil:
		ns := svc.K8sService.Namespace
		if ns == "" {
			ns = policyNS
		}
		if ns == "" {
			return nil, field.ErrorList{field.Required(fld.Child("k8sService", "namespace"), "a cluster-wide policy must name the service's namespace")}
		}
		return &serviceRef{namespace: ns, name: svc.K8sService.ServiceName}, nil
	case svc.K8sServiceSelector != nil:
		ns := svc.K8sServiceSelector.Namespace
		if ns == "" {
			ns = policyNS
		}
		sel, errs := compileLabelSelector(&svc.K8sServiceSelector.Selector.LabelSelector, "", fld.Child("k8sServiceSelector", "selector"))
		return &serviceRef{namespace: ns, selector: sel}, errs
	}
	return nil, field.ErrorList{field.Required(fld, "exactly one of k8sService and k8sServiceSelector")}
}

// compileFQDN compiles a toFQDNs selector; key is its canonical form.
func compileFQDN(f v1alpha1.FQDNSelector, fld *field.Path) (nameMatcher, string, field.ErrorList) {
	m, errs := l7.CompileFQDN(f, fld)
	if len(errs) > 0 || m == nil {
		return nil, "", errs
	}
	return m, m.String(), nil
}
