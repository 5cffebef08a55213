package datapath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/policy"
)

// dialTimeout bounds every connection attempt of these cases: a dropped SYN
// shows as a dial timeout (the first retransmission comes after 1 s).
const dialTimeout = time.Second

// TestPolicyCases runs the remaining cases of the datapath on one cluster
// and one agent, each case in a Kubernetes namespace of its own: default
// deny on first selection, port ranges, deny precedence, VRRP and IGMP
// datagrams under a port-less rule, CIDR with except,
// the audit annotation, a new deny cutting established connections while
// replies keep flowing, path stickiness of an established flow, and then,
// restarting the agent, its audit mode and the enforcement modes always
// and never. Every case asserts what a client sees (the connection
// succeeds, or times out) and, for drops and audits, the datapath's event.
func TestPolicyCases(t *testing.T) {
	begin := time.Now()
	ctx := context.Background()
	e := newEnv(t)
	c := e.c

	add := func(ns, name string, ports ...uint16) *localcluster.Pod {
		t.Helper()
		p, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: ns, Name: name, Labels: map[string]string{"app": name}})
		if err != nil {
			t.Fatal(err)
		}
		serve(t, p, ports...)
		return p
	}
	// An annotated namespace is made before its pods.
	auditNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "audited", Annotations: map[string]string{v1alpha1.AuditAnnotation: "true"}}}
	if err := e.k8s.Create(ctx, auditNS); err != nil {
		t.Fatal(err)
	}

	ddServer, ddA, ddB := add("first", "server", 80, 81), add("first", "a", 80), add("first", "b")
	portServer, portClient := add("ports", "server", 7999, 8000, 8005, 8010, 8011), add("ports", "client")
	denyServer, denyA, denyB := add("deny", "server", 80, 81), add("deny", "a"), add("deny", "b")
	cidrClient := add("cidr", "client")
	// Two addresses of PodCIDR that are no pod's: the policy sees them as
	// outside the cluster.
	ext1, ext2 := addHost(t, c, "ext1"), addHost(t, c, "ext2")
	serve(t, ext1, 80)
	serve(t, ext2, 80)
	auditServer, auditClient := add("audited", "server", 80), add("audited", "client")
	estServer, estClient := add("established", "server", 9000), add("established", "client", 9001)
	stickyServer, stickyClient := add("sticky", "server", 80), add("sticky", "client")
	modeServer, modeClient := add("modes", "server", 80), add("modes", "client")
	hostServer, hostClient := add("hostent", "server", 80), add("hostent", "client")
	routerA, routerB, routerC := add("portless", "a"), add("portless", "b"), add("portless", "c")

	e.startAgent()
	t.Logf("cluster, pods, hosts, agent ready after %v", time.Since(begin).Round(time.Millisecond))

	t.Run("no policy, no enforcement", func(t *testing.T) {
		e.expectDial(t, modeClient, to(modeServer, 80), true)
	})

	t.Run("default deny on first selection", func(t *testing.T) {
		s80, s81 := to(ddServer, 80), to(ddServer, 81)
		e.expectDial(t, ddA, s80, true)
		e.expectDial(t, ddB, s80, true)
		// The first policy that selects the server allows something else:
		// a on 81. Everything else into the server stops; the server's
		// egress is not selected and stays open.
		e.apply(t, "first", "server", v1alpha1.Rule{
			EndpointSelector: sel("app", "server"),
			Ingress: []v1alpha1.IngressRule{{
				IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "a")}},
				ToPorts:           tcpPorts("81", 0),
			}},
		})
		e.expectDial(t, ddB, s80, false)
		e.expectDial(t, ddA, s80, false)
		e.expectDial(t, ddA, s81, true)
		e.expectDial(t, ddServer, to(ddA, 80), true)
		e.waitEvent(t, "DROPPED b -> server:80 at the server's ingress", func(ev bpf.Event) bool {
			return ev.Verdict == bpf.EventDrop && ev.Direction == policy.Ingress && ev.Src.Addr() == ddB.IP && ev.Dst.String() == s80
		})
	})

	t.Run("the host entity is this node's address", func(t *testing.T) {
		// The agent watches Nodes: this node's InternalIP (the gateway on
		// every host veth) is the identity host, not world.
		e.apply(t, "hostent", "server", v1alpha1.Rule{
			EndpointSelector: sel("app", "server"),
			Ingress: []v1alpha1.IngressRule{{
				IngressCommonRule: v1alpha1.IngressCommonRule{FromEntities: []v1alpha1.Entity{"host"}},
				ToPorts:           tcpPorts("80", 0),
			}},
		})
		e.expectDial(t, hostClient, to(hostServer, 80), false)
		harness.Eventually(t, "the node (10.244.0.1) -> hostent/server:80 connects", 10*time.Second, func() error {
			d := net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: localcluster.GatewayIP.AsSlice()}}
			c, err := d.Dial("tcp4", to(hostServer, 80))
			if err != nil {
				return err
			}
			return c.Close()
		})
	})

	t.Run("port range", func(t *testing.T) {
		e.apply(t, "ports", "server", v1alpha1.Rule{
			EndpointSelector: sel("app", "server"),
			Ingress: []v1alpha1.IngressRule{{
				IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "client")}},
				ToPorts:           tcpPorts("8000", 8010),
			}},
		})
		e.expectDial(t, portClient, to(portServer, 8011), false)
		e.expectDial(t, portClient, to(portServer, 7999), false)
		for _, port := range []uint16{8000, 8005, 8010} {
			e.expectDial(t, portClient, to(portServer, port), true)
		}
	})

	t.Run("deny precedence", func(t *testing.T) {
		// Allow everyone (and a on 81 by name), deny a on 81.
		e.apply(t, "deny", "server", v1alpha1.Rule{
			EndpointSelector: sel("app", "server"),
			Ingress: []v1alpha1.IngressRule{
				{IngressCommonRule: v1alpha1.IngressCommonRule{FromEntities: []v1alpha1.Entity{v1alpha1.EntityAll}}},
				{IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "a")}}, ToPorts: tcpPorts("81", 0)},
			},
			IngressDeny: []v1alpha1.IngressDenyRule{{
				IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "a")}},
				ToPorts:           []v1alpha1.PortDenyRule{{Ports: []v1alpha1.PortProtocol{{Port: "81", Protocol: v1alpha1.ProtoTCP}}}},
			}},
		})
		e.expectDial(t, denyA, to(denyServer, 81), false)
		e.expectDial(t, denyA, to(denyServer, 80), true)
		e.expectDial(t, denyB, to(denyServer, 81), true)
		e.expectDial(t, denyB, to(denyServer, 80), true)
		e.waitEvent(t, "DROPPED a -> server:81 by policy", func(ev bpf.Event) bool {
			return ev.Verdict == bpf.EventDrop && ev.Reason == bpf.ReasonPolicy && ev.Src.Addr() == denyA.IP && ev.Dst.String() == to(denyServer, 81)
		})
	})

	t.Run("VRRP and IGMP without ports", func(t *testing.T) {
		// The CRD takes a port-less VRRP rule (Cilium 1.18); the agent
		// programs it. Before it, nothing selects b.
		e.expectIP(t, routerA, routerB, netnstest.ProtoIGMP, true)
		e.apply(t, "portless", "b", v1alpha1.Rule{
			EndpointSelector: sel("app", "b"),
			Ingress: []v1alpha1.IngressRule{{
				IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "a")}},
				ToPorts:           []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Protocol: v1alpha1.ProtoVRRP}}}},
			}},
		})
		e.expectIP(t, routerA, routerB, netnstest.ProtoIGMP, false)
		e.expectIP(t, routerA, routerB, netnstest.ProtoVRRP, true)
		e.expectIP(t, routerC, routerB, netnstest.ProtoVRRP, false)
		for _, d := range []struct {
			from  *localcluster.Pod
			proto uint8
		}{{routerA, netnstest.ProtoIGMP}, {routerC, netnstest.ProtoVRRP}} {
			e.waitEvent(t, fmt.Sprintf("DROPPED IP protocol %d from %s at b's ingress", d.proto, d.from.Name), func(ev bpf.Event) bool {
				return ev.Verdict == bpf.EventDrop && ev.Direction == policy.Ingress && ev.Proto == d.proto &&
					ev.Src.Addr() == d.from.IP && ev.Dst.Addr() == routerB.IP
			})
		}
	})

	t.Run("CIDR with except", func(t *testing.T) {
		e.expectDial(t, cidrClient, to(ext1, 80), true)
		e.expectDial(t, cidrClient, to(ext2, 80), true)
		// A prefix of at most 24 bits holding both hosts, ext2 excepted.
		bits := 24
		for !netip.PrefixFrom(ext1.IP, bits).Masked().Contains(ext2.IP) {
			bits--
		}
		cidr := netip.PrefixFrom(ext1.IP, bits).Masked()
		t.Logf("toCIDRSet %s except %s/32 (ext1 %s)", cidr, ext2.IP, ext1.IP)
		e.apply(t, "cidr", "client", v1alpha1.Rule{
			EndpointSelector: sel("app", "client"),
			Egress: []v1alpha1.EgressRule{{EgressCommonRule: v1alpha1.EgressCommonRule{ToCIDRSet: []v1alpha1.CIDRRule{{
				Cidr:        v1alpha1.CIDR(cidr.String()),
				ExceptCIDRs: []v1alpha1.CIDR{v1alpha1.CIDR(ext2.IP.String() + "/32")},
			}}}}},
		})
		e.expectDial(t, cidrClient, to(ext2, 80), false)
		e.expectDial(t, cidrClient, to(ext1, 80), true)
		// A CIDR selector never selects pods, even inside its prefix.
		if cidr.Contains(modeServer.IP) {
			e.expectDial(t, cidrClient, to(modeServer, 80), false)
		}
		e.waitEvent(t, "DROPPED client -> ext2 at the client's egress", func(ev bpf.Event) bool {
			return ev.Verdict == bpf.EventDrop && ev.Direction == policy.Egress && ev.Src.Addr() == cidrClient.IP && ev.Dst.Addr() == ext2.IP
		})
	})

	t.Run("audit annotation", func(t *testing.T) {
		// The policy allows nobody; the namespace is in audit mode.
		e.apply(t, "audited", "server", v1alpha1.Rule{
			EndpointSelector: sel("app", "server"),
			Ingress:          []v1alpha1.IngressRule{{IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "nobody")}}}},
		})
		e.expectAudited(t, auditClient, to(auditServer, 80))
	})

	t.Run("new deny cuts established connections, replies ride on", func(t *testing.T) {
		// forward: client -> server:9000; reverse: server -> client:9001,
		// whose replies travel client -> server.
		forward := openConn(t, estClient, to(estServer, 9000))
		reverse := openConn(t, estServer, to(estClient, 9001))
		e.apply(t, "established", "server", v1alpha1.Rule{
			EndpointSelector: sel("app", "server"),
			Ingress:          []v1alpha1.IngressRule{{IngressCommonRule: v1alpha1.IngressCommonRule{FromEntities: []v1alpha1.Entity{v1alpha1.EntityAll}}}},
			IngressDeny:      []v1alpha1.IngressDenyRule{{IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "client")}}}},
		})
		e.expectDial(t, estClient, to(estServer, 9000), false)
		if err := forward.ping("after the deny"); err == nil {
			t.Error("the established client -> server connection still gets data through after the deny")
		} else if !isTimeout(err) {
			t.Errorf("the established connection failed otherwise than by a timeout: %v", err)
		}
		// Each retransmission of the cut flow is dropped and reported.
		local := netip.MustParseAddrPort(forward.LocalAddr().String())
		e.waitEvent(t, "DROPPED retransmission of the established flow", func(ev bpf.Event) bool {
			return ev.Verdict == bpf.EventDrop && ev.Src == local && ev.Dst.String() == to(estServer, 9000)
		})
		for i := range 3 {
			if err := reverse.ping(fmt.Sprint("reply ", i)); err != nil {
				t.Fatalf("the server's own connection to the client (its replies are client -> server packets): %v", err)
			}
		}
	})

	t.Run("an established flow keeps its direct path", func(t *testing.T) {
		rule := func(l7 *v1alpha1.L7Rules) v1alpha1.Rule {
			ports := tcpPorts("80", 0)
			ports[0].Rules = l7
			return v1alpha1.Rule{
				EndpointSelector: sel("app", "server"),
				Ingress: []v1alpha1.IngressRule{{
					IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{*sel("app", "client")}},
					ToPorts:           ports,
				}},
			}
		}
		e.apply(t, "sticky", "server", rule(nil))
		addr := to(stickyServer, 80)
		e.expectDial(t, stickyClient, addr, true)
		conn := openConn(t, stickyClient, addr)
		// Port 80 becomes an L7 (HTTP) port: new flows are redirected to
		// the agent's HTTP proxy, which waits for a request, so the
		// server's greeting never comes ...
		e.apply(t, "sticky", "server", rule(&v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET"}}}))
		e.expectDial(t, stickyClient, addr, false)
		e.waitEvent(t, "REDIRECTED for a new flow", func(ev bpf.Event) bool {
			return ev.Verdict == bpf.EventRedirect && ev.Src.Addr() == stickyClient.IP && ev.Dst.String() == addr
		})
		// ... while the open connection keeps going direct until it closes.
		for i := range 3 {
			if err := conn.ping(fmt.Sprint("still direct ", i)); err != nil {
				t.Fatalf("the established flow lost its path: %v", err)
			}
		}
		_ = conn.Close()
		e.expectDial(t, stickyClient, addr, false)
	})

	// These need another agent configuration: restart it (the pins, and so
	// the endpoints and the established flows, stay).
	restart := func(mode string, audit bool) {
		e.stopAgt()
		e.mode, e.audit = mode, audit
		e.startAgent()
	}
	t.Run("agent audit mode", func(t *testing.T) {
		restart("default", true)
		for _, f := range []struct {
			from *localcluster.Pod
			addr string
		}{
			{ddB, to(ddServer, 80)},     // no allow
			{denyA, to(denyServer, 81)}, // an explicit deny
		} {
			e.expectAudited(t, f.from, f.addr)
		}
	})

	t.Run("enforcement mode always", func(t *testing.T) {
		addr := to(modeServer, 80)
		restart("always", false)
		// No policy selects either pod: both are enforced, nothing allowed.
		e.expectDial(t, modeClient, addr, false)
		e.waitEvent(t, "DROPPED client -> server without any policy", func(ev bpf.Event) bool {
			return ev.Verdict == bpf.EventDrop && ev.Src.Addr() == modeClient.IP && ev.Dst.String() == addr
		})
	})

	t.Run("enforcement mode never", func(t *testing.T) {
		restart("never", false)
		e.expectDial(t, modeClient, to(modeServer, 80), true)
		e.expectDial(t, denyA, to(denyServer, 81), true)
		e.expectDial(t, ddB, to(ddServer, 80), true)
		e.expectDial(t, cidrClient, to(ext2, 80), true)
	})
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

func sel(k, v string) *v1alpha1.EndpointSelector {
	return &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{k: v}}}
}

// tcpPorts is one TCP port, or the range port..end when end is not zero.
func tcpPorts(port string, end int32) []v1alpha1.PortRule {
	return []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: port, EndPort: end, Protocol: v1alpha1.ProtoTCP}}}}
}

func to(p *localcluster.Pod, port uint16) string {
	return netip.AddrPortFrom(p.IP, port).String()
}

func addHost(t *testing.T, c *localcluster.Cluster, name string) *localcluster.Pod {
	t.Helper()
	h, err := c.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// apply creates or updates the TrafficPolicy ns/name with spec rule.
func (e *env) apply(t *testing.T, ns, name string, rule v1alpha1.Rule) {
	t.Helper()
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: ptr.To(rule)}
	err := e.k8s.Create(context.Background(), p)
	if err == nil {
		return
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.k8s.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec = ptr.To(rule)
		return e.k8s.Update(context.Background(), p)
	})
	if err != nil {
		t.Fatalf("applying policy %s/%s: %v", ns, name, err)
	}
}

// waitEvent waits up to 5 s for a datapath event that match accepts.
func (e *env) waitEvent(t *testing.T, what string, match func(bpf.Event) bool) {
	t.Helper()
	harness.Eventually(t, what, 5*time.Second, func() error {
		e.eventsMu.Lock()
		defer e.eventsMu.Unlock()
		for _, ev := range e.events {
			if match(ev) {
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(e.events))
	})
}

// expectIP sends datagrams of a port-less IP protocol (VRRP or IGMP) from
// one pod to another until they arrive (want) or stop arriving, for up to
// 10 s. Every datagram is new, so an old one still queued cannot count.
func (e *env) expectIP(t *testing.T, from, to *localcluster.Pod, proto uint8, want bool) {
	t.Helper()
	fromNS, toNS := podNetns(t, from), podNetns(t, to)
	c := netnstest.ListenIP(t, toNS, proto, to.IP)
	what := fmt.Sprintf("IP protocol %d %s/%s -> %s blocked", proto, from.Namespace, from.Name, to.Name)
	wait := 300 * time.Millisecond
	if want {
		what = fmt.Sprintf("IP protocol %d %s/%s -> %s delivered", proto, from.Namespace, from.Name, to.Name)
		wait = time.Second
	}
	n := 0
	harness.Eventually(t, what, 10*time.Second, func() error {
		n++
		payload := netnstest.VRRPAdvertisement(byte(n), 100, to.IP)
		if proto == netnstest.ProtoIGMP {
			payload = netnstest.IGMPReport(netip.AddrFrom4([4]byte{239, 1, 2, byte(n)}))
		}
		if err := netnstest.SendIP(fromNS, proto, to.IP, payload); err != nil {
			t.Fatal(err)
		}
		err := netnstest.ReceiveIP(c, from.IP, payload, wait)
		switch {
		case want && err != nil:
			return err
		case !want && err == nil:
			return errors.New("delivered")
		case !want && !errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("want a timeout: %w", err)
		}
		return nil
	})
}

// podNetns opens a pod's network namespace, closed on cleanup.
func podNetns(t *testing.T, pod *localcluster.Pod) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromName(pod.NetNS)
	if err != nil {
		t.Fatalf("opening netns %s: %v", pod.NetNS, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// expectAudited connects from pod to addr until an AUDITED event for the
// flow arrives (up to 10 s); every connection must succeed meanwhile.
func (e *env) expectAudited(t *testing.T, from *localcluster.Pod, addr string) {
	t.Helper()
	harness.Eventually(t, fmt.Sprintf("AUDITED %s/%s -> %s", from.Namespace, from.Name, addr), 10*time.Second, func() error {
		if err := probe(from, addr); err != nil {
			t.Fatalf("an audited flow must pass: %v", err)
		}
		e.eventsMu.Lock()
		defer e.eventsMu.Unlock()
		for _, ev := range e.events {
			if ev.Verdict == bpf.EventAudit && ev.Src.Addr() == from.IP && ev.Dst.String() == addr {
				return nil
			}
		}
		return errors.New("no such event yet")
	})
}

// expectDial waits (up to 10 s, for the agent to apply a change) until a
// connection from pod to addr succeeds (want) or times out (!want): a drop
// is a timeout for the client; a refusal or reset is neither.
func (e *env) expectDial(t *testing.T, from *localcluster.Pod, addr string, want bool) {
	t.Helper()
	what := fmt.Sprintf("%s/%s -> %s blocked", from.Namespace, from.Name, addr)
	if want {
		what = fmt.Sprintf("%s/%s -> %s connects", from.Namespace, from.Name, addr)
	}
	harness.Eventually(t, what, 10*time.Second, func() error {
		err := probe(from, addr)
		switch {
		case want && err != nil:
			return err
		case !want && err == nil:
			return errors.New("connection succeeded")
		case !want && !isTimeout(err):
			return fmt.Errorf("want a timeout: %w", err)
		}
		return nil
	})
}

// probe connects from pod to addr, reads the greeting and closes.
func probe(from *localcluster.Pod, addr string) error {
	c, err := dialFrom(from, addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// openConn is a connection from pod to addr that stays open for the test.
func openConn(t *testing.T, from *localcluster.Pod, addr string) *lineConn {
	t.Helper()
	c, err := dialFrom(from, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.ping("first"); err != nil {
		t.Fatal(err)
	}
	return c
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// inNetns runs f on an OS thread inside pod's network namespace. A socket
// f makes belongs to that namespace for its whole life, wherever it is used
// afterwards; so the test process is a real client or server in the pod.
func inNetns(pod *localcluster.Pod, f func() error) error {
	target, err := netns.GetFromName(pod.NetNS)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", pod.NetNS, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering netns %s: %w", pod.NetNS, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked: the runtime ends it with the
			// goroutine rather than reuse it in the pod's namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leaving netns %s: %w", pod.NetNS, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// serve listens on 0.0.0.0:port in pod for each port, from the test process:
// each connection gets "hello" and then has every line echoed back.
// Listeners and connections are closed on cleanup.
func serve(t *testing.T, pod *localcluster.Pod, ports ...uint16) {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	for _, port := range ports {
		var ln net.Listener
		if err := inNetns(pod, func() (err error) {
			ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
			return err
		}); err != nil {
			t.Fatalf("listening in %s: %v", pod.Name, err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go func() {
					defer c.Close()
					if _, err := fmt.Fprintln(c, "hello"); err != nil {
						return
					}
					s := bufio.NewScanner(c)
					for s.Scan() {
						if _, err := fmt.Fprintln(c, s.Text()); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
}

// lineConn is a client connection to a serve'd port.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

// dialFrom connects from inside pod to addr within dialTimeout and reads
// the greeting.
func dialFrom(pod *localcluster.Pod, addr string) (*lineConn, error) {
	var c net.Conn
	err := inNetns(pod, func() (err error) {
		c, err = (&net.Dialer{Timeout: dialTimeout}).Dial("tcp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	lc := &lineConn{Conn: c, r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	line, err := lc.r.ReadString('\n')
	if err != nil || line != "hello\n" {
		_ = c.Close()
		return nil, fmt.Errorf("greeting from %s: %q, %w", addr, line, err)
	}
	_ = c.SetDeadline(time.Time{})
	return lc, nil
}

// ping sends msg and waits up to dialTimeout for its echo.
func (c *lineConn) ping(msg string) error {
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if got := strings.TrimSuffix(line, "\n"); got != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}
