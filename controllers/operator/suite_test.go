package operator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// One apiserver and one operator for the whole package (TestMain).
var (
	cfg      *rest.Config
	k8s      client.Client // direct, uncached: what a user sees
	scheme   = runtime.NewScheme()
	testCtx  context.Context
	waitTime = 30 * time.Second
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1beta1.Install(scheme))
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: these tests need a real kube-apiserver and etcd. "+
			"Run `make test` (it builds bin/k8s/<version> and exports KUBEBUILDER_ASSETS), "+
			"or set KUBEBUILDER_ASSETS=$PWD/bin/k8s/<version>.")
		return 1
	}
	grantCRD, err := referenceGrantCRD()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases"), grantCRD},
		ErrorIfCRDPathMissing: true,
	}
	// envtest's kube-apiserver defaults to --authorization-mode=RBAC; say
	// so explicitly, since the RBAC tests mean nothing without it.
	env.ControlPlane.GetAPIServer().Configure().Set("authorization-mode", "RBAC")
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	testCtx = ctx
	for _, ns := range []string{v1alpha1.DefaultSystemNamespace, v1alpha1.DefaultSecretsNamespace} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}

	if os.Getenv("TEST_OPERATOR_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{v1alpha1.DefaultSystemNamespace: {}}},
			},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := Setup(ctx, mgr, Options{AgentPollInterval: 200 * time.Millisecond}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	return code
}

// referenceGrantCRD is the ReferenceGrant CRD of the gateway-api module
// that go.mod pins.
func referenceGrantCRD() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("locating the gateway-api module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_referencegrants.yaml"), nil
}

// eventually polls f until it returns nil or waitTime passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %v: %v", what, waitTime, err)
}

// consistently fails if f returns an error within d.
func consistently(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	if err := k8s.Create(testCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// statusOf returns the status of a policy of any kind.
func statusOf(o client.Object) *v1alpha1.PolicyStatus {
	switch p := o.(type) {
	case *v1alpha1.TrafficPolicy:
		return &p.Status
	case *v1alpha1.ClusterTrafficPolicy:
		return &p.Status
	case *v1alpha1.AdminTrafficPolicy:
		return &p.Status
	}
	panic(fmt.Sprintf("not a policy: %T", o))
}

// waitCondition waits until obj's condition typ has status and reason for
// obj's current generation, and returns the condition.
func waitCondition(t *testing.T, obj client.Object, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, fmt.Sprintf("%s %s=%s/%s", obj.GetName(), typ, status, reason), func() error {
		if err := k8s.Get(testCtx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		st := statusOf(obj)
		for _, c := range st.Conditions {
			if c.Type != typ {
				continue
			}
			got = c
			if c.Status != status || c.Reason != reason {
				return fmt.Errorf("got %s/%s: %s", c.Status, c.Reason, c.Message)
			}
			if c.ObservedGeneration != obj.GetGeneration() || st.ObservedGeneration != obj.GetGeneration() {
				return fmt.Errorf("observedGeneration %d (status %d), generation %d", c.ObservedGeneration, st.ObservedGeneration, obj.GetGeneration())
			}
			return nil
		}
		return fmt.Errorf("no %s condition yet", typ)
	})
	return got
}

// eventsFor returns the Events about obj with the given reason.
func eventsFor(t *testing.T, obj client.Object, reason string) []eventsv1.Event {
	t.Helper()
	ns := obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	var l eventsv1.EventList
	if err := k8s.List(testCtx, &l, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range l.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.UID == obj.GetUID() && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for exactly one Event about obj with reason and type.
func waitEvent(t *testing.T, obj client.Object, typ, reason string) eventsv1.Event {
	t.Helper()
	var ev eventsv1.Event
	eventually(t, fmt.Sprintf("event %s %s about %s", typ, reason, obj.GetName()), func() error {
		evs := eventsFor(t, obj, reason)
		if len(evs) != 1 {
			return fmt.Errorf("got %d events", len(evs))
		}
		if evs[0].Type != typ {
			return fmt.Errorf("event type %s, want %s", evs[0].Type, typ)
		}
		ev = evs[0]
		return nil
	})
	return ev
}
