package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/policy"
)

// bootstrap feeds the repository from the synced caches before the first
// sync, so that the first write after a restart already has every policy
// (no window with a partial policy set), and detaches the pinned endpoints
// whose pods are gone.
func (a *Agent) bootstrap(ctx context.Context) error {
	var nss corev1.NamespaceList
	if err := a.reader.List(ctx, &nss); err != nil {
		return err
	}
	for _, ns := range nss.Items {
		if err := a.applyNamespace(ctx, ns.Name); err != nil {
			return err
		}
	}
	for _, k := range v1alpha1.Kinds {
		list := k.NewList()
		if err := a.reader.List(ctx, list); err != nil {
			return err
		}
		for _, o := range list.Policies() {
			if err := a.applyPolicy(ctx, k, client.ObjectKeyFromObject(o)); err != nil {
				return err
			}
		}
	}
	var nodes corev1.NodeList
	if err := a.reader.List(ctx, &nodes); err != nil {
		return err
	}
	for _, n := range nodes.Items {
		if err := a.applyNode(ctx, n.Name); err != nil {
			return err
		}
	}
	var svcs corev1.ServiceList
	if err := a.reader.List(ctx, &svcs); err != nil {
		return err
	}
	for _, s := range svcs.Items {
		if err := a.applyService(ctx, client.ObjectKeyFromObject(&s)); err != nil {
			return err
		}
	}
	a.mu.Lock()
	err := a.pruneServicesLocked()
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("removing stale service translations: %w", err)
	}
	var pods corev1.PodList
	if err := a.reader.List(ctx, &pods); err != nil {
		return err
	}
	for _, p := range pods.Items {
		if err := a.applyPod(ctx, client.ObjectKeyFromObject(&p)); err != nil {
			return err
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	live := map[netip.Addr]bool{}
	for _, p := range a.pods {
		if p.local {
			live[p.ip] = true
		}
	}
	prev, err := a.dp.Endpoints()
	if err != nil {
		return err
	}
	for _, e := range prev {
		if live[e.IP] {
			// Identity numbers are not kept across restarts: until the
			// first sync has rewritten the ipcache and this endpoint's
			// entries, an old entry could meet a new number. Lock the
			// enforcing endpoints down for that moment (fail closed);
			// the first sync lifts it.
			if e.Flags&(bpf.FlagEnforceIngress|bpf.FlagEnforceEgress|bpf.FlagAudit) != 0 {
				if err := a.dp.SetEndpointFlags(e.IP, e.Flags|bpf.FlagLockdown); err != nil {
					return err
				}
			}
			continue
		}
		ctrl.Log.WithName("agent").Info("detaching the endpoint of a pod that is gone", "ip", e.IP, "id", e.ID)
		if err := a.dp.DetachEndpoint(e.IP); err != nil {
			return err
		}
		if err := a.dp.SyncEndpointPolicy(e.ID, nil); err != nil {
			return err
		}
		_ = a.dp.DeleteIPCache(netip.PrefixFrom(e.IP, 32))
	}
	a.booted = true
	return nil
}

// sync writes the repository's state into the datapath: ipcache additions
// first, then each local endpoint's policy entries (the diff writer writes
// only changed keys), its attachment and flags, then ipcache removals. It
// reports whether everything was written.
func (a *Agent) sync(ctx context.Context) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Everything below reads the repository as of rev or later: waiters
	// for rev (answers held by the DNS proxy) may go once the pass is done.
	rev := a.repo.Revision()
	defer a.syncs.passed(rev)
	log := ctrl.Log.WithName("agent")
	ok := true
	firstErr := ""
	note := func(what string, err error) {
		ok = false
		if firstErr == "" {
			firstErr = what + ": " + err.Error()
		}
	}

	want := map[netip.Prefix]policy.NumericIdentity{}
	for _, ident := range a.repo.Identities() {
		if !ident.IsCIDR() || ident.ID == policy.IdentityWorld {
			continue
		}
		for _, p := range ident.Prefixes {
			if p.Addr().Is4() {
				want[p.Masked()] = ident.ID
			}
		}
	}
	// Node addresses (host, remote-node) before pods: a pod's address wins.
	for ip, id := range a.repo.NodeAddrs() {
		if ip.Is4() {
			want[netip.PrefixFrom(ip, 32)] = id
		}
	}
	for _, p := range a.pods {
		want[netip.PrefixFrom(p.ip, 32)] = a.repo.IdentityOfIP(p.ip).ID
	}
	pols := make(map[*EndpointInfo]*policy.EndpointPolicy, len(a.endpoints))
	for _, ep := range a.endpoints {
		pol := a.repo.EndpointPolicy(ep.Namespace, ep.Name)
		if pol == nil {
			ep.State = StateWaitingForIdentity
			continue
		}
		ep.Identity = pol.Identity.ID
		if ep.State != StateLockdown {
			ep.State = StateRegenerating
		}
		err := a.dp.SyncEndpointPolicy(ep.ID, pol)
		if errors.Is(err, bpf.ErrMapFull) {
			note("endpoint "+ep.Namespace+"/"+ep.Name+" in lockdown", err)
			if ep.State != StateLockdown {
				lockdowns.Inc()
				a.podEvent(ctx, ep, corev1.EventTypeWarning, "Lockdown", "%v: every packet from and to the pod is dropped until its policy fits", err)
			}
			ep.State, ep.Message = StateLockdown, err.Error()
			if !ep.attached {
				if err := a.attach(ep, bpf.FlagLockdown); err != nil {
					ep.Message = err.Error()
				}
			}
			continue
		}
		if err != nil {
			note("writing the policy of "+ep.Namespace+"/"+ep.Name, err)
			ep.Message = err.Error()
			log.Error(err, "writing endpoint policy", "pod", ep.Namespace+"/"+ep.Name)
			continue
		}
		flags := endpointFlags(pol)
		if !ep.attached {
			err = a.attach(ep, flags)
		} else if flags != ep.Flags || ep.State == StateLockdown {
			err = a.dp.SetEndpointFlags(ep.IP, flags)
		}
		if err != nil {
			note("attaching "+ep.Namespace+"/"+ep.Name, err)
			ep.Message = err.Error()
			log.Error(err, "attaching endpoint", "pod", ep.Namespace+"/"+ep.Name)
			continue
		}
		if ep.State == StateLockdown {
			a.podEvent(ctx, ep, corev1.EventTypeNormal, "LockdownLifted", "the pod's policy fits in the policy map again")
		}
		ep.Flags, ep.State, ep.Message = flags, StateReady, ""
		pols[ep] = pol
	}

	// The ipcache changes after the policies: a new identity's entries are
	// in the policy map before any address maps to it, so a new peer never
	// meets the wildcard entries meant for identities no rule names (which
	// may allow what a rule denies to it).
	for p, id := range want {
		if have, found := a.ipcache[p]; found && have == id {
			continue
		}
		if err := a.dp.SetIPCache(p, id); err != nil {
			log.Error(err, "writing the ipcache", "prefix", p)
			note("writing the ipcache", err)
			continue
		}
		a.ipcache[p] = id
	}

	for p := range a.ipcache {
		if _, found := want[p]; found {
			continue
		}
		if err := a.dp.DeleteIPCache(p); err != nil {
			log.Error(err, "deleting from the ipcache", "prefix", p)
			note("deleting from the ipcache", err)
			continue
		}
		delete(a.ipcache, p)
	}

	a.syncErr = firstErr
	if ok {
		for _, rec := range a.policies {
			rec.realized = rec.inForce
		}
	}
	a.publishProxySnapshotLocked(pols)
	a.updateGaugesLocked()
	return ok
}

func (a *Agent) attach(ep *EndpointInfo, flags bpf.EndpointFlags) error {
	ifindex, err := bpf.HostInterface(ep.IP)
	if err != nil {
		return err
	}
	if err := a.dp.AttachEndpoint(ifindex, ep.IP, ep.ID, flags); err != nil {
		return err
	}
	ep.IfIndex, ep.attached, ep.Flags = ifindex, true, flags
	return nil
}

func (a *Agent) podEvent(ctx context.Context, ep *EndpointInfo, typ, reason, format string, args ...any) {
	if a.recorder == nil {
		return
	}
	var pod corev1.Pod
	if err := a.reader.Get(ctx, client.ObjectKey{Namespace: ep.Namespace, Name: ep.Name}, &pod); err != nil {
		return
	}
	a.recorder.Eventf(&pod, nil, typ, reason, "Regenerate", format, args...)
}

// syncLoop bootstraps and then syncs on every change, reporting after.
type syncLoop struct{ a *Agent }

func (s *syncLoop) Start(ctx context.Context) error {
	a := s.a
	log := ctrl.Log.WithName("agent")
	for {
		err := a.bootstrap(ctx)
		if err == nil {
			break
		}
		log.Error(err, "bootstrap")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	ready := a.cfg.Ready
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		ok := a.sync(ctx)
		if ok {
			a.synced.Store(true)
		}
		if ok && ready != nil {
			close(ready)
			ready = nil
		}
		a.kickReport()
		if !ok {
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.trigger:
		case <-retry.C:
		}
	}
}

// endpointFlags are the datapath flags for an endpoint's policy.
func endpointFlags(pol *policy.EndpointPolicy) bpf.EndpointFlags {
	var f bpf.EndpointFlags
	if pol.Enforced[policy.Ingress] {
		f |= bpf.FlagEnforceIngress
	}
	if pol.Enforced[policy.Egress] {
		f |= bpf.FlagEnforceEgress
	}
	for _, s := range pol.State {
		if s != nil && s.Audit {
			f |= bpf.FlagAudit
		}
	}
	return f
}
