package packaging

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/apis/policy/validation/invalidcases"
)

// dryRunCreate creates obj with a server-side dry run and strict field
// validation (unknown and duplicate fields are errors, as with kubectl).
func dryRunCreate(ctx context.Context, obj *unstructured.Unstructured) error {
	return k8s.Create(ctx, obj, client.DryRunAll, client.FieldValidation("Strict"))
}

func decodeDoc(t testing.TB, doc []byte) *unstructured.Unstructured {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatalf("parsing test YAML: %v", err)
	}
	return &unstructured.Unstructured{Object: m}
}

// invalidFixtures holds the invalid-policy fixtures shared with the
// in-process test in apis/policy/validation (see package invalidcases).
var invalidFixtures = filepath.Join("..", "..", "apis", "policy", "validation", "testdata", "invalid")

type invalidCase struct {
	name string
	doc  []byte
	// want are substrings of the apiserver's error: the field path and
	// the message.
	want []string
}

// TestInvalidPoliciesRejected sends invalid policies to the real apiserver
// and checks each is refused with the field and message a user needs. The
// same fixtures run in-process in apis/policy/validation; here they prove
// the installed CRDs (OpenAPI schema, CEL rules, pruning) do it in a cluster.
func TestInvalidPoliciesRejected(t *testing.T) {
	fixtures, err := invalidcases.Load(invalidFixtures)
	if err != nil {
		t.Fatalf("loading fixtures: %v", err)
	}
	var tests []invalidCase
	for _, c := range fixtures {
		want := []string{c.Field, c.Message}
		if c.Field == invalidcases.NoField {
			// An error about the whole object: the apiserver reports it
			// without a path, so only the message can be matched.
			want = want[1:]
		}
		tests = append(tests, invalidCase{c.Name, c.Doc, want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := dryRunCreate(ctx, decodeDoc(t, tt.doc))
			if err == nil {
				t.Fatalf("the apiserver accepted it, want an error containing %q", tt.want)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Errorf("error is %v (reason %s), want Invalid or BadRequest", err, apierrors.ReasonForError(err))
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestExamplesAccepted applies every document under examples/ except
// examples/cilium (Cilium's own kinds, converted by `portcullis policy
// convert`): Namespaces for real, then each policy with a server-side dry
// run and strict field validation.
func TestExamplesAccepted(t *testing.T) {
	type example struct {
		file string // relative to the repository root
		obj  *unstructured.Unstructured
	}
	var namespaces []*unstructured.Unstructured
	var policies []example
	root := filepath.Join(repoRoot, "examples")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "cilium" {
			return fs.SkipDir
		}
		if d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		for _, o := range parseObjects(t, data) {
			switch {
			case o.GetKind() == "Namespace":
				namespaces = append(namespaces, o)
			case o.GroupVersionKind().Group == "policy.portcullis.dev":
				policies = append(policies, example{rel, o})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading examples: %v", err)
	}
	// Fewer would mean the walk lost files, not that the examples are fine.
	if len(policies) < 5 {
		t.Fatalf("found %d policies under examples/, want at least 5", len(policies))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, ns := range namespaces {
		if err := k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s: %v", key(ns), err)
		}
	}
	for _, p := range policies {
		t.Run(p.file+"/"+p.obj.GetKind()+"/"+p.obj.GetName(), func(t *testing.T) {
			if err := dryRunCreate(ctx, p.obj); err != nil {
				t.Errorf("%s: %v", p.file, err)
			}
		})
	}
}
