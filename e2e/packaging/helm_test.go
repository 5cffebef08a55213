package packaging

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const chartDir = "charts/portcullis"

// TestHelmLint lints the chart with its defaults and checks that bad
// values fail with a message naming the value and what is allowed.
func TestHelmLint(t *testing.T) {
	tests := []struct {
		name      string
		namespace string
		// template runs `helm template` instead of `helm lint`: lint only
		// logs a template's fail() and passes.
		template bool
		args     []string
		// wantErr are substrings of the failure; none means lint passes.
		wantErr []string
	}{{
		name: "defaults",
	}, {
		name: "every option set",
		args: []string{
			"--set", "enforcementMode=always", "--set", "auditMode=true",
			"--set", "dns.rejectResponseCode=nameError", "--set", "toFQDNs.maxIPsPerHostname=1",
			"--set", "secretsNamespace=tls-keys", "--set", "serviceMonitor.enabled=true",
			"--set", "operator.replicas=3", "--set", "agent.extraCapabilities={PERFMON}",
		},
	}, {
		name:    "enforcement mode not in the enum",
		args:    []string{"--set", "enforcementMode=sometimes"},
		wantErr: []string{"enforcementMode", "'default', 'always', 'never'"},
	}, {
		name:    "audit mode not a boolean",
		args:    []string{"--set-string", "auditMode=yes"},
		wantErr: []string{"auditMode", "want boolean"},
	}, {
		name:    "DNS reject code not in the enum",
		args:    []string{"--set", "dns.rejectResponseCode=NXDOMAIN"},
		wantErr: []string{"rejectResponseCode", "'refused', 'nameError'"},
	}, {
		name:    "max IPs per hostname below 1",
		args:    []string{"--set", "toFQDNs.maxIPsPerHostname=0"},
		wantErr: []string{"/toFQDNs/maxIPsPerHostname", "minimum: got 0, want 1"},
	}, {
		name:    "max IPs per hostname not an integer",
		args:    []string{"--set", "toFQDNs.maxIPsPerHostname=2.5"},
		wantErr: []string{"maxIPsPerHostname", "want integer"},
	}, {
		name:    "misspelt top-level key",
		args:    []string{"--set", "enforcmentMode=always"},
		wantErr: []string{"additional properties 'enforcmentMode' not allowed"},
	}, {
		name:    "misspelt nested key",
		args:    []string{"--set", "operator.replica=2"},
		wantErr: []string{"/operator", "additional properties 'replica' not allowed"},
	}, {
		name:    "secrets namespace not a DNS label",
		args:    []string{"--set", "secretsNamespace=TLS_Keys"},
		wantErr: []string{"secretsNamespace", "does not match pattern"},
	}, {
		name:      "secrets namespace is the release namespace",
		namespace: "portcullis-secrets",
		template:  true,
		wantErr:   []string{"secretsNamespace must not be the release namespace"},
	}, {
		name:    "two operators without leader election",
		args:    []string{"--set", "operator.leaderElection=false", "--set", "operator.replicas=2"},
		wantErr: []string{"/operator/replicas", "maximum: got 2, want 1"},
	}, {
		name:    "SYS_ADMIN for the agent",
		args:    []string{"--set", "agent.extraCapabilities={SYS_ADMIN}"},
		wantErr: []string{"/agent/extraCapabilities/0", "value must be one of 'PERFMON'"},
	}, {
		name:    "image pull policy not in the enum",
		args:    []string{"--set", "images.agent.pullPolicy=Sometimes"},
		wantErr: []string{"/images/agent/pullPolicy", "'Always', 'IfNotPresent', 'Never'"},
	}, {
		name:    "ServiceMonitor interval not a duration",
		args:    []string{"--set", "serviceMonitor.interval=30 seconds"},
		wantErr: []string{"/serviceMonitor/interval", "does not match pattern"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := tt.namespace
			if ns == "" {
				ns = "portcullis-system"
			}
			args := []string{"lint", chartDir, "--strict"}
			if tt.template {
				args = []string{"template", "portcullis", chartDir}
			}
			args = append(append(args, "--namespace", ns), tt.args...)
			r := run(t, nil, helmBin(t), args...)
			out := string(r.stdout) + string(r.stderr)
			if len(tt.wantErr) == 0 {
				if r.err != nil {
					t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), r.err, out)
				}
				return
			}
			if r.err == nil {
				t.Fatalf("helm %s passed, want an error containing %q\n%s", strings.Join(args, " "), tt.wantErr, out)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(out, want) {
					t.Errorf("helm %s output does not contain %q:\n%s", args[0], want, out)
				}
			}
			t.Logf("helm %s refused it:\n%s", args[0], out)
		})
	}
}

// helmTemplate renders the chart as release "portcullis" in namespace ns.
func helmTemplate(t testing.TB, ns string, args ...string) []byte {
	t.Helper()
	return mustRun(t, nil, helmBin(t), append([]string{"template", "portcullis", chartDir, "--namespace", ns}, args...)...)
}

// TestHelmTemplateDryRun renders the chart with several value sets and
// applies each with a server-side dry run, then checks that the values
// reached the objects.
func TestHelmTemplateDryRun(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{{
		name: "defaults, with CRDs",
		args: []string{"--include-crds"},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantConfig(t, objs, map[string]string{
				"enforcement-mode":             "default",
				"audit-mode":                   "false",
				"dns-reject-response-code":     "refused",
				"tofqdns-max-ips-per-hostname": "1000",
				"secrets-namespace":            "portcullis-secrets",
			})
			find(t, objs, "Namespace", "portcullis-secrets")
			for _, crd := range []string{"trafficpolicies", "clustertrafficpolicies", "admintrafficpolicies"} {
				find(t, objs, "CustomResourceDefinition", crd+".policy.portcullis.dev")
			}
			find(t, objs, "Pod", "portcullis-test")
			dep := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "portcullis-operator"))
			if got := dep.Spec.Template.Spec.Containers[0].Image; got != "ghcr.io/portcullis-dev/portcullis-operator:v0.1.0" {
				t.Errorf("operator image = %q, want the appVersion tag", got)
			}
		},
	}, {
		name: "deny by default, audited, NXDOMAIN, custom secrets namespace",
		args: []string{
			"--set", "enforcementMode=always", "--set", "auditMode=true",
			"--set", "dns.rejectResponseCode=nameError", "--set", "toFQDNs.maxIPsPerHostname=50",
			"--set", "secretsNamespace=tls-keys",
		},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantConfig(t, objs, map[string]string{
				"enforcement-mode":             "always",
				"audit-mode":                   "true",
				"dns-reject-response-code":     "nameError",
				"tofqdns-max-ips-per-hostname": "50",
				"secrets-namespace":            "tls-keys",
			})
			find(t, objs, "Namespace", "tls-keys")
			// The agent's Secret access moves with the namespace.
			var roles int
			for _, o := range objs {
				if o.GetKind() == "Role" && o.GetNamespace() == "tls-keys" {
					roles++
				}
				if (o.GetKind() == "Role" || o.GetKind() == "RoleBinding") && o.GetNamespace() == "portcullis-secrets" {
					t.Errorf("%s is still in portcullis-secrets", key(o))
				}
			}
			if roles == 0 {
				t.Error("no Role in the secrets namespace tls-keys")
			}
		},
	}, {
		name: "secrets namespace managed elsewhere",
		args: []string{"--set", "createSecretsNamespace=false"},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					t.Errorf("rendered %s with createSecretsNamespace=false", key(o))
				}
			}
		},
	}, {
		name: "standby operators, extra flags and capability, own images, no tests",
		args: []string{
			"--set", "operator.replicas=2", "--set", "operator.extraArgs={--zap-log-level=debug}",
			"--set", "agent.extraCapabilities={PERFMON}", "--set", "agent.extraArgs={--foo=bar}",
			"--set", "images.agent.repository=registry.example/portcullis-agent", "--set", "images.agent.tag=dev",
			"--set", "images.agent.pullPolicy=Always", "--set", "imagePullSecrets[0].name=regcred",
			"--set", "tests.enabled=false", "--set", "agent.tolerations=null",
		},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			dep := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "portcullis-operator"))
			if *dep.Spec.Replicas != 2 {
				t.Errorf("operator replicas = %d, want 2", *dep.Spec.Replicas)
			}
			if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--zap-log-level=debug") || !slices.Contains(args, "--leader-elect=true") {
				t.Errorf("operator args = %q, want --leader-elect=true and the extra flag", args)
			}
			ds := convert[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "portcullis-agent"))
			c := ds.Spec.Template.Spec.Containers[0]
			if c.Image != "registry.example/portcullis-agent:dev" || c.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("agent image = %q, %s", c.Image, c.ImagePullPolicy)
			}
			if got := c.SecurityContext.Capabilities.Add; !slices.Equal(got, []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}) {
				t.Errorf("agent capabilities = %v", got)
			}
			if len(ds.Spec.Template.Spec.Tolerations) != 0 {
				t.Errorf("agent tolerations = %v, want none", ds.Spec.Template.Spec.Tolerations)
			}
			if ps := ds.Spec.Template.Spec.ImagePullSecrets; len(ps) != 1 || ps[0].Name != "regcred" {
				t.Errorf("agent imagePullSecrets = %v", ps)
			}
			for _, o := range objs {
				if o.GetAnnotations()["helm.sh/hook"] != "" {
					t.Errorf("rendered hook %s with tests.enabled=false", key(o))
				}
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := helmTemplate(t, "portcullis-system", tt.args...)
			objs := parseObjects(t, out)
			for _, o := range objs {
				if o.GetKind() == "ServiceMonitor" {
					t.Fatalf("rendered %s without serviceMonitor.enabled", key(o))
				}
			}
			tt.check(t, objs)
			applyDryRun(t, out)
		})
	}
}

// wantConfig checks the agent ConfigMap's data.
func wantConfig(t *testing.T, objs []*unstructured.Unstructured, want map[string]string) {
	t.Helper()
	cm := convert[corev1.ConfigMap](t, find(t, objs, "ConfigMap", "portcullis-agent-config"))
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("portcullis-agent-config %s = %q, want %q", k, cm.Data[k], v)
		}
	}
	if len(cm.Data) != len(want) {
		t.Errorf("portcullis-agent-config data = %v, want exactly the keys of %v", cm.Data, want)
	}
}

// TestHelmServiceMonitor renders the ServiceMonitors. They are not applied:
// envtest has no Prometheus Operator CRDs, and a stand-in CRD would only
// test the stand-in.
func TestHelmServiceMonitor(t *testing.T) {
	objs := parseObjects(t, helmTemplate(t, "portcullis-system",
		"--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.interval=15s",
		"--set", "serviceMonitor.labels.release=prometheus"))
	for _, name := range []string{"portcullis-operator", "portcullis-agent"} {
		sm := find(t, objs, "ServiceMonitor", name)
		if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
			t.Errorf("%s apiVersion = %s", key(sm), sm.GetAPIVersion())
		}
		if sm.GetLabels()["release"] != "prometheus" {
			t.Errorf("%s labels = %v, want release=prometheus", key(sm), sm.GetLabels())
		}
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["interval"] != "15s" {
			t.Errorf("%s endpoints = %v, want one with interval 15s", key(sm), eps)
		}
		// The endpoint's port name must be one the selected Service has.
		port := eps[0].(map[string]any)["port"]
		svcName := map[string]string{"portcullis-operator": "portcullis-operator-metrics", "portcullis-agent": "portcullis-agent-metrics"}[name]
		svc := convert[corev1.Service](t, find(t, objs, "Service", svcName))
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != port {
			t.Errorf("%s scrapes port %v, Service %s has %v", key(sm), port, svcName, svc.Spec.Ports)
		}
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		for k, v := range sel {
			if svc.Labels[k] != v {
				t.Errorf("%s selects %s=%s, Service %s has labels %v", key(sm), k, v, svcName, svc.Labels)
			}
		}
	}
}

// TestChartCRDsMatchConfig fails when charts/portcullis/crds is not a
// byte-identical copy of config/crd/bases (`make manifests` writes both).
func TestChartCRDsMatchConfig(t *testing.T) {
	requireSameYAML(t, filepath.Join(repoRoot, "config", "crd", "bases"), filepath.Join(repoRoot, chartDir, "crds"))
}

// requireSameYAML fails unless dst holds exactly the *.yaml files of src
// (kustomization.yaml aside, which only config/ has), byte for byte: the
// chart ships copies that `make manifests` keeps in step.
func requireSameYAML(t *testing.T, src, dst string) {
	t.Helper()
	names := func(dir string) []string {
		m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range m {
			if n := filepath.Base(p); n != "kustomization.yaml" {
				out = append(out, n)
			}
		}
		return out
	}
	want, got := names(src), names(dst)
	if len(want) == 0 {
		t.Fatalf("no manifests in %s", src)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s holds %q, %s %q: run `make manifests`", dst, got, src, want)
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
			t.Errorf("%s differs from %s: run `make manifests`", filepath.Join(dst, n), filepath.Join(src, n))
		}
	}
}
