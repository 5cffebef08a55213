package operator

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// SecretSyncReconciler keeps the copies in the secrets namespace. Its
// requests are keyed by the source secret: a copy exists iff the source
// exists and at least one policy refers to it with a permitted reference
// (same namespace, or a ReferenceGrant). The copy carries the source's
// type and data; rotating the source updates it, and it is deleted when
// the last permitted reference goes.
type SecretSyncReconciler struct {
	Client           client.Client
	SecretsNamespace string
	grants           *grants
}

var _ reconcile.Reconciler = (*SecretSyncReconciler)(nil)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;update;patch;delete,namespace=portcullis-secrets

// Reconcile makes the copy of the source secret req match the references.
func (r *SecretSyncReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace == r.SecretsNamespace {
		return ctrl.Result{}, nil // the secrets namespace holds copies, not sources
	}
	wanted, err := r.wanted(ctx, req.Namespace, req.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	var src corev1.Secret
	srcErr := r.Client.Get(ctx, req.NamespacedName, &src)
	if srcErr != nil && !apierrors.IsNotFound(srcErr) {
		return ctrl.Result{}, fmt.Errorf("getting source secret %s: %w", req, srcErr)
	}
	copyKey := types.NamespacedName{Namespace: r.SecretsNamespace, Name: v1alpha1.SecretCopyName(req.Namespace, req.Name)}
	var cp corev1.Secret
	cpErr := r.Client.Get(ctx, copyKey, &cp)
	if cpErr != nil && !apierrors.IsNotFound(cpErr) {
		return ctrl.Result{}, fmt.Errorf("getting copy %s: %w", copyKey, cpErr)
	}
	haveCopy := cpErr == nil && isCopyOf(&cp, req.Namespace, req.Name)
	if cpErr == nil && !haveCopy {
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("secret %s exists and is not a copy of %s: leaving it alone", copyKey, req))
	}

	if !wanted || srcErr != nil {
		if !haveCopy {
			return ctrl.Result{}, nil
		}
		ctrl.LoggerFrom(ctx).Info("deleting secret copy", "copy", copyKey)
		err := r.Client.Delete(ctx, &cp, client.Preconditions{UID: &cp.UID})
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	desired := r.copyOf(&src, copyKey.Name)
	if !haveCopy {
		ctrl.LoggerFrom(ctx).Info("creating secret copy", "copy", copyKey)
		err := r.Client.Create(ctx, desired, client.FieldOwner(v1alpha1.OperatorFieldManager))
		if apierrors.IsAlreadyExists(err) {
			// The cache is behind; the copy's create event brings us back.
			return ctrl.Result{}, nil
		}
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("creating copy %s: %w", copyKey, err)
		}
		return ctrl.Result{}, nil
	}
	if cp.Type != desired.Type {
		// Type is immutable: delete the copy; its delete event brings us
		// back to create the new one.
		if err := r.Client.Delete(ctx, &cp, client.Preconditions{UID: &cp.UID}); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("replacing copy %s: %w", copyKey, err)
		}
		return ctrl.Result{}, nil
	}
	if maps.EqualFunc(cp.Data, desired.Data, bytesEqual) && labelsContain(cp.Labels, desired.Labels) && labelsContain(cp.Annotations, desired.Annotations) {
		return ctrl.Result{}, nil
	}
	orig := cp.DeepCopy()
	cp.Data = desired.Data
	cp.StringData = nil
	if cp.Labels == nil {
		cp.Labels = map[string]string{}
	}
	maps.Copy(cp.Labels, desired.Labels)
	if cp.Annotations == nil {
		cp.Annotations = map[string]string{}
	}
	maps.Copy(cp.Annotations, desired.Annotations)
	ctrl.LoggerFrom(ctx).Info("updating secret copy", "copy", copyKey)
	if err := r.Client.Patch(ctx, &cp, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}), client.FieldOwner(v1alpha1.OperatorFieldManager)); err != nil {
		return ctrl.Result{}, fmt.Errorf("updating copy %s: %w", copyKey, err)
	}
	return ctrl.Result{}, nil
}

// wanted reports whether some policy refers to namespace/name and may.
func (r *SecretSyncReconciler) wanted(ctx context.Context, namespace, name string) (bool, error) {
	key := namespace + "/" + name
	for _, k := range v1alpha1.Kinds {
		l := k.NewList()
		if err := r.Client.List(ctx, l, client.MatchingFields{indexSecretRef: key}); err != nil {
			return false, fmt.Errorf("listing %s referring to %s: %w", k.Name, key, err)
		}
		for _, p := range l.Policies() {
			if !p.GetDeletionTimestamp().IsZero() {
				continue
			}
			ok, _, err := r.grants.permitted(ctx, k.Name, p.GetNamespace(), SecretRef{Namespace: namespace, Name: name})
			if err != nil {
				return false, err
			}
			if ok {
				return true, nil
			}
		}
	}
	return false, nil
}

func (r *SecretSyncReconciler) copyOf(src *corev1.Secret, name string) *corev1.Secret {
	t := src.Type
	if t == corev1.SecretTypeServiceAccountToken {
		t = corev1.SecretTypeOpaque // that type makes the apiserver manage the data
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.SecretsNamespace,
			Name:      name,
			Labels: map[string]string{
				v1alpha1.SecretCopyManagedByLabel:  v1alpha1.SecretCopyManagedBy,
				v1alpha1.SecretCopySourceNamespace: src.Namespace,
			},
			Annotations: map[string]string{
				v1alpha1.SecretCopySourceNamespace: src.Namespace,
				v1alpha1.SecretCopySourceName:      src.Name,
			},
		},
		Type: t,
		Data: maps.Clone(src.Data),
	}
}

func isCopyOf(s *corev1.Secret, namespace, name string) bool {
	return s.Labels[v1alpha1.SecretCopyManagedByLabel] == v1alpha1.SecretCopyManagedBy &&
		s.Annotations[v1alpha1.SecretCopySourceNamespace] == namespace && s.Annotations[v1alpha1.SecretCopySourceName] == name
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func labelsContain(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// SetupWithManager registers the reconciler. Requests come from source
// secrets (any change: rotation), from copies (mapped back to their
// source, so a deleted or edited copy is restored), from policies (the
// references of both the old and the new object, so a dropped reference
// deletes its copy) and from ReferenceGrants (every reference into the
// grant's namespace).
func (r *SecretSyncReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("secretsync").
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.forSecret))
	for _, k := range v1alpha1.Kinds {
		b = b.Watches(k.New(), policyRefsHandler{})
	}
	if r.grants.enabled {
		b = b.Watches(&gatewayv1beta1.ReferenceGrant{}, handler.EnqueueRequestsFromMapFunc(r.forGrant))
	}
	return b.Complete(r)
}

func (r *SecretSyncReconciler) forSecret(_ context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() == r.SecretsNamespace {
		a := o.GetAnnotations()
		if o.GetLabels()[v1alpha1.SecretCopyManagedByLabel] != v1alpha1.SecretCopyManagedBy || a[v1alpha1.SecretCopySourceNamespace] == "" || a[v1alpha1.SecretCopySourceName] == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: a[v1alpha1.SecretCopySourceNamespace], Name: a[v1alpha1.SecretCopySourceName]}}}
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
}

func (r *SecretSyncReconciler) forGrant(ctx context.Context, o client.Object) []reconcile.Request {
	seen := map[types.NamespacedName]bool{}
	var reqs []reconcile.Request
	for _, k := range v1alpha1.Kinds {
		l := k.NewList()
		if err := r.Client.List(ctx, l, client.MatchingFields{indexSecretNamespace: o.GetNamespace()}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing policies", "kind", k.Name)
			continue
		}
		for _, p := range l.Policies() {
			refs, _ := PolicyRefs(p)
			for _, ref := range refs {
				n := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
				if ref.Namespace == o.GetNamespace() && !seen[n] {
					seen[n] = true
					reqs = append(reqs, reconcile.Request{NamespacedName: n})
				}
			}
		}
	}
	return reqs
}

// policyRefsHandler enqueues the secrets a policy refers to, before and
// after an update.
type policyRefsHandler struct{}

var _ handler.EventHandler = policyRefsHandler{}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func enqueueRefs(o client.Object, q queue) {
	if o == nil {
		return
	}
	refs, _ := PolicyRefs(o)
	for _, ref := range refs {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}})
	}
}

func (policyRefsHandler) Create(_ context.Context, e event.CreateEvent, q queue) {
	enqueueRefs(e.Object, q)
}

func (policyRefsHandler) Update(_ context.Context, e event.UpdateEvent, q queue) {
	enqueueRefs(e.ObjectOld, q)
	enqueueRefs(e.ObjectNew, q)
}

func (policyRefsHandler) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	enqueueRefs(e.Object, q)
}

func (policyRefsHandler) Generic(_ context.Context, e event.GenericEvent, q queue) {
	enqueueRefs(e.Object, q)
}
