package validation

import (
	"context"
	"fmt"
	"math"
	"sort"
	"testing"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"portcullis.dev/portcullis/config/crd"
)

// TestCRDsPassAPIServerValidation runs the apiserver's validation of a
// CustomResourceDefinition on create over every embedded CRD: structural
// schema, pruned defaults, CEL compilation and the CEL cost estimates
// (per rule and per CRD). Run with -v to see each CRD's estimated total.
func TestCRDsPassAPIServerValidation(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)

	crds, err := crd.CRDs()
	if err != nil {
		t.Fatalf("loading CRDs: %v", err)
	}
	if len(crds) != 3 {
		t.Errorf("got %d CRDs, want 3", len(crds))
	}
	for _, c := range crds {
		t.Run(c.Name, func(t *testing.T) {
			scheme.Default(c)
			internal := &apiextensionsinternal.CustomResourceDefinition{}
			if err := scheme.Convert(c, internal, nil); err != nil {
				t.Fatalf("converting to the internal version: %v", err)
			}
			// What the CRD strategy's PrepareForCreate does.
			internal.Status = apiextensionsinternal.CustomResourceDefinitionStatus{}
			for _, v := range internal.Spec.Versions {
				if v.Storage {
					internal.Status.StoredVersions = []string{v.Name}
				}
			}
			errs := apiextensionsvalidation.ValidateCustomResourceDefinition(context.Background(), internal)
			for _, e := range errs {
				t.Errorf("%v", e)
			}

			total, top := estimateCELCosts(t, schema.GroupKind{Group: c.Spec.Group, Kind: c.Spec.Names.Kind})
			t.Logf("estimated CEL cost %.3g of %d", total, apiextensionsvalidation.StaticEstimatedCRDCostLimit)
			if len(errs) > 0 {
				t.Logf("most expensive rules (cost per call x cardinality):")
				for _, r := range top[:min(10, len(top))] {
					t.Logf("  %s", r)
				}
			}
		})
	}
}

// estimateCELCosts approximates the apiserver's static cost estimate of a
// kind's rules (per-call cost times the product of the enclosing maxItems),
// to show where the budget goes. It returns the total and the rules,
// most expensive first.
func estimateCELCosts(t *testing.T, gk schema.GroupKind) (float64, []string) {
	t.Helper()
	vs, err := validators()
	if err != nil {
		t.Fatalf("building validators: %v", err)
	}
	type ruleCost struct {
		path  string
		cost  uint64
		card  float64
		total float64
	}
	var rules []ruleCost
	envSet := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	var walk func(path string, s *structuralschema.Structural, card float64, root bool)
	walk = func(path string, s *structuralschema.Structural, card float64, root bool) {
		if len(s.XValidations) > 0 {
			res, err := cel.Compile(s, model.SchemaDeclType(s, root), celconfig.PerCallLimit, envSet, cel.StoredExpressionsEnvLoader())
			if err != nil {
				t.Fatalf("compiling rules at %s: %v", path, err)
			}
			for i, r := range res {
				rules = append(rules, ruleCost{fmt.Sprintf("%s x-kubernetes-validations[%d]", path, i), r.MaxCost, card, float64(r.MaxCost) * card})
			}
		}
		for k, p := range s.Properties {
			walk(path+"."+k, &p, card, false)
		}
		if s.Items != nil {
			n := math.Inf(1)
			if s.ValueValidation != nil && s.ValueValidation.MaxItems != nil {
				n = float64(*s.ValueValidation.MaxItems)
			}
			walk(path+"[*]", s.Items, card*n, false)
		}
	}
	var total float64
	for _, kv := range vs[gk] {
		walk("", kv.structural, 1, true)
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].total > rules[j].total })
	out := make([]string, len(rules))
	for i, r := range rules {
		total += r.total
		out[i] = fmt.Sprintf("%.3g = %d x %.0f %s", r.total, r.cost, r.card, r.path)
	}
	return total, out
}
