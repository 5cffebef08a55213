package policy

import (
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy/l7"
)

// compileFQDN compiles a toFQDNs selector; key is its canonical form.
func compileFQDN(f v1alpha1.FQDNSelector, fld *field.Path) (nameMatcher, string, field.ErrorList) {
	m, errs := l7.CompileFQDN(f, fld)
	if len(errs) > 0 || m == nil {
		return nil, "", errs
	}
	return m, m.String(), nil
}

// ObserveDNS records the addresses a DNS answer gave for a name, for
// toFQDNs selectors. An empty list forgets the name.
func (r *Repository) ObserveDNS(name string, ips []netip.Addr) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revision++
	if len(ips) == 0 {
		delete(r.fqdn, name)
	} else {
		r.fqdn[name] = append([]netip.Addr(nil), ips...)
	}
	r.refreshDynamicLocked(func(d *dynamicSelector) bool { return d.fqdn != nil && d.fqdn.Match(name) })
}
