package localcluster

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// sliceBackends lists a Service's EndpointSlices as "ip:port/name" for
// every ready endpoint and port.
func sliceBackends(t *testing.T, c *Cluster, ns, svc string) []string {
	t.Helper()
	list, err := c.Clientset().DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
				continue
			}
			for _, p := range sl.Ports {
				out = append(out, netip.AddrPortFrom(netip.MustParseAddr(ep.Addresses[0]), uint16(*p.Port)).String()+"/"+*p.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestServices(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Two pods name their HTTP port differently: the named target port
	// resolves per pod, so they land in two slices.
	web1, err := c.AddPod(ctx, PodSpec{Name: "web-1", Labels: map[string]string{"app": "web"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.AddService(ctx, ServiceSpec{Name: "web", Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !ServiceCIDR.Contains(ip) {
		t.Errorf("ClusterIP %q, want an address of %s", svc.Spec.ClusterIP, ServiceCIDR)
	}
	web2, err := c.AddPod(ctx, PodSpec{Name: "web-2", Labels: map[string]string{"app": "web"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9090}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddPod(ctx, PodSpec{Name: "other", Labels: map[string]string{"app": "other"}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		netip.AddrPortFrom(web1.IP, 5353).String() + "/dns", netip.AddrPortFrom(web1.IP, 8080).String() + "/http",
		netip.AddrPortFrom(web2.IP, 5353).String() + "/dns", netip.AddrPortFrom(web2.IP, 9090).String() + "/http",
	}
	slices.Sort(want)
	if got := sliceBackends(t, c, "default", "web"); !slices.Equal(got, want) {
		t.Errorf("slices %v, want %v", got, want)
	}
	if err := c.DeletePod(ctx, "default", "web-1"); err != nil {
		t.Fatal(err)
	}
	want = []string{netip.AddrPortFrom(web2.IP, 5353).String() + "/dns", netip.AddrPortFrom(web2.IP, 9090).String() + "/http"}
	if got := sliceBackends(t, c, "default", "web"); !slices.Equal(got, want) {
		t.Errorf("after deleting web-1: slices %v, want %v", got, want)
	}
	if _, err := c.AddService(ctx, ServiceSpec{Name: "fixed", ClusterIP: "10.96.0.53", Ports: []corev1.ServicePort{{Port: 53}}}); err != nil {
		t.Errorf("a Service with a chosen ClusterIP: %v", err)
	}
	if _, err := c.AddService(ctx, ServiceSpec{Name: "outside", ClusterIP: "10.244.0.9", Ports: []corev1.ServicePort{{Port: 53}}}); err == nil {
		t.Errorf("a ClusterIP outside %s was accepted", ServiceCIDR)
	}
	if err := c.DeleteService(ctx, "default", "web"); err != nil {
		t.Fatal(err)
	}
	if got := sliceBackends(t, c, "default", "web"); len(got) != 0 {
		t.Errorf("slices of a deleted Service: %v", got)
	}
}

// TestUntranslatedClusterIPIsDropped: with no datapath to translate it, a
// pod's packet to a ClusterIP meets the blackhole route in the root
// namespace, which is what the kernel decides for it (not the default
// route off the machine), and the root namespace cannot send there either.
func TestUntranslatedClusterIPIsDropped(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, err := c.AddPod(ctx, PodSpec{Name: "client"})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.AddService(ctx, ServiceSpec{Name: "nothing", Ports: []corev1.ServicePort{{Port: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP := net.ParseIP(svc.Spec.ClusterIP)
	host, err := netlink.LinkByName(pod.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	// The route a packet from the pod, arriving on its host veth, takes.
	routes, err := netlink.RouteGetWithOptions(clusterIP, &netlink.RouteGetOptions{IifIndex: host.Attrs().Index, SrcAddr: pod.IP.AsSlice()})
	switch {
	case err != nil && !errors.Is(err, unix.EINVAL):
		t.Fatalf("route for a packet from the pod to %s: %v", clusterIP, err)
	case err == nil && (len(routes) == 0 || routes[0].Type != unix.RTN_BLACKHOLE):
		t.Fatalf("a packet from the pod to %s is routed %+v, want the blackhole", clusterIP, routes)
	}
	// Sent for real from the pod: no answer, no error back.
	out, err := pod.Exec(ctx, "bash", "-c", "timeout 1 bash -c 'echo x > /dev/tcp/"+svc.Spec.ClusterIP+"/80' 2>&1; echo rc=$?")
	if err != nil || string(out) != "rc=124\n" {
		t.Errorf("TCP from the pod to %s: %q (%v), want a silent drop (timeout, rc=124)", clusterIP, out, err)
	}
	// The root namespace's own traffic has no route there.
	conn, err := net.DialTimeout("udp4", net.JoinHostPort(svc.Spec.ClusterIP, "80"), time.Second)
	if err == nil {
		_, err = conn.Write([]byte("x"))
		_ = conn.Close()
	}
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("UDP from the root namespace to %s: %v, want EINVAL (blackhole)", clusterIP, err)
	}
}
