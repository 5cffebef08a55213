package validation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"portcullis.dev/portcullis/config/crd"
)

// OriginUnknownField is the Origin of the errors that report a field the
// schema does not know (what `kubectl apply --validate=strict` rejects).
const OriginUnknownField = "unknownField"

// kindValidator holds everything needed to validate one version of one kind.
type kindValidator struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	hasStatus  bool
	// structural is the version's structural schema with its defaults
	// pruned, as the apiserver serves it.
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	// cel is nil when the schema has no x-kubernetes-validations.
	cel *cel.Validator
}

// validators maps group-kind and version to the validator; built once.
var validators = sync.OnceValues(buildValidators)

func buildValidators() (map[schema.GroupKind]map[string]*kindValidator, error) {
	crds, err := crd.CRDs()
	if err != nil {
		return nil, fmt.Errorf("loading CRDs: %w", err)
	}
	out := map[schema.GroupKind]map[string]*kindValidator{}
	for _, c := range crds {
		gk := schema.GroupKind{Group: c.Spec.Group, Kind: c.Spec.Names.Kind}
		out[gk] = map[string]*kindValidator{}
		for i := range c.Spec.Versions {
			v := &c.Spec.Versions[i]
			if !v.Served {
				continue
			}
			kv, err := newKindValidator(c, v)
			if err != nil {
				return nil, fmt.Errorf("building validator for %s %s: %w", c.Name, v.Name, err)
			}
			out[gk][v.Name] = kv
		}
	}
	return out, nil
}

// newKindValidator does what the apiextensions-apiserver's CRD handler does
// when it starts serving a version.
func newKindValidator(c *apiextensionsv1.CustomResourceDefinition, v *apiextensionsv1.CustomResourceDefinitionVersion) (*kindValidator, error) {
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("version has no schema")
	}
	internal := &apiextensionsinternal.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(v.Schema, internal, nil); err != nil {
		return nil, fmt.Errorf("converting schema to the internal version: %w", err)
	}
	s, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("building structural schema: %w", err)
	}
	if errs := structuralschema.ValidateStructural(nil, s); len(errs) > 0 {
		return nil, fmt.Errorf("schema is not structural: %w", errs.ToAggregate())
	}
	s = s.DeepCopy()
	if err := structuraldefaulting.PruneDefaults(s); err != nil {
		return nil, fmt.Errorf("pruning defaults: %w", err)
	}
	sv, _, err := apiservervalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, fmt.Errorf("building schema validator: %w", err)
	}
	return &kindValidator{
		gvk:        schema.GroupVersionKind{Group: c.Spec.Group, Version: v.Name, Kind: c.Spec.Names.Kind},
		namespaced: c.Spec.Scope == apiextensionsv1.NamespaceScoped,
		hasStatus:  v.Subresources != nil && v.Subresources.Status != nil,
		structural: s,
		schema:     sv,
		cel:        cel.NewValidator(s, true, celconfig.PerCallLimit),
	}, nil
}

// Kinds returns the group-version-kinds this package validates, sorted.
func Kinds() ([]schema.GroupVersionKind, error) {
	vs, err := validators()
	if err != nil {
		return nil, err
	}
	var out []schema.GroupVersionKind
	for _, byVersion := range vs {
		for _, kv := range byVersion {
			out = append(out, kv.gvk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// Validate reports what the kube-apiserver would reject when obj is
// created with strict field validation: unknown fields, then ObjectMeta,
// OpenAPI schema and CEL rule violations of the defaulted, pruned object.
// Unlike the apiserver, which stops at unknown fields, it goes on to
// validate the rest, so that one run shows every problem. obj is not
// modified. An empty list means the object is valid.
func Validate(obj *unstructured.Unstructured) field.ErrorList {
	if obj == nil {
		return field.ErrorList{field.Required(nil, "an object is required")}
	}
	_, errs := Admit(obj.Object)
	return errs
}

// ValidateMap is Validate for an object decoded from YAML or JSON into a
// map (numbers may be float64 or int64).
func ValidateMap(obj map[string]any) field.ErrorList {
	_, errs := Admit(obj)
	return errs
}

// Admit runs the apiserver's create path on a copy of obj and returns the
// object as the apiserver would store it (defaulted, unknown fields
// pruned, status dropped) together with the validation errors. The
// returned object is nil only if obj could not be read at all (not a
// JSON object, not one of our kinds, or malformed metadata). obj is not
// modified.
//
// Field paths are the apiserver's: errors from CEL rules on the object
// root (such as "a TrafficPolicy needs spec or specs") have the field
// "<nil>". Unknown-field errors are Forbidden with Origin
// OriginUnknownField. If an error makes the CEL rules' inputs meaningless
// (a missing required field, a wrong type, too many items, an
// unsupported enum value), the CEL rules are skipped and an error says
// so, as in the apiserver.
func Admit(obj map[string]any) (*unstructured.Unstructured, field.ErrorList) {
	u, err := normalize(obj)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(nil, field.OmitValueType{}, fmt.Sprintf("not a JSON object: %v", err))}
	}
	kv, errs := lookup(u)
	if len(errs) > 0 {
		return nil, errs
	}

	// Decoding: the versioning codec defaults, then the schema-coercing
	// decoder prunes and reports unknown fields.
	structuraldefaulting.Default(u.Object, kv.structural)
	unknown, err := coerce(u, kv)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("metadata"), field.OmitValueType{}, err.Error())}
	}
	for _, p := range unknown {
		errs = append(errs, field.Forbidden(field.NewPath(p), fmt.Sprintf("unknown field %q", p)).WithOrigin(OriginUnknownField))
	}

	// rest.BeforeCreate and the strategy's PrepareForCreate.
	if kv.hasStatus {
		delete(u.Object, "status")
	}
	if !kv.namespaced {
		u.SetNamespace("")
	}

	// The strategy's Validate.
	ctx := context.Background()
	errs = append(errs, validateObjectMeta(u, kv)...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.Object, kv.schema)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u.Object, kv.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, kv.structural, u.Object)...)
	if kv.cel != nil {
		if blocked, e := hasBlockingErr(errs); blocked {
			errs = append(errs, e)
		} else {
			celErrs, _ := kv.cel.Validate(ctx, nil, kv.structural, u.Object, nil, celconfig.RuntimeCELCostBudget)
			errs = append(errs, celErrs...)
		}
	}
	return u, errs
}

// Default applies the schema defaults of obj's kind to obj in place, as
// the apiserver does when it decodes a request. It neither prunes nor
// validates.
func Default(obj *unstructured.Unstructured) error {
	if obj == nil {
		return fmt.Errorf("defaulting: nil object")
	}
	kv, errs := lookup(obj)
	if len(errs) > 0 {
		return fmt.Errorf("defaulting: %w", errs.ToAggregate())
	}
	structuraldefaulting.Default(obj.Object, kv.structural)
	return nil
}

// normalize deep-copies obj through JSON so that numbers are int64 where
// integral and float64 otherwise, as after the apiserver's JSON decoding.
func normalize(obj map[string]any) (*unstructured.Unstructured, error) {
	if obj == nil {
		return nil, fmt.Errorf("nil object")
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	out := map[string]any{}
	if err := utiljson.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return &unstructured.Unstructured{Object: out}, nil
}

// lookup finds the validator for u's apiVersion and kind.
func lookup(u *unstructured.Unstructured) (*kindValidator, field.ErrorList) {
	vs, err := validators()
	if err != nil {
		return nil, field.ErrorList{field.InternalError(nil, err)}
	}
	apiVersion, kind := u.GetAPIVersion(), u.GetKind()
	if kind == "" {
		return nil, field.ErrorList{field.Required(field.NewPath("kind"), "")}
	}
	if apiVersion == "" {
		return nil, field.ErrorList{field.Required(field.NewPath("apiVersion"), "")}
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("apiVersion"), apiVersion, err.Error())}
	}
	byVersion, ok := vs[schema.GroupKind{Group: gv.Group, Kind: kind}]
	if !ok {
		var known []string
		for gk := range vs {
			if gk.Group == gv.Group {
				known = append(known, gk.Kind)
			}
		}
		if len(known) == 0 {
			return nil, field.ErrorList{field.Invalid(field.NewPath("apiVersion"), apiVersion, "not a policy.portcullis.dev version")}
		}
		slices.Sort(known)
		return nil, field.ErrorList{field.NotSupported(field.NewPath("kind"), kind, known)}
	}
	kv, ok := byVersion[gv.Version]
	if !ok {
		var known []string
		for v := range byVersion {
			known = append(known, gv.Group+"/"+v)
		}
		slices.Sort(known)
		return nil, field.ErrorList{field.NotSupported(field.NewPath("apiVersion"), apiVersion, known)}
	}
	return kv, nil
}

// coerce is the apiserver's unstructuredSchemaCoercer with unknown-field
// tracking: it prunes unknown fields (returning their paths, sorted),
// drops nulls that have no default and normalizes ObjectMeta.
func coerce(u *unstructured.Unstructured, kv *kindValidator) ([]string, error) {
	kind, apiVersion := u.GetKind(), u.GetAPIVersion()
	meta, foundMeta, unknown, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{
		ReturnUnknownFieldPaths: true,
	})
	if err != nil {
		return nil, err
	}
	unknown = append(unknown, structuralpruning.PruneWithOptions(u.Object, kv.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, kv.structural)
	// CoerceWithOptions returns a *field.Error: keep it out of err, where a
	// nil pointer would become a non-nil error.
	fieldErr, paths := schemaobjectmeta.CoerceWithOptions(nil, u.Object, kv.structural, false, schemaobjectmeta.CoerceOptions{
		ReturnUnknownFieldPaths: true,
	})
	if fieldErr != nil {
		return nil, fieldErr
	}
	unknown = append(unknown, paths...)

	u.SetKind(kind)
	u.SetAPIVersion(apiVersion)
	if foundMeta {
		if err := schemaobjectmeta.SetObjectMeta(u.Object, meta); err != nil {
			return nil, err
		}
	}
	sort.Strings(unknown)
	return slices.Compact(unknown), nil
}

// validateObjectMeta is the apiserver's ObjectMeta validation of a custom
// resource on create. A namespaced object without a namespace is checked
// as if it had one, because kubectl fills it in from the context.
func validateObjectMeta(u *unstructured.Unstructured, kv *kindValidator) field.ErrorList {
	raw, ok := u.Object["metadata"]
	if !ok || raw == nil {
		raw = map[string]any{}
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), raw, fmt.Sprintf("expected an object, got %T", raw))}
	}
	meta := &metav1.ObjectMeta{}
	if err := fromUnstructured(m, meta); err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), field.OmitValueType{}, err.Error())}
	}
	if kv.namespaced && meta.Namespace == "" {
		meta.Namespace = metav1.NamespaceDefault
	}
	return metavalidation.ValidateObjectMeta(meta, kv.namespaced, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
}

func fromUnstructured(m map[string]any, meta *metav1.ObjectMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding metadata: %w", err)
	}
	if err := json.Unmarshal(data, meta); err != nil {
		return fmt.Errorf("decoding metadata: %w", err)
	}
	return nil
}

// hasBlockingErr is the customresource strategy's rule: CEL rules are not
// evaluated when schema errors would make their inputs meaningless.
func hasBlockingErr(errs field.ErrorList) (bool, *field.Error) {
	for _, err := range errs {
		switch err.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")
		}
	}
	return false, nil
}
