package localcluster

// Services: the local cluster's Service range, the blackhole route that
// keeps untranslated ClusterIP traffic on this machine, and the part of the
// EndpointSlice controller that the datapath and the agent need.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// ServiceCIDR is the apiserver's Service range: every ClusterIP is in it.
var ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")

// SliceManager is the endpointslice.kubernetes.io/managed-by value of the
// EndpointSlices the cluster writes.
const SliceManager = "localcluster.portcullis.dev"

// blackholeMetric is the priority of a cluster's blackhole route for
// ServiceCIDR: IPv4 routes that differ in priority are different routes,
// so every cluster has its own and removes only its own, and a route left
// by a dead cluster names the prefix that made it.
func blackholeMetric(prefix string) (int, bool) {
	if !prefixPattern.MatchString(prefix) {
		return 0, false
	}
	n, err := strconv.ParseUint(prefix[2:6], 16, 16)
	if err != nil {
		return 0, false
	}
	return 0x10000 + int(n), true
}

func blackholeRoute(metric int) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: ServiceCIDR.Addr().AsSlice(), Mask: net.CIDRMask(ServiceCIDR.Bits(), 32)},
		Type:     unix.RTN_BLACKHOLE,
		Priority: metric,
		Table:    unix.RT_TABLE_MAIN,
	}
}

// addServiceBlackhole routes ServiceCIDR to a blackhole in the root
// namespace (`ip route add blackhole 10.96.0.0/12 metric M`): the datapath
// translates a pod's ClusterIP traffic before it gets here, and anything it
// did not translate must never leave the machine by the default route.
func addServiceBlackhole(prefix string) error {
	metric, ok := blackholeMetric(prefix)
	if !ok {
		return fmt.Errorf("cluster prefix %q: not a cluster prefix", prefix)
	}
	if err := netlink.RouteAdd(blackholeRoute(metric)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ip route add blackhole %s metric %d: %w", ServiceCIDR, metric, err)
	}
	return nil
}

// deleteServiceBlackhole removes the cluster's blackhole route; a missing
// route is not an error.
func deleteServiceBlackhole(prefix string) error {
	metric, ok := blackholeMetric(prefix)
	if !ok {
		return nil
	}
	err := netlink.RouteDel(blackholeRoute(metric))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("ip route del blackhole %s metric %d: %w", ServiceCIDR, metric, err)
	}
	return nil
}

// blackholePrefixes lists the cluster prefixes that have a blackhole route
// in the root namespace.
func blackholePrefixes() []string {
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() != ServiceCIDR.String() || r.Priority < 0x10000 || r.Priority > 0x1ffff {
			continue
		}
		out = append(out, fmt.Sprintf("pc%04x-", r.Priority-0x10000))
	}
	return out
}

// ServiceSpec describes a Service for AddService.
type ServiceSpec struct {
	// Namespace defaults to "default"; it is created if missing.
	Namespace string
	// Name is required.
	Name string
	// Labels are the Service's labels (toServices selectors match them).
	Labels map[string]string
	// Selector picks the pods behind the Service; nil makes a Service
	// without a selector, whose EndpointSlices the caller writes.
	Selector map[string]string
	// Ports are the Service's ports; a TargetPort may name a container
	// port, resolved per pod.
	Ports []corev1.ServicePort
	// ClusterIP asks for an address of ServiceCIDR; empty lets the
	// apiserver choose.
	ClusterIP string
}

// AddService creates a ClusterIP Service and, for one with a selector, the
// EndpointSlices of the running pods it selects (see SyncEndpointSlices).
func (c *Cluster) AddService(ctx context.Context, spec ServiceSpec) (*corev1.Service, error) {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if msgs := validation.IsDNS1035Label(spec.Name); len(msgs) > 0 {
		return nil, fmt.Errorf("service name %q: %s", spec.Name, strings.Join(msgs, "; "))
	}
	if len(spec.Ports) == 0 {
		return nil, fmt.Errorf("service %s/%s: no ports", spec.Namespace, spec.Name)
	}
	if spec.ClusterIP != "" {
		ip, err := netip.ParseAddr(spec.ClusterIP)
		if err != nil || !ServiceCIDR.Contains(ip) {
			return nil, fmt.Errorf("service %s/%s: clusterIP %q is not an address of %s", spec.Namespace, spec.Name, spec.ClusterIP, ServiceCIDR)
		}
	}
	if err := c.ensureNamespace(ctx, spec.Namespace); err != nil {
		return nil, err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			Selector:  spec.Selector,
			Ports:     spec.Ports,
			ClusterIP: spec.ClusterIP,
		},
	}
	created, err := c.clientset.CoreV1().Services(spec.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating service %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	if err := c.SyncEndpointSlices(ctx, spec.Namespace); err != nil {
		return nil, err
	}
	c.logf("service %s/%s: %s", spec.Namespace, spec.Name, created.Spec.ClusterIP)
	return created, nil
}

// DeleteService deletes a Service and the EndpointSlices the cluster wrote
// for it.
func (c *Cluster) DeleteService(ctx context.Context, namespace, name string) error {
	err := c.clientset.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting service %s/%s: %w", namespace, name, err)
	}
	return c.SyncEndpointSlices(ctx, namespace)
}

// SyncEndpointSlices plays the EndpointSlice controller for a namespace:
// every Service with a selector gets slices listing the running pods it
// selects, ready unless their Ready condition says otherwise, one slice
// per set of resolved target ports (a named target port resolves against
// each pod's container ports; a pod without it is left out of that port),
// and slices of Services that are gone are deleted. AddPod, DeletePod,
// AddService and DeleteService call it; call it after changing a pod's
// labels or readiness directly.
func (c *Cluster) SyncEndpointSlices(ctx context.Context, namespace string) error {
	c.sliceMu.Lock()
	defer c.sliceMu.Unlock()
	svcs, err := c.clientset.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing services of %s: %w", namespace, err)
	}
	pods, err := c.clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods of %s: %w", namespace, err)
	}
	want := map[string]*discoveryv1.EndpointSlice{}
	for i := range svcs.Items {
		for _, sl := range desiredSlices(&svcs.Items[i], pods.Items) {
			want[sl.Name] = sl
		}
	}
	slicesAPI := c.clientset.DiscoveryV1().EndpointSlices(namespace)
	have, err := slicesAPI.List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + SliceManager})
	if err != nil {
		return fmt.Errorf("listing endpoint slices of %s: %w", namespace, err)
	}
	var errs []error
	for i := range have.Items {
		cur := &have.Items[i]
		w, ok := want[cur.Name]
		if !ok {
			if err := slicesAPI.Delete(ctx, cur.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("deleting endpoint slice %s/%s: %w", namespace, cur.Name, err))
			}
			continue
		}
		delete(want, cur.Name)
		w.ResourceVersion = cur.ResourceVersion
		if _, err := slicesAPI.Update(ctx, w, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("updating endpoint slice %s/%s: %w", namespace, cur.Name, err))
		}
	}
	for _, w := range want {
		if _, err := slicesAPI.Create(ctx, w, metav1.CreateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("creating endpoint slice %s/%s: %w", namespace, w.Name, err))
		}
	}
	return errors.Join(errs...)
}

// desiredSlices are the EndpointSlices of one Service.
func desiredSlices(svc *corev1.Service, pods []corev1.Pod) []*discoveryv1.EndpointSlice {
	if svc.Spec.Selector == nil || svc.Spec.ClusterIP == corev1.ClusterIPNone && len(svc.Spec.Ports) == 0 {
		return nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	type group struct {
		ports []discoveryv1.EndpointPort
		eps   []discoveryv1.Endpoint
	}
	groups := map[string]*group{}
	var order []string
	for i := range pods {
		pod := &pods[i]
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			n, ok := targetPort(sp, pod)
			if !ok {
				continue
			}
			proto := sp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(n), Protocol: ptr.To(proto)})
		}
		key := portsKey(ports)
		g := groups[key]
		if g == nil {
			g = &group{ports: ports}
			groups[key] = g
			order = append(order, key)
		}
		g.eps = append(g.eps, discoveryv1.Endpoint{
			Addresses:  []string{pod.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(podReady(pod)), Serving: ptr.To(podReady(pod)), Terminating: ptr.To(false)},
			NodeName:   ptr.To(pod.Spec.NodeName),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		})
	}
	slices.Sort(order)
	out := make([]*discoveryv1.EndpointSlice, 0, len(order))
	for _, key := range order {
		g := groups[key]
		sum := sha256.Sum256([]byte(key))
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: svc.Namespace,
				Name:      svc.Name + "-" + hex.EncodeToString(sum[:5]),
				Labels:    map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: SliceManager},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   g.eps,
			Ports:       g.ports,
		})
	}
	return out
}

// targetPort resolves a Service port's target port for a pod: a number
// (or none: the port itself), or the number of the pod's container port of
// that name and protocol.
func targetPort(sp corev1.ServicePort, pod *corev1.Pod) (int32, bool) {
	switch {
	case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal, true
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		for _, ctr := range pod.Spec.Containers {
			for _, cp := range ctr.Ports {
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if cp.Name == sp.TargetPort.StrVal && cpProto == proto {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	}
	return sp.Port, true
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}

// podReady reports whether pod's Ready condition is True.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
