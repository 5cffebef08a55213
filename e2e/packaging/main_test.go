package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Set by TestMain.
var (
	// repoRoot is the module root (the directory holding go.mod).
	repoRoot string
	// kubeconfig is a kubeconfig file for a system:masters user.
	kubeconfig string
	// adminConfig is the same user's REST config.
	adminConfig *rest.Config
	// k8s is a client as that user.
	k8s client.Client
	// toolHome isolates helm's and kubectl's caches and config from the
	// user's.
	toolHome string
)

// Namespaces created before any test: the ones the manifests install into
// (a server-side dry run of a namespaced object needs its namespace to
// exist, and a dry-run Namespace in the same stream does not create it)
// and the custom secrets namespace of one chart value set.
var testNamespaces = []*corev1.Namespace{
	{ObjectMeta: metav1.ObjectMeta{Name: "portcullis-system", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "privileged",
	}}},
	{ObjectMeta: metav1.ObjectMeta{Name: "portcullis-secrets", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}},
	{ObjectMeta: metav1.ObjectMeta{Name: "tls-keys", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}},
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "FAIL e2e/packaging: KUBEBUILDER_ASSETS is not set. Run `make test`: it builds kube-apiserver, etcd and kubectl into bin/k8s/<version> and points KUBEBUILDER_ASSETS there.")
		return 1
	}
	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL e2e/packaging:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "portcullis-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL e2e/packaging:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	toolHome = filepath.Join(tmp, "home")

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	start := time.Now()
	if _, err := env.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL e2e/packaging: starting the control plane from KUBEBUILDER_ASSETS=%s: %v\n", os.Getenv("KUBEBUILDER_ASSETS"), err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e/packaging: stopping the control plane:", err)
		}
	}()
	if err := setup(env, tmp); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL e2e/packaging:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e/packaging: control plane up in %v\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// setup provisions the admin user, its kubeconfig and the namespaces.
func setup(env *envtest.Environment, tmp string) error {
	user, err := env.AddUser(envtest.User{Name: "packaging-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	adminConfig = user.Config()
	if k8s, err = client.New(adminConfig, client.Options{}); err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range testNamespaces {
		if err := k8s.Create(ctx, ns.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", ns.Name, err)
		}
	}
	return nil
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// tool returns the binary named by the environment variable env, else
// def relative to the repository root, or fails the test saying how to
// build it.
func tool(t testing.TB, env, def string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		bin = def
	}
	if !filepath.IsAbs(bin) && strings.ContainsRune(bin, filepath.Separator) {
		bin = filepath.Join(repoRoot, bin)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s: %v: run `make tools` (or set %s to the binary)", env, err, env)
	}
	return path
}

func kubectlBin(t testing.TB) string   { return tool(t, "KUBECTL", "bin/kubectl") }
func helmBin(t testing.TB) string      { return tool(t, "HELM", "bin/helm") }
func kustomizeBin(t testing.TB) string { return tool(t, "KUSTOMIZE", "bin/kustomize") }

// result is what a CLI run produced.
type result struct {
	stdout, stderr []byte
	err            error
}

// run runs bin with args in the repository root, stdin as its input, the
// admin kubeconfig, and helm's and kubectl's state under toolHome.
func run(t testing.TB, stdin []byte, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+kubeconfig,
		"HOME="+toolHome,
		"HELM_CACHE_HOME="+filepath.Join(toolHome, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(toolHome, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(toolHome, "helm-data"),
	)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return result{stdout.Bytes(), stderr.Bytes(), err}
}

// mustRun is run that fails the test when bin fails.
func mustRun(t testing.TB, stdin []byte, bin string, args ...string) []byte {
	t.Helper()
	r := run(t, stdin, bin, args...)
	if r.err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), r.err, r.stderr)
	}
	return r.stdout
}

// applyDryRun applies manifests with a server-side dry run, strict field
// validation (kubectl's default), and fails the test on an error or on any
// warning the apiserver returns (deprecated APIs, Pod Security, unknown
// fields tolerated elsewhere).
func applyDryRun(t testing.TB, manifests []byte) {
	t.Helper()
	if len(bytes.TrimSpace(manifests)) == 0 {
		t.Fatal("nothing to apply")
	}
	r := run(t, manifests, kubectlBin(t), "apply", "--dry-run=server", "--validate=strict", "-f", "-")
	if r.err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", r.err, r.stderr)
	}
	var warnings []string
	for _, line := range strings.Split(strings.TrimSpace(string(r.stderr)), "\n") {
		// An artifact of this test, not of the manifests: TestMain and
		// envtest create the namespaces and CRDs without kubectl apply.
		if line == "" || strings.Contains(line, "is missing the kubectl.kubernetes.io/last-applied-configuration annotation") {
			continue
		}
		warnings = append(warnings, line)
	}
	if len(warnings) > 0 {
		t.Errorf("kubectl apply --dry-run=server warned:\n%s", strings.Join(warnings, "\n"))
	}
	t.Logf("applied (dry run):\n%s", r.stdout)
}
