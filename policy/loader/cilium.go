package loader

import (
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// The Cilium kinds the loader converts.
var (
	CiliumNetworkPolicy            = schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: "CiliumNetworkPolicy"}
	CiliumClusterwideNetworkPolicy = schema.GroupVersionKind{Group: "cilium.io", Version: "v2", Kind: "CiliumClusterwideNetworkPolicy"}
)

// unsupportedCiliumFields are fields of Cilium's rule types (Cilium 1.18)
// that Portcullis does not implement, with the reason. They are looked
// for by name anywhere in a rule except inside label selectors and rule
// labels, where keys are user data.
var unsupportedCiliumFields = map[string]string{
	"fromRequires":      "requirements on peer labels (fromRequires) are deprecated in Cilium and not implemented",
	"toRequires":        "requirements on peer labels (toRequires) are deprecated in Cilium and not implemented",
	"fromGroups":        "cloud provider groups (fromGroups) are not implemented",
	"toGroups":          "cloud provider groups (toGroups) are not implemented",
	"fromNodes":         "node peers (fromNodes) are not implemented; use fromEntities host/remote-node",
	"toNodes":           "node peers (toNodes) are not implemented; use toEntities host/remote-node",
	"authentication":    "mutual authentication is not implemented",
	"listener":          "Envoy listeners are not implemented",
	"l7proto":           "generic L7 parsers (l7proto) are not implemented; only http, kafka and dns",
	"l7":                "generic L7 rules (l7) are not implemented; only http, kafka and dns",
	"cidrGroupRef":      "CiliumCIDRGroup references are not implemented; list the prefixes",
	"cidrGroupSelector": "CiliumCIDRGroup selectors are not implemented; list the prefixes",
	"log":               "per-policy flow logging (log) is not implemented",
}

// refusedEntities are entity names that are not Cilium entities but that
// policies written for Cilium use, with what to write instead. Cilium 1.18
// has no kube-dns entity (pkg/policy/api/entity.go lists all, world,
// world-ipv4, world-ipv6, cluster, host, init, ingress, unmanaged,
// remote-node, health, none and kube-apiserver, and later versions add
// none by that name); its own examples (examples/hubble) reach DNS with
// toEndpoints on k8s-app: kube-dns. Guessing a meaning for it would let a
// typo'd policy allow more than its author meant, so it is refused by
// name rather than as a mere unsupported value.
var refusedEntities = map[string]string{
	"kube-dns": `kube-dns is not a Cilium entity (Cilium 1.18 has none by that name); select the DNS pods instead: toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]`,
}

// entityLists are the rule fields whose values are entity names.
var entityLists = map[string]bool{"fromEntities": true, "toEntities": true}

// opaqueRuleFields hold user data (label keys) and are not searched for
// unsupported field names.
var opaqueRuleFields = map[string]bool{
	"endpointSelector": true,
	"nodeSelector":     true,
	"fromEndpoints":    true,
	"toEndpoints":      true,
	"selector":         true, // toServices[].k8sServiceSelector.selector
	"labels":           true,
	"headers":          true,
	"headerMatches":    true,
}

// ConvertCilium converts a CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy to a TrafficPolicy or ClusterTrafficPolicy
// in place: it sets apiVersion and kind and drops status (Cilium's status
// has another shape and is observed state, not intent). It returns an
// error for every Cilium field Portcullis does not implement, and an error
// for any other kind. Unknown fields are left for strict decoding to
// report.
func ConvertCilium(u *unstructured.Unstructured) field.ErrorList {
	gvk := u.GroupVersionKind()
	if gvk != CiliumNetworkPolicy && gvk != CiliumClusterwideNetworkPolicy {
		return field.ErrorList{field.NotSupported(field.NewPath("kind"), gvk.Kind,
			[]string{CiliumNetworkPolicy.Kind, CiliumClusterwideNetworkPolicy.Kind})}
	}
	var errs field.ErrorList
	for _, fe := range convertCilium(u) {
		errs = append(errs, &field.Error{Type: field.ErrorTypeForbidden, Field: fe.path, Detail: fe.err.Error()})
	}
	return errs
}

// convertCilium is ConvertCilium for a CNP or CCNP, keeping the error
// sentinels.
func convertCilium(u *unstructured.Unstructured) []fieldErr {
	if u.GroupVersionKind() == CiliumClusterwideNetworkPolicy {
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(v1alpha1.ClusterTrafficPolicyKind))
	} else {
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(v1alpha1.TrafficPolicyKind))
	}
	delete(u.Object, "status")
	return append(unsupportedFields(u.Object), extensionFields(u.Object)...)
}

// unsupportedFields finds Cilium-only fields in the spec and specs of a
// TrafficPolicy-shaped object.
func unsupportedFields(obj map[string]any) []fieldErr {
	var errs []fieldErr
	if spec, ok := obj["spec"]; ok {
		errs = append(errs, findUnsupported(field.NewPath("spec"), spec)...)
	}
	if specs, ok := obj["specs"].([]any); ok {
		for i, s := range specs {
			errs = append(errs, findUnsupported(field.NewPath("specs").Index(i), s)...)
		}
	}
	return errs
}

func findUnsupported(path *field.Path, v any) []fieldErr {
	var errs []fieldErr
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			if why, bad := unsupportedCiliumFields[k]; bad {
				errs = append(errs, fieldErr{path.Child(k).String(), fmt.Errorf("%w: %s", ErrUnsupportedField, why)})
				continue
			}
			if opaqueRuleFields[k] {
				continue
			}
			if entityLists[k] {
				errs = append(errs, refusedEntityValues(path.Child(k), v[k])...)
				continue
			}
			errs = append(errs, findUnsupported(path.Child(k), v[k])...)
		}
	case []any:
		for i, e := range v {
			errs = append(errs, findUnsupported(path.Index(i), e)...)
		}
	}
	return errs
}

// refusedEntityValues reports the refused names in an entity list.
func refusedEntityValues(path *field.Path, v any) []fieldErr {
	list, _ := v.([]any)
	var errs []fieldErr
	for i, e := range list {
		name, _ := e.(string)
		if why, bad := refusedEntities[name]; bad {
			errs = append(errs, fieldErr{path.Index(i).String(), fmt.Errorf("%w: %s", ErrUnsupportedField, why)})
		}
	}
	return errs
}

// extensionFields finds Portcullis extensions in the spec and specs of a
// Cilium policy. The only one is headerMatches[].regex: Cilium's
// HeaderMatch has no regex (its value is a literal), so a Cilium policy
// using one would not load in Cilium and must not load here either.
// Strict decoding cannot see it, because the converted document is decoded
// as a TrafficPolicy, which has the field.
func extensionFields(obj map[string]any) []fieldErr {
	var errs []fieldErr
	if spec, ok := obj["spec"]; ok {
		errs = append(errs, findExtensions(field.NewPath("spec"), spec)...)
	}
	if specs, ok := obj["specs"].([]any); ok {
		for i, s := range specs {
			errs = append(errs, findExtensions(field.NewPath("specs").Index(i), s)...)
		}
	}
	return errs
}

func findExtensions(path *field.Path, v any) []fieldErr {
	var errs []fieldErr
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			p := path.Child(k)
			if k == "headerMatches" {
				list, _ := v[k].([]any)
				for i, e := range list {
					if m, ok := e.(map[string]any); ok && m["regex"] != nil {
						errs = append(errs, fieldErr{p.Index(i).Child("regex").String(),
							fmt.Errorf("%w: Cilium's headerMatches have no regex (it is a Portcullis extension); write the policy as a TrafficPolicy to use it", ErrUnknownField)})
					}
				}
				continue
			}
			if opaqueRuleFields[k] {
				continue
			}
			errs = append(errs, findExtensions(p, v[k])...)
		}
	case []any:
		for i, e := range v {
			errs = append(errs, findExtensions(path.Index(i), e)...)
		}
	}
	return errs
}

// RefusedField is a Cilium rule field that the loader refuses by name.
type RefusedField struct {
	Name   string
	Reason string
}

// RefusedEntities lists the entity names the loader refuses by name (as
// RefusedField.Name), sorted, for documentation that must stay complete.
func RefusedEntities() []RefusedField {
	out := make([]RefusedField, 0, len(refusedEntities))
	for _, k := range slices.Sorted(maps.Keys(refusedEntities)) {
		out = append(out, RefusedField{Name: k, Reason: refusedEntities[k]})
	}
	return out
}

// RefusedCiliumFields lists the Cilium fields refused by name, sorted by
// name, for documentation that must stay complete.
func RefusedCiliumFields() []RefusedField {
	out := make([]RefusedField, 0, len(unsupportedCiliumFields))
	for _, k := range slices.Sorted(maps.Keys(unsupportedCiliumFields)) {
		out = append(out, RefusedField{Name: k, Reason: unsupportedCiliumFields[k]})
	}
	return out
}
