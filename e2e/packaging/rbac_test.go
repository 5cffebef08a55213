package packaging

import (
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartRBACMatchesConfig checks that the chart grants exactly what
// config/rbac grants: its files/rbac is a byte-identical copy (written by
// `make manifests`), and rendering it in portcullis-system gives the same
// objects as `kustomize build config/rbac` apart from the chart's labels.
func TestChartRBACMatchesConfig(t *testing.T) {
	requireSameYAML(t, filepath.Join(repoRoot, "config", "rbac"), filepath.Join(repoRoot, chartDir, "files", "rbac"))

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
