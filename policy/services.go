package policy

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Service is a Kubernetes Service as toServices needs it.
type Service struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// Backends are the addresses of its endpoints.
	Backends []netip.Addr
}

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

// UpsertService sets a Service's backends, for toServices.
func (r *Repository) UpsertService(svc *Service) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	r.services[svc.Namespace+"/"+svc.Name] = svc
	r.refreshDynamicLocked(func(d *dynamicSelector) bool { return d.service != nil })
}

// DeleteService removes a Service.
func (r *Repository) DeleteService(namespace, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	delete(r.services, namespace+"/"+name)
	r.refreshDynamicLocked(func(d *dynamicSelector) bool { return d.service != nil })
}
