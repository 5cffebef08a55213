package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Selector selects identities. Implementations are immutable once made,
// except the stateful ones (FQDN and service selectors) whose selection the
// Repository keeps up to date; their identity is their Key.
type Selector interface {
	// Key is a canonical string: selectors with equal keys select the same.
	Key() string
	// matches reports whether the selector selects the identity.
	matches(r *Repository, id *Identity) bool
}

// requirement is one compiled label requirement.
type requirement struct {
	key    string // as written, possibly with a source prefix
	op     metav1.LabelSelectorOperator
	values []string // sorted
}

func (q requirement) matches(ls Labels) bool {
	l, ok := ls.Lookup(q.key)
	switch q.op {
	case metav1.LabelSelectorOpExists:
		return ok
	case metav1.LabelSelectorOpDoesNotExist:
		return !ok
	case metav1.LabelSelectorOpIn:
		return ok && containsSorted(q.values, l.Value)
	case metav1.LabelSelectorOpNotIn:
		return !ok || !containsSorted(q.values, l.Value)
	}
	return false
}

func containsSorted(s []string, v string) bool {
	i := sort.SearchStrings(s, v)
	return i < len(s) && s[i] == v
}

// labelSelector is an AND of label requirements; no requirement selects
// every identity.
type labelSelector struct {
	reqs []requirement // sorted by key, op
	key  string
}

func (s *labelSelector) Key() string { return s.key }

func (s *labelSelector) matches(_ *Repository, id *Identity) bool {
	for _, q := range s.reqs {
		if !q.matches(id.Labels) {
			return false
		}
	}
	return true
}

// hasKey reports whether a requirement is on key (any source prefix).
func (s *labelSelector) hasKey(key string) bool {
	for _, q := range s.reqs {
		if _, k := splitSource(q.key); k == key {
			return true
		}
	}
	return false
}

func (s *labelSelector) hasKeyPrefix(prefix string) bool {
	for _, q := range s.reqs {
		if _, k := splitSource(q.key); strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

func (s *labelSelector) hasSource(src string) bool {
	for _, q := range s.reqs {
		if s, _ := splitSource(q.key); s == src {
			return true
		}
	}
	return false
}

func (s *labelSelector) add(q requirement) *labelSelector {
	reqs := append(append([]requirement(nil), s.reqs...), q)
	return newLabelSelector(reqs)
}

func newLabelSelector(reqs []requirement) *labelSelector {
	sort.Slice(reqs, func(i, j int) bool {
		if reqs[i].key != reqs[j].key {
			return reqs[i].key < reqs[j].key
		}
		return reqs[i].op < reqs[j].op
	})
	var b strings.Builder
	b.WriteString("labels{")
	for i, q := range reqs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s %s %s", q.key, q.op, strings.Join(q.values, "|"))
	}
	b.WriteByte('}')
	return &labelSelector{reqs: reqs, key: b.String()}
}

// compileLabelSelector compiles a Kubernetes label selector; keyPrefix is
// put before every key (used for namespace-label selectors).
func compileLabelSelector(sel *metav1.LabelSelector, keyPrefix string, fld *field.Path) (*labelSelector, field.ErrorList) {
	var errs field.ErrorList
	var reqs []requirement
	if sel == nil {
		return newLabelSelector(nil), nil
	}
	for k, v := range sel.MatchLabels {
		if k == "" {
			errs = append(errs, field.Invalid(fld.Child("matchLabels"), k, "empty label key"))
			continue
		}
		reqs = append(reqs, requirement{key: keyPrefix + k, op: metav1.LabelSelectorOpIn, values: []string{v}})
	}
	for i, e := range sel.MatchExpressions {
		p := fld.Child("matchExpressions").Index(i)
		if e.Key == "" {
			errs = append(errs, field.Required(p.Child("key"), "label key is required"))
			continue
		}
		vals := append([]string(nil), e.Values...)
		sort.Strings(vals)
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(vals) == 0 {
				errs = append(errs, field.Required(p.Child("values"), fmt.Sprintf("operator %s needs values", e.Operator)))
				continue
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(vals) != 0 {
				errs = append(errs, field.Invalid(p.Child("values"), e.Values, fmt.Sprintf("operator %s takes no values", e.Operator)))
				continue
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("operator"), e.Operator, []string{"In", "NotIn", "Exists", "DoesNotExist"}))
			continue
		}
		reqs = append(reqs, requirement{key: keyPrefix + e.Key, op: e.Operator, values: vals})
	}
	return newLabelSelector(reqs), errs
}

// subjectSelector compiles an endpointSelector. A namespaced policy's
// selector is confined to the policy's namespace, as in Cilium.
func subjectSelector(sel *v1alpha1.EndpointSelector, namespace string, fld *field.Path) (*labelSelector, field.ErrorList) {
	var ls *metav1.LabelSelector
	if sel != nil {
		ls = &sel.LabelSelector
	}
	s, errs := compileLabelSelector(ls, "", fld)
	if namespace != "" {
		s = s.add(requirement{key: SourceK8s + ":" + LabelNamespace, op: metav1.LabelSelectorOpIn, values: []string{namespace}})
	} else {
		// Cluster-wide subjects are pods: identities with a namespace.
		s = s.add(requirement{key: SourceK8s + ":" + LabelNamespace, op: metav1.LabelSelectorOpExists})
	}
	return s, errs
}

// peerSelector compiles a fromEndpoints/toEndpoints selector with Cilium's
// defaulting: a selector on reserved labels is left alone; one that names
// no namespace is confined to the policy's namespace (or, cluster-wide, to
// pods), unless in a namespaced policy it selects namespaces by label.
func peerSelector(sel *v1alpha1.EndpointSelector, namespace string, fld *field.Path) (*labelSelector, field.ErrorList) {
	s, errs := compileLabelSelector(&sel.LabelSelector, "", fld)
	if s.hasSource(SourceReserved) {
		return s, errs
	}
	if s.hasKey(LabelNamespace) {
		return s, errs
	}
	if namespace == "" {
		return s.add(requirement{key: SourceK8s + ":" + LabelNamespace, op: metav1.LabelSelectorOpExists}), errs
	}
	if s.hasKeyPrefix(LabelNamespaceLabels) {
		return s, errs
	}
	return s.add(requirement{key: SourceK8s + ":" + LabelNamespace, op: metav1.LabelSelectorOpIn, values: []string{namespace}}), errs
}

// allSelector selects every identity: the entity "all" and rules that name
// ports but no peers.
type allSelector struct{}

func (allSelector) Key() string                         { return "all" }
func (allSelector) matches(*Repository, *Identity) bool { return true }

// entitySelectors returns the selectors of an entity, as Cilium defines
// them.
func entitySelectors(e v1alpha1.Entity) []Selector {
	reserved := func(names ...string) []Selector {
		out := make([]Selector, 0, len(names))
		for _, n := range names {
			out = append(out, newLabelSelector([]requirement{{key: SourceReserved + ":" + n, op: metav1.LabelSelectorOpExists}}))
		}
		return out
	}
	switch e {
	case v1alpha1.EntityAll:
		return []Selector{allSelector{}}
	case v1alpha1.EntityCluster:
		return append(reserved("host", "remote-node", "init", "health", "unmanaged", "kube-apiserver", "ingress"),
			newLabelSelector([]requirement{{key: SourceK8s + ":" + LabelCluster, op: metav1.LabelSelectorOpIn, values: []string{ClusterName}}}))
	default:
		return reserved(string(e))
	}
}

// cidrSelector selects CIDR identities whose prefix lies inside prefix and
// inside none of the exceptions. Pods are never selected by CIDR, as in
// Cilium: their addresses map to their own identities.
type cidrSelector struct {
	prefix netip.Prefix
	except []netip.Prefix
	key    string
}

func (s *cidrSelector) Key() string { return s.key }

func (s *cidrSelector) matches(_ *Repository, id *Identity) bool {
	for _, p := range id.Prefixes {
		if prefixContains(s.prefix, p) && !s.excepted(p) {
			return true
		}
	}
	return false
}

func (s *cidrSelector) excepted(p netip.Prefix) bool {
	for _, e := range s.except {
		if prefixContains(e, p) {
			return true
		}
	}
	return false
}

// prefixContains reports whether inner lies inside outer.
func prefixContains(outer, inner netip.Prefix) bool {
	return outer.Addr().Is4() == inner.Addr().Is4() && outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// ParseCIDR parses a prefix or a single address (a /32 or /128), masked.
func ParseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func newCIDRSelector(cidr v1alpha1.CIDR, except []v1alpha1.CIDR, fld *field.Path) (*cidrSelector, field.ErrorList) {
	var errs field.ErrorList
	p, err := ParseCIDR(string(cidr))
	if err != nil {
		return nil, field.ErrorList{field.Invalid(fld.Child("cidr"), cidr, err.Error())}
	}
	s := &cidrSelector{prefix: p}
	parts := []string{p.String()}
	for i, e := range except {
		ep, err := ParseCIDR(string(e))
		if err != nil {
			errs = append(errs, field.Invalid(fld.Child("except").Index(i), e, err.Error()))
			continue
		}
		if !prefixContains(p, ep) {
			errs = append(errs, field.Invalid(fld.Child("except").Index(i), e, fmt.Sprintf("must lie inside %s", p)))
			continue
		}
		s.except = append(s.except, ep)
		parts = append(parts, "!"+ep.String())
	}
	sort.Strings(parts[1:])
	s.key = "cidr{" + strings.Join(parts, ",") + "}"
	return s, errs
}

// dynamicSelector is a selector whose selection the Repository computes
// from data outside the identity (DNS answers, service backends).
type dynamicSelector struct {
	key string
	// fqdn is set for toFQDNs selectors.
	fqdn nameMatcher
	// service is set for toServices selectors.
	service *serviceRef
}

type nameMatcher interface{ Match(name string) bool }

func (s *dynamicSelector) Key() string { return s.key }

func (s *dynamicSelector) matches(r *Repository, id *Identity) bool {
	return r.dynamicSelectsLocked(s, id)
}
