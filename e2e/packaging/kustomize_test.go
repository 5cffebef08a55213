package packaging

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// kustomizeBuild builds config/<dir>.
func kustomizeBuild(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	out := mustRun(t, nil, kustomizeBin(t), "build", filepath.Join("config", dir))
	return parseObjects(t, out)
}

// defaultConfig is the agent ConfigMap of config/default.
var defaultConfig = map[string]string{
	"enforcement-mode":             "default",
	"audit-mode":                   "false",
	"dns-reject-response-code":     "refused",
	"tofqdns-max-ips-per-hostname": "1000",
	"secrets-namespace":            "portcullis-secrets",
}

// with returns defaultConfig with the given keys changed.
func with(kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range defaultConfig {
		m[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestKustomizeDryRun builds config/default and every overlay under
// config/overlays (listed from the directory, so a new overlay is tested
// without editing this file) and applies each with a server-side dry run.
func TestKustomizeDryRun(t *testing.T) {
	// What each known overlay must change; an overlay missing here is still
	// built and applied.
	checks := map[string]func(t *testing.T, objs []*unstructured.Unstructured){
		"default": func(t *testing.T, objs []*unstructured.Unstructured) {
			wantConfig(t, objs, defaultConfig)
		},
		"overlays/audit-mode": func(t *testing.T, objs []*unstructured.Unstructured) {
			wantConfig(t, objs, with("audit-mode", "true"))
		},
		"overlays/enforce-always": func(t *testing.T, objs []*unstructured.Unstructured) {
			wantConfig(t, objs, with("enforcement-mode", "always"))
		},
		"overlays/dev": func(t *testing.T, objs []*unstructured.Unstructured) {
			wantConfig(t, objs, defaultConfig)
			dep := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "portcullis-operator"))
			c := dep.Spec.Template.Spec.Containers[0]
			if c.Image != "portcullis-operator:dev" || c.ImagePullPolicy != corev1.PullNever {
				t.Errorf("operator image = %q, %s; want portcullis-operator:dev, Never", c.Image, c.ImagePullPolicy)
			}
			if *dep.Spec.Replicas != 1 || !slices.Contains(c.Args, "--leader-elect=false") || slices.Contains(c.Args, "--leader-elect") {
				t.Errorf("operator replicas %d, args %q; want one replica without leader election", *dep.Spec.Replicas, c.Args)
			}
			ds := convert[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "portcullis-agent"))
			a := ds.Spec.Template.Spec.Containers[0]
			if a.Image != "portcullis-agent:dev" || a.ImagePullPolicy != corev1.PullNever {
				t.Errorf("agent image = %q, %s; want portcullis-agent:dev, Never", a.Image, a.ImagePullPolicy)
			}
		},
	}
	dirs := []string{"default"}
	overlays, err := os.ReadDir(filepath.Join(repoRoot, "config", "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range overlays {
		if o.IsDir() {
			dirs = append(dirs, "overlays/"+o.Name())
		}
	}
	for name := range checks {
		if !slices.Contains(dirs, name) {
			t.Errorf("config/%s is missing", name)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			for _, want := range []struct{ kind, name string }{
				{"Namespace", "portcullis-system"},
				{"Namespace", "portcullis-secrets"},
				{"CustomResourceDefinition", "trafficpolicies.policy.portcullis.dev"},
				{"Deployment", "portcullis-operator"},
				{"DaemonSet", "portcullis-agent"},
				{"ClusterRole", "portcullis-policy-edit"},
				{"ClusterRole", "portcullis-policy-view"},
			} {
				find(t, objs, want.kind, want.name)
			}
			for _, o := range objs {
				if o.GetLabels()["app.kubernetes.io/part-of"] != "portcullis" {
					t.Errorf("%s lacks app.kubernetes.io/part-of=portcullis", key(o))
				}
			}
			if check := checks[dir]; check != nil {
				check(t, objs)
			}
			applyDryRun(t, objectsYAML(t, objs))
		})
	}
}

// TestKustomizeBases builds each base alone: each must stand on its own
// (an overlay may pick any subset).
func TestKustomizeBases(t *testing.T) {
	for _, dir := range []string{"crd", "namespaces", "rbac", "operator", "agent"} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomizeBuild(t, dir)
			if len(objs) == 0 {
				t.Fatalf("config/%s builds to nothing", dir)
			}
			applyDryRun(t, objectsYAML(t, objs))
		})
	}
}
