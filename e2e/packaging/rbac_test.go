package packaging

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartRBACMatchesConfig checks that the chart grants exactly what
// config/rbac grants: its files/rbac is a byte-identical copy (written by
// `make manifests`), and rendering it in portcullis-system gives the same
// objects as `kustomize build config/rbac` apart from the chart's labels.
func TestChartRBACMatchesConfig(t *testing.T) {
	src := filepath.Join(repoRoot, "config", "rbac")
	dst := filepath.Join(repoRoot, chartDir, "files", "rbac")
	list := func(dir string) []string {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range m {
			if n := filepath.Base(p); n != "kustomization.yaml" {
				names = append(names, n)
			}
		}
		return names
	}
	want, got := list(src), list(dst)
	if len(want) == 0 {
		t.Fatalf("no RBAC manifests in %s", src)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, config/rbac %q: run `make manifests`", dst, got, want)
	}
	for _, n := range want {
		a, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dst, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s/files/rbac/%s differs from config/rbac/%s: run `make manifests`", chartDir, n, n)
		}
	}

	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			m[key(o)] = o
		}
		return m
	}
	fromConfig := index(kustomizeBuild(t, "rbac"))
	fromChart := index(parseObjects(t, helmTemplate(t, "portcullis-system", "--show-only", "templates/rbac.yaml")))
	for k, w := range fromConfig {
		g, ok := fromChart[k]
		if !ok {
			t.Errorf("the chart lacks %s", k)
			continue
		}
		// The chart adds its labels; config/rbac's own (the aggregation
		// labels) must all be there.
		gl := g.GetLabels()
		for lk, lv := range w.GetLabels() {
			if gl[lk] != lv {
				t.Errorf("%s: label %s=%q in the chart, %q in config/rbac", k, lk, gl[lk], lv)
			}
		}
		g, w = g.DeepCopy(), w.DeepCopy()
		g.SetLabels(nil)
		w.SetLabels(nil)
		if !reflect.DeepEqual(g.Object, w.Object) {
			t.Errorf("%s differs:\nchart:       %v\nconfig/rbac: %v", k, g.Object, w.Object)
		}
	}
	for k := range fromChart {
		if _, ok := fromConfig[k]; !ok {
			t.Errorf("the chart has %s, config/rbac does not", k)
		}
	}
}
