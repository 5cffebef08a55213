// Command portcullis-operator runs the Portcullis operator: the policy
// status reconcilers and the TLS secret sync of package
// controllers/operator, in a controller-runtime manager with leader
// election, health and readiness probes, and metrics.
//
//	portcullis-operator --kubeconfig=FILE --leader-elect=false \
//	    --metrics-bind-address=0 --health-probe-bind-address=127.0.0.1:0
//
// In a cluster (config/rbac, the Helm chart) it runs with --leader-elect,
// --metrics-bind-address=:8443 (HTTPS, callers authenticated and
// authorized by the apiserver: TokenReview and SubjectAccessReview) and
// --health-probe-bind-address=:8081. SIGTERM or SIGINT stops it
// gracefully: the leader releases its Lease on the way out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/operator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis-operator:", err)
		os.Exit(1)
	}
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	utilruntime.Must(gatewayv1beta1.Install(s))
	return s
}

func run() error {
	var (
		leaderElect      bool
		metricsAddr      string
		metricsSecure    bool
		probeAddr        string
		systemNamespace  string
		secretsNamespace string
		shutdownTimeout  time.Duration
	)
	// --kubeconfig is registered on flag.CommandLine by controller-runtime.
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader (a Lease in --system-namespace) so that only one replica reconciles.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint, e.g. :8443; 0 disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to authenticated and authorized callers only.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz; 0 disables them.")
	flag.StringVar(&systemNamespace, "system-namespace", v1alpha1.DefaultSystemNamespace, "Namespace of the operator's and the agents' Leases.")
	flag.StringVar(&secretsNamespace, "secrets-namespace", v1alpha1.DefaultSecretsNamespace, "Namespace that receives the copies of the secrets policies refer to.")
	flag.DurationVar(&shutdownTimeout, "graceful-shutdown-timeout", 30*time.Second, "How long reconcilers get to finish on shutdown.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: metricsSecure}
	if metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        newScheme(),
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "portcullis-operator.policy.portcullis.dev",
		LeaderElectionNamespace:       systemNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &shutdownTimeout,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				// Only the agents' Leases (and our own) are of interest.
				&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{systemNamespace: {}}},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := operator.Setup(ctx, mgr, operator.Options{SystemNamespace: systemNamespace, SecretsNamespace: secretsNamespace}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("caches not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	log.Info("starting", "systemNamespace", systemNamespace, "secretsNamespace", secretsNamespace, "leaderElect", leaderElect)
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}
