package policy

import (
	"net/netip"
	"sort"
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

// FQDNSelectors lists, sorted, the toFQDNs selectors (canonical forms)
// that the rules of the endpoints with identity subject use as egress
// peers and that match name: what a DNS answer for name teaches that
// endpoint's policy. Nil when none does (the answer teaches nothing).
func (r *Repository) FQDNSelectors(subject NumericIdentity, name string) []string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.subjects[subject]
	if st == nil {
		return nil
	}
	var out []string
	for _, cs := range st.dirs[Egress].peerSels {
		if d, ok := cs.sel.(*dynamicSelector); ok && d.fqdn != nil && d.fqdn.Match(name) {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(d.key, "fqdn{"), "}"))
		}
	}
	sort.Strings(out)
	return out
}
