package operator

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Field indexes on the policy kinds.
const (
	indexSecretRef       = "portcullis.secretRefs"
	indexSecretNamespace = "portcullis.secretRefNamespaces"
)

// Options configure [Setup].
type Options struct {
	// SystemNamespace holds the agents' Leases; "" means
	// v1alpha1.DefaultSystemNamespace.
	SystemNamespace string
	// SecretsNamespace receives the secret copies; "" means
	// v1alpha1.DefaultSecretsNamespace.
	SecretsNamespace string
	// AgentPollInterval is how often the live agents are recomputed; zero
	// means 2s.
	AgentPollInterval time.Duration
}

// Setup registers the field indexes, the three policy reconcilers, the
// secret sync reconciler and the agent tracker with mgr. The manager's
// cache must cover Leases in the system namespace, and Secrets and
// policies in every namespace. When the ReferenceGrant API is not served
// (its CRD is not installed), only same-namespace secret references are
// permitted; installing it later needs an operator restart.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.SystemNamespace == "" {
		opts.SystemNamespace = v1alpha1.DefaultSystemNamespace
	}
	if opts.SecretsNamespace == "" {
		opts.SecretsNamespace = v1alpha1.DefaultSecretsNamespace
	}
	for _, k := range v1alpha1.Kinds {
		if err := mgr.GetFieldIndexer().IndexField(ctx, k.New(), indexSecretRef, func(o client.Object) []string {
			refs, _ := PolicyRefs(o)
			keys := make([]string, len(refs))
			for i, r := range refs {
				keys[i] = r.Key()
			}
			return keys
		}); err != nil {
			return fmt.Errorf("indexing %s by secret: %w", k.Name, err)
		}
		if err := mgr.GetFieldIndexer().IndexField(ctx, k.New(), indexSecretNamespace, func(o client.Object) []string {
			refs, _ := PolicyRefs(o)
			var nss []string
			seen := map[string]bool{}
			for _, r := range refs {
				if !seen[r.Namespace] {
					seen[r.Namespace] = true
					nss = append(nss, r.Namespace)
				}
			}
			return nss
		}); err != nil {
			return fmt.Errorf("indexing %s by secret namespace: %w", k.Name, err)
		}
	}

	g := &grants{reader: mgr.GetClient()}
	_, err := mgr.GetRESTMapper().RESTMapping(schema.GroupKind{Group: gatewayv1beta1.GroupName, Kind: "ReferenceGrant"}, gatewayv1beta1.GroupVersion.Version)
	switch {
	case err == nil:
		g.enabled = true
	case meta.IsNoMatchError(err):
		ctrl.LoggerFrom(ctx).Info("the ReferenceGrant API (gateway.networking.k8s.io/v1beta1) is not installed: only same-namespace secret references are permitted")
	default:
		return fmt.Errorf("looking up the ReferenceGrant API: %w", err)
	}

	tracker := &AgentTracker{Reader: mgr.GetClient(), Namespace: opts.SystemNamespace, Interval: opts.AgentPollInterval}
	if err := mgr.Add(tracker); err != nil {
		return fmt.Errorf("adding the agent tracker: %w", err)
	}
	for _, k := range v1alpha1.Kinds {
		r := &PolicyReconciler{Client: mgr.GetClient(), Kind: k, Recorder: mgr.GetEventRecorder(v1alpha1.OperatorFieldManager), Agents: tracker, grants: g}
		if err := r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s reconciler: %w", k.Name, err)
		}
	}
	s := &SecretSyncReconciler{Client: mgr.GetClient(), SecretsNamespace: opts.SecretsNamespace, grants: g}
	if err := s.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the secret sync reconciler: %w", err)
	}
	return nil
}
