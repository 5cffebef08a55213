package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// namespaceNameLabel is the label the apiserver puts on every namespace;
// admin policies select namespaces by name through it.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// CompileAdminTrafficPolicy compiles an AdminTrafficPolicy.
func CompileAdminTrafficPolicy(p *v1alpha1.AdminTrafficPolicy, opts Options) (*compiledPolicy, field.ErrorList) {
	c := &compiler{opts: opts, key: PolicyKey{v1alpha1.AdminTrafficPolicyKind, "", p.Name}}
	spec := field.NewPath("spec")
	cp := &compiledPolicy{key: c.key, priority: p.Spec.Priority}
	switch p.Spec.Tier {
	case v1alpha1.TierAdmin, "":
		cp.tier = TierAdmin
	case v1alpha1.TierBaseline:
		cp.tier = TierBaseline
	default:
		c.errs = append(c.errs, field.NotSupported(spec.Child("tier"), p.Spec.Tier, []string{"Admin", "Baseline"}))
	}
	if p.Spec.Priority < 0 || p.Spec.Priority > 1000 {
		c.errs = append(c.errs, field.Invalid(spec.Child("priority"), p.Spec.Priority, "must be between 0 and 1000"))
	}
	subj := c.adminPods(p.Spec.Subject.Namespaces, p.Spec.Subject.Pods, spec.Child("subject"))
	if subj == nil {
		c.errs = append(c.errs, field.Required(spec.Child("subject"), "exactly one of namespaces and pods"))
	} else {
		cp.subject = c.use(subj)
	}
	for i := range p.Spec.Ingress {
		r := &p.Spec.Ingress[i]
		cp.ordered[Ingress] = append(cp.ordered[Ingress], c.adminRule(cp.tier, r.Action, r.From, r.Ports, r.Rules, spec.Child("ingress").Index(i), "from", r.Name))
	}
	for i := range p.Spec.Egress {
		r := &p.Spec.Egress[i]
		cp.ordered[Egress] = append(cp.ordered[Egress], c.adminRule(cp.tier, r.Action, r.To, r.Ports, r.Rules, spec.Child("egress").Index(i), "to", r.Name))
	}
	cp.selectors = c.selUsed
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return cp, nil
}

// adminPods compiles a namespaces or pods selector of an admin policy into
// an identity selector; it returns nil if neither or both are given.
func (c *compiler) adminPods(nsSel *metav1.LabelSelector, pods *v1alpha1.NamespacedPods, fld *field.Path) *labelSelector {
	if (nsSel == nil) == (pods == nil) {
		return nil
	}
	var reqs []requirement
	if nsSel != nil {
		s, errs := compileLabelSelector(nsSel, SourceK8s+":"+LabelNamespaceLabels, fld.Child("namespaces"))
		c.errs = append(c.errs, errs...)
		reqs = append(reqs, s.reqs...)
	} else {
		s, errs := compileLabelSelector(&pods.NamespaceSelector, SourceK8s+":"+LabelNamespaceLabels, fld.Child("pods", "namespaceSelector"))
		c.errs = append(c.errs, errs...)
		reqs = append(reqs, s.reqs...)
		s, errs = compileLabelSelector(&pods.PodSelector, SourceK8s+":", fld.Child("pods", "podSelector"))
		c.errs = append(c.errs, errs...)
		reqs = append(reqs, s.reqs...)
	}
	reqs = append(reqs, requirement{key: SourceK8s + ":" + LabelNamespace, op: metav1.LabelSelectorOpExists})
	return newLabelSelector(reqs)
}

func (c *compiler) adminRule(tier Tier, action v1alpha1.AdminAction, peers []v1alpha1.AdminPeer, ports []v1alpha1.PortProtocol, rules *v1alpha1.L7Rules, fld *field.Path, peerField, name string) *rule {
	ref := RuleRef{Policy: c.key, Path: fld.String()}
	if name != "" {
		ref.Path += " (" + name + ")"
	}
	r := &rule{ref: ref}
	switch action {
	case v1alpha1.ActionAllow:
		r.action = ActionAllow
	case v1alpha1.ActionDeny:
		r.action = ActionDeny
	case v1alpha1.ActionPass:
		r.action = ActionPass
		if tier == TierBaseline {
			c.errs = append(c.errs, field.Invalid(fld.Child("action"), action, "action Pass is only valid in the Admin tier"))
		}
	default:
		c.errs = append(c.errs, field.NotSupported(fld.Child("action"), action, []string{"Allow", "Deny", "Pass"}))
	}
	if len(peers) == 0 {
		c.errs = append(c.errs, field.Required(fld.Child(peerField), "at least one peer"))
	}
	for i, p := range peers {
		pf := fld.Child(peerField).Index(i)
		n := 0
		if p.Namespaces != nil || p.Pods != nil {
			n++
			if s := c.adminPods(p.Namespaces, p.Pods, pf); s != nil {
				r.peers = append(r.peers, c.use(s))
			} else {
				n++ // both set
			}
		}
		if len(p.Networks) > 0 {
			n++
			var ps peerSet
			c.cidrPeers(p.Networks, nil, pf.Child("networks"), nil, &ps)
			r.peers = append(r.peers, ps.sels...)
		}
		if len(p.Entities) > 0 {
			n++
			var ps peerSet
			c.entityPeers(p.Entities, pf.Child("entities"), &ps)
			r.peers = append(r.peers, ps.sels...)
		}
		if n != 1 {
			c.errs = append(c.errs, field.Invalid(pf, "", "exactly one of namespaces, pods, networks and entities"))
		}
	}
	if len(ports) > 0 {
		ps, errs := compilePorts(ports, fld.Child("ports"))
		c.errs = append(c.errs, errs...)
		r.ports = ps
	}
	if rules != nil {
		if r.action != ActionAllow {
			c.errs = append(c.errs, field.Forbidden(fld.Child("rules"), "L7 rules are only valid with action Allow"))
		} else if len(ports) == 0 {
			c.errs = append(c.errs, field.Required(fld.Child("ports"), "L7 rules need ports"))
		} else {
			pol, errs := compileL7(&v1alpha1.PortRule{Ports: ports, Rules: rules}, ref, "", c.opts, fld)
			c.errs = append(c.errs, errs...)
			c.errs = append(c.errs, portlessL7(ports, fld.Child("ports"))...)
			r.l7 = pol
		}
	}
	return r
}
