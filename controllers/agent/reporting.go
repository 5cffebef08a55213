package agent

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// leaseHolder creates and renews the agent's Lease. It does not release it
// on shutdown: the Lease expires on its own, and the operator stops
// counting the agent then.
type leaseHolder struct{ a *Agent }

func (l *leaseHolder) Start(ctx context.Context) error {
	t := time.NewTicker(l.a.cfg.RenewInterval)
	defer t.Stop()
	for {
		if err := l.a.renewLease(ctx); err != nil && ctx.Err() == nil {
			ctrl.Log.WithName("agent").Error(err, "renewing the Lease")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *Agent) renewLease(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	secs := int32(a.cfg.LeaseDuration / time.Second)
	holder := a.cfg.NodeName
	var lease coordinationv1.Lease
	key := client.ObjectKey{Namespace: a.cfg.SystemNamespace, Name: v1alpha1.AgentLeaseName(a.cfg.NodeName)}
	err := a.direct.Get(ctx, key, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs,
				AcquireTime: &now, RenewTime: &now},
		}
		return a.direct.Create(ctx, &lease)
	}
	if err != nil {
		return err
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != holder {
		lease.Spec.AcquireTime = &now
	}
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = &holder, &secs, &now
	return a.direct.Update(ctx, &lease)
}

// report applies this node's status.nodes entry of every policy whose
// realised generation or message changed since the last report.
func (a *Agent) report(ctx context.Context) {
	type job struct {
		key policy.PolicyKey
		obj client.Object
		st  reportState
	}
	var jobs []job
	a.mu.Lock()
	for k, rec := range a.policies {
		st := reportState{gen: rec.realized, msg: rec.message}
		if rec.realized < rec.inForce && st.msg == "" {
			if a.syncErr == "" {
				continue // not written yet; the next sync reports it
			}
			// Still in force: the realised generation; why the newer
			// one is not: the failing write (retried every second).
			st.msg = fmt.Sprintf("generation %d not in force yet: %s", rec.inForce, a.syncErr)
		}
		if rec.reported != nil && *rec.reported == st {
			continue
		}
		jobs = append(jobs, job{k, rec.obj, st})
	}
	a.mu.Unlock()
	for _, j := range jobs {
		entry := map[string]any{"name": a.cfg.NodeName, "observedGeneration": j.st.gen}
		if j.st.msg != "" {
			entry["message"] = j.st.msg
		}
		meta := map[string]any{"name": j.obj.GetName()}
		if j.obj.GetNamespace() != "" {
			meta["namespace"] = j.obj.GetNamespace()
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(),
			"kind":       j.key.Kind,
			"metadata":   meta,
			"status":     map[string]any{"nodes": []any{entry}},
		}}
		err := a.direct.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(v1alpha1.AgentFieldManager(a.cfg.NodeName)), client.ForceOwnership)
		if err != nil {
			if !apierrors.IsNotFound(err) && ctx.Err() == nil {
				ctrl.Log.WithName("agent").Error(err, "reporting policy status", "policy", j.key.String())
				a.kickLater()
			}
			continue
		}
		a.mu.Lock()
		if rec := a.policies[j.key]; rec != nil {
			st := j.st
			rec.reported = &st
		}
		a.mu.Unlock()
	}
}

func (a *Agent) kickLater() { time.AfterFunc(time.Second, a.kickReport) }

// kickReport asks the reporter for a pass; requests made while one runs
// coalesce into one more.
func (a *Agent) kickReport() {
	select {
	case a.reportTrigger <- struct{}{}:
	default:
	}
}

// reporter applies the status.nodes entries on its own goroutine, after
// every sync pass, so that the sync loop never waits on the apiserver.
type reporter struct{ a *Agent }

func (r *reporter) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.a.reportTrigger:
			r.a.report(ctx)
		}
	}
}
