package packaging

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHelmInstallDryRun runs Helm's own install path against the apiserver
// (`helm install --dry-run=server`: kubeVersion check, resource mapping,
// lookup) and checks NOTES.txt, including its warning for a release
// namespace whose Pod Security level refuses the agent.
func TestHelmInstallDryRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	restricted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restricted-install", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := k8s.Create(ctx, restricted); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		namespace string
		args      []string
		want      []string
		dontWant  []string
	}{{
		name:      "defaults",
		namespace: "portcullis-system",
		want:      []string{"enforcement mode:   default", "audit mode:         false", "secrets namespace:  notes-secrets", "helm test portcullis"},
		dontWant:  []string{"WARNING"},
	}, {
		name:      "deny by default, audited, no tests",
		namespace: "portcullis-system",
		args:      []string{"--set", "enforcementMode=always", "--set", "auditMode=true", "--set", "tests.enabled=false"},
		want:      []string{"flows no policy allows are DENIED", "denies are reported as AUDITED"},
		dontWant:  []string{"helm test"},
	}, {
		name:      "release namespace refusing privileged pods",
		namespace: "restricted-install",
		want:      []string{`WARNING: namespace restricted-install enforces Pod Security "restricted"`, "pod-security.kubernetes.io/enforce=privileged"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A secrets namespace that does not exist: Helm refuses to adopt
			// the one TestMain created.
			args := append([]string{"install", "portcullis", chartDir, "--namespace", tt.namespace, "--dry-run=server",
				"--set", "secretsNamespace=notes-secrets"}, tt.args...)
			out := string(mustRun(t, nil, helmBin(t), args...))
			notes := out
			if i := strings.Index(out, "NOTES:"); i >= 0 {
				notes = out[i:]
			} else {
				t.Fatalf("no NOTES in the output:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES lack %q:\n%s", w, notes)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(notes, w) {
					t.Errorf("NOTES contain %q:\n%s", w, notes)
				}
			}
		})
	}
}
