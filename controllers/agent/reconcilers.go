package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

func newManager(cfg Config) (ctrl.Manager, error) {
	metricsAddr := cfg.MetricsBindAddress
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	probeAddr := cfg.HealthProbeBindAddress
	if probeAddr == "" {
		probeAddr = "0"
	}
	mgr, err := ctrl.NewManager(cfg.RESTConfig, ctrl.Options{
		Scheme:                 newScheme(),
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         false,
		// Every agent runs its own controllers; a process may run Run more
		// than once (tests restart the agent in-process).
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			// Secrets are read in the secrets namespace only: the agent's
			// RBAC allows nothing else, and a cluster-wide informer would
			// fail to list.
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Namespaces: map[string]cache.Config{cfg.SecretsNamespace: {}}},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

func (a *Agent) setupReconcilers(mgr ctrl.Manager) error {
	if err := ctrl.NewControllerManagedBy(mgr).Named("agent-namespace").For(&corev1.Namespace{}).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, a.applyNamespace(ctx, req.Name)
		})); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("agent-node").For(&corev1.Node{}).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, a.applyNode(ctx, req.Name)
		})); err != nil {
		return err
	}
	for _, k := range v1alpha1.Kinds {
		if err := ctrl.NewControllerManagedBy(mgr).Named("agent-" + k.Name).
			For(k.New()).
			Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
				return reconcile.Result{}, a.applyPolicy(ctx, k, req.NamespacedName)
			})); err != nil {
			return err
		}
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("agent-secret").For(&corev1.Secret{}).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, a.applySecret(ctx, req.NamespacedName)
		})); err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("agent-pod").For(&corev1.Pod{}).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, a.applyPod(ctx, req.NamespacedName)
		})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("agent-service").For(&corev1.Service{}).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			svc := o.GetLabels()[discoveryv1.LabelServiceName]
			if svc == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: svc}}}
		})).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{}, a.applyService(ctx, req.NamespacedName)
		}))
}

// applyNamespace feeds a namespace's labels and audit annotation.
func (a *Agent) applyNamespace(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ns corev1.Namespace
	if err := a.reader.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		// A deleted namespace has no pods left; its labels are moot.
		return client.IgnoreNotFound(err)
	}
	a.repo.UpsertNamespace(ns.Name, ns.Labels, ns.Annotations[v1alpha1.AuditAnnotation] == "true")
	a.kick()
	return nil
}

// applyNode feeds a node's IPv4 InternalIP and ExternalIP addresses: this
// node's become the identity host, the others' remote-node.
func (a *Agent) applyNode(ctx context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var node corev1.Node
	if err := a.reader.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		a.repo.DeleteNode(name)
		a.kick()
		return nil
	}
	var ips []netip.Addr
	for _, na := range node.Status.Addresses {
		if na.Type != corev1.NodeInternalIP && na.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(na.Address); err == nil && ip.Unmap().Is4() {
			ips = append(ips, ip.Unmap())
		}
	}
	a.repo.UpsertNode(node.Name, ips, node.Name == a.cfg.NodeName)
	a.kick()
	return nil
}

// applyPolicy compiles a policy into the repository. A policy that does not
// compile leaves its previous version in force; the error is reported in
// the node's status entry.
func (a *Agent) applyPolicy(ctx context.Context, k v1alpha1.Kind, key types.NamespacedName) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	pk := policy.PolicyKey{Kind: k.Name, Namespace: key.Namespace, Name: key.Name}
	obj := k.New()
	if err := a.reader.Get(ctx, key, obj); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		a.repo.DeletePolicy(pk)
		delete(a.policies, pk)
		a.kick()
		return nil
	}
	rec := a.policies[pk]
	if rec == nil {
		rec = &policyRecord{}
		a.policies[pk] = rec
	}
	rec.obj = obj
	if _, errs := a.repo.UpsertPolicy(obj); len(errs) > 0 {
		rec.message = fmt.Sprintf("generation %d not in force: %v", obj.GetGeneration(), errs.ToAggregate())
	} else {
		rec.inForce, rec.message = obj.GetGeneration(), ""
	}
	a.kick()
	return nil
}

// applyService feeds a Service's backends (from its EndpointSlices) to
// the engine, for toServices, and programs its ClusterIP ports into the
// datapath's translation.
func (a *Agent) applyService(ctx context.Context, key types.NamespacedName) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var svc corev1.Service
	if err := a.reader.Get(ctx, key, &svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		a.repo.DeleteService(key.Namespace, key.Name)
		a.kick()
		return a.programServiceLocked(key, nil)
	}
	var slices discoveryv1.EndpointSliceList
	if err := a.reader.List(ctx, &slices, client.InNamespace(key.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
		return err
	}
	s := &policy.Service{Namespace: svc.Namespace, Name: svc.Name, Labels: svc.Labels}
	for _, sl := range slices.Items {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				if ip, err := netip.ParseAddr(addr); err == nil {
					s.Backends = append(s.Backends, ip)
				}
			}
		}
	}
	a.repo.UpsertService(s)
	a.kick()
	return a.programServiceLocked(key, translation(&svc, slices.Items))
}

// applyPod feeds a pod: every running pod with an address gets its
// identity (the engine needs remote pods as peers, the ipcache maps their
// addresses); pods on this node become endpoints with programs attached.
func (a *Agent) applyPod(ctx context.Context, key types.NamespacedName) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var pod corev1.Pod
	if err := a.reader.Get(ctx, key, &pod); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		return a.removePodLocked(key.String())
	}
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil || !ip.Is4() || pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Spec.HostNetwork {
		return a.removePodLocked(key.String())
	}
	local := pod.Spec.NodeName == a.cfg.NodeName
	if old := a.pods[key.String()]; old != nil && (old.ip != ip || old.local != local) {
		if err := a.removePodLocked(key.String()); err != nil {
			return err
		}
	}
	ep := &policy.Endpoint{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels,
		ServiceAccount: pod.Spec.ServiceAccountName, IPs: []netip.Addr{ip}}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			ep.NamedPorts = append(ep.NamedPorts, policy.NamedPort{Name: p.Name, Port: uint16(p.ContainerPort), Proto: protoNumber(p.Protocol)})
		}
	}
	id := a.repo.UpsertEndpoint(ep)
	a.pods[key.String()] = &podRecord{ip: ip, local: local, labels: pod.Labels}
	a.podsByIP[ip] = key.String()
	if local {
		e := a.endpoints[key.String()]
		if e == nil {
			e = &EndpointInfo{Namespace: pod.Namespace, Name: pod.Name, IP: ip, State: StateWaitingForIdentity}
			if prev, ok := a.prevIDs[ip]; ok {
				e.ID = prev
				delete(a.prevIDs, ip)
			} else {
				e.ID = a.nextID
				a.nextID++
			}
			a.endpoints[key.String()] = e
		}
		e.Identity = id
		if e.State != StateLockdown {
			e.State = StateRegenerating
		}
	}
	a.kick()
	return nil
}

// removePodLocked forgets a pod; a local endpoint is detached and its
// policy entries removed.
func (a *Agent) removePodLocked(key string) error {
	p := a.pods[key]
	if p == nil {
		return nil
	}
	ns, name, _ := strings.Cut(key, "/")
	if e := a.endpoints[key]; e != nil {
		e.State = StateDisconnecting
		if err := a.dp.DetachEndpoint(e.IP); err != nil {
			return fmt.Errorf("detaching %s: %w", key, err)
		}
		if err := a.dp.SyncEndpointPolicy(e.ID, nil); err != nil {
			return fmt.Errorf("clearing the policy of %s: %w", key, err)
		}
		delete(a.endpoints, key)
	}
	a.repo.DeleteEndpoint(ns, name)
	if a.podsByIP[p.ip] == key {
		delete(a.podsByIP, p.ip)
	}
	delete(a.pods, key)
	a.kick()
	return nil
}

func protoNumber(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolUDP:
		return policy.ProtoUDP
	case corev1.ProtocolSCTP:
		return policy.ProtoSCTP
	}
	return policy.ProtoTCP
}
