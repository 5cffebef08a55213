package operator

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// Limits: metav1.Condition's Message, events.k8s.io/v1 Event's note.
const (
	maxConditionMessage = 32768
	maxEventNote        = 1024
)

// PolicyReconciler reconciles the status of one policy kind: Accepted,
// ResolvedRefs, Programmed and observedGeneration. It only reads the
// policy and writes its status (a merge patch of the operator's fields;
// status.nodes belongs to the agents), so it is idempotent: a reconcile
// that finds the status right writes nothing and emits nothing.
type PolicyReconciler struct {
	Client   client.Client
	Kind     v1alpha1.Kind
	Recorder events.EventRecorder
	Agents   *AgentTracker
	grants   *grants
}

var _ reconcile.Reconciler = (*PolicyReconciler)(nil)

// +kubebuilder:rbac:groups=policy.portcullis.dev,resources=trafficpolicies;clustertrafficpolicies;admintrafficpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=policy.portcullis.dev,resources=trafficpolicies/status;clustertrafficpolicies/status;admintrafficpolicies/status,verbs=patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=referencegrants,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch,namespace=portcullis-system
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile derives the policy's status from the policy, the secrets and
// grants it refers to, the live agents and their reports.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.Kind.New()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, nil
	}
	orig := obj.DeepCopyObject().(v1alpha1.Policy)
	before := orig.PolicyStatus()
	st := obj.PolicyStatus()
	gen := obj.GetGeneration()

	errs := policy.Validate(obj, compileOptions)
	refs, refErrs := PolicyRefs(obj)
	errs = append(errs, refErrs...)
	accepted := metav1.Condition{Type: v1alpha1.ConditionAccepted, ObservedGeneration: gen,
		Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted, Message: "the policy is valid"}
	if len(errs) > 0 {
		accepted.Status, accepted.Reason = metav1.ConditionFalse, v1alpha1.ReasonInvalid
		accepted.Message = truncate(errs.ToAggregate().Error())
	}

	resolved, err := r.resolvedRefs(ctx, obj, refs)
	if err != nil {
		return ctrl.Result{}, err
	}
	resolved.ObservedGeneration = gen

	live, err := r.Agents.Live(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	programmed := programmedCondition(gen, accepted.Status == metav1.ConditionTrue, live, st)

	st.ObservedGeneration = gen
	meta.SetStatusCondition(&st.Conditions, accepted)
	meta.SetStatusCondition(&st.Conditions, resolved)
	meta.SetStatusCondition(&st.Conditions, programmed)
	if equality.Semantic.DeepEqual(before, st) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Patch(ctx, obj, client.MergeFrom(orig), client.FieldOwner(v1alpha1.OperatorFieldManager)); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("patching %s status: %w", r.Kind.Name, err)
	}
	r.events(obj, before, st)
	return ctrl.Result{}, nil
}

// events emits one Event per condition that changed status or reason.
func (r *PolicyReconciler) events(obj client.Object, before, after *v1alpha1.PolicyStatus) {
	if r.Recorder == nil {
		return
	}
	for _, c := range after.Conditions {
		c.Message = truncateTo(c.Message, maxEventNote)
		old := meta.FindStatusCondition(before.Conditions, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason {
			continue
		}
		switch {
		case c.Type == v1alpha1.ConditionAccepted && c.Status == metav1.ConditionTrue:
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, c.Reason, "Validate", "%s", c.Message)
		case c.Type == v1alpha1.ConditionAccepted:
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, c.Reason, "Validate", "%s", c.Message)
		case c.Type == v1alpha1.ConditionResolvedRefs && c.Status == metav1.ConditionFalse:
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, c.Reason, "ResolveRefs", "%s", c.Message)
		case c.Type == v1alpha1.ConditionResolvedRefs && old != nil:
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, c.Reason, "ResolveRefs", "%s", c.Message)
		case c.Type == v1alpha1.ConditionProgrammed && c.Status == metav1.ConditionTrue:
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, c.Reason, "Program", "%s", c.Message)
		}
	}
}

// resolvedRefs checks every secret reference: permitted (same namespace
// or a ReferenceGrant), then present. Refused references win over missing
// ones in the reason; the message lists all of them.
func (r *PolicyReconciler) resolvedRefs(ctx context.Context, obj client.Object, refs []SecretRef) (metav1.Condition, error) {
	c := metav1.Condition{Type: v1alpha1.ConditionResolvedRefs, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonResolvedRefs}
	var refused, missing []string
	for _, ref := range refs {
		ok, why, err := r.grants.permitted(ctx, r.Kind.Name, obj.GetNamespace(), ref)
		if err != nil {
			return c, err
		}
		if !ok {
			refused = append(refused, ref.Path.String()+": "+why)
			continue
		}
		err = r.Client.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &corev1.Secret{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, ref.Path.String()+": secret "+ref.Key()+" not found")
		case err != nil:
			return c, fmt.Errorf("getting secret %s: %w", ref.Key(), err)
		}
	}
	switch {
	case len(refused) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonRefNotPermitted
		c.Message = truncate(strings.Join(append(refused, missing...), "; "))
	case len(missing) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound
		c.Message = truncate(strings.Join(missing, "; "))
	case len(refs) == 0:
		c.Message = "the policy refers to no secret"
	default:
		c.Message = fmt.Sprintf("%d secret reference(s) permitted and present", len(refs))
	}
	return c, nil
}

func truncate(s string) string { return truncateTo(s, maxConditionMessage) }

// truncateTo cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncateTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// SetupWithManager registers the reconciler for its kind. The secret and
// ReferenceGrant watches re-check ResolvedRefs; the agent tracker's
// notifications re-check Programmed when the set of live agents changes;
// the policy's own watch (status included) sees the agents' reports.
func (r *PolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(r.Kind.Name)).
		For(r.Kind.New()).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.forSecret),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		WatchesRawSource(source.Channel(r.Agents.Subscribe(), handler.EnqueueRequestsFromMapFunc(r.all)))
	if r.grants.enabled {
		b = b.Watches(&gatewayv1beta1.ReferenceGrant{}, handler.EnqueueRequestsFromMapFunc(r.forGrant))
	}
	return b.Complete(r)
}

func (r *PolicyReconciler) forSecret(ctx context.Context, o client.Object) []reconcile.Request {
	return r.list(ctx, client.MatchingFields{indexSecretRef: o.GetNamespace() + "/" + o.GetName()})
}

func (r *PolicyReconciler) forGrant(ctx context.Context, o client.Object) []reconcile.Request {
	return r.list(ctx, client.MatchingFields{indexSecretNamespace: o.GetNamespace()})
}

func (r *PolicyReconciler) all(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.list(ctx)
}

func (r *PolicyReconciler) list(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	l := r.Kind.NewList()
	if err := r.Client.List(ctx, l, opts...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing policies", "kind", r.Kind.Name)
		return nil
	}
	items := l.Policies()
	reqs := make([]reconcile.Request, len(items))
	for i, p := range items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(p)}
	}
	return reqs
}
