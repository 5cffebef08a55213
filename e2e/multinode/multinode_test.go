package multinode

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/e2e/internal/nodelock"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
	"portcullis.dev/portcullis/policy"
)

// TestMain runs a workload child when asked (internal/workloads), else the
// tests under the node lock.
func TestMain(m *testing.M) {
	workloads.RunIfChild()
	ctrl.SetLogger(logr.Discard())
	nodelock.RunTests(m)
}

// ship is a pod of the scenario and the node it is placed on.
type ship struct {
	name   string
	labels map[string]string
	node   int
}

func TestStarWarsAcrossNodes(t *testing.T) {
	c, k8s := harness.ClusterWith(t, localcluster.Options{Nodes: 3})
	nodes := c.Nodes()
	ctx := context.Background()
	pods := map[string]*localcluster.Pod{}
	for _, s := range []ship{
		{"xwing", map[string]string{"org": "alliance", "class": "xwing"}, 0},
		{"tiefighter", map[string]string{"org": "empire", "class": "tiefighter"}, 1},
		{"deathstar", map[string]string{"org": "empire", "class": "deathstar"}, 2},
	} {
		p, err := c.AddPod(ctx, localcluster.PodSpec{Name: s.name, Labels: s.labels, Node: nodes[s.node].Name})
		if err != nil {
			t.Fatal(err)
		}
		pods[s.name] = p
	}
	// The same labels in another namespace, on the xwing's node: policy
	// peers are namespaced, so it is not one of the deathstar's empire.
	rogue, err := c.AddPod(ctx, localcluster.PodSpec{Namespace: "rogue", Name: "tiefighter", Labels: map[string]string{"org": "empire", "class": "tiefighter"}, Node: nodes[0].Name})
	if err != nil {
		t.Fatal(err)
	}
	// Cloud City: the door manager on the deathstar's node, a public
	// terminal on the tiefighter's.
	for _, s := range []ship{
		{"cc-door-mgr", map[string]string{"app": "cc-door-mgr"}, 2},
		{"public-terminal", map[string]string{"app": "public-terminal"}, 1},
	} {
		p, err := c.AddPod(ctx, localcluster.PodSpec{Name: s.name, Labels: s.labels, Node: nodes[s.node].Name})
		if err != nil {
			t.Fatal(err)
		}
		pods[s.name] = p
	}
	harness.StartWorkload(t, pods["deathstar"], workloads.RoleDeathstar, "0.0.0.0:80")
	harness.StartWorkload(t, pods["cc-door-mgr"], workloads.RoleDoorManager, "0.0.0.0:50051")

	harness.StartOperator(t, c)
	bin := harness.AgentBinary(t)
	agents := make([]*harness.NodeAgent, len(nodes))
	names := make([]string, len(nodes))
	for i, n := range nodes {
		agents[i] = harness.StartNodeAgent(t, c, n, bin)
		names[i] = n.Name
	}
	// One agent per node: each lists its node's pods as endpoints, and
	// only those.
	for i, a := range agents {
		want := map[int][]string{0: {"default/xwing", "rogue/tiefighter"}, 1: {"default/public-terminal", "default/tiefighter"}, 2: {"default/cc-door-mgr", "default/deathstar"}}[i]
		harness.Eventually(t, "the endpoints of "+a.String(), 30*time.Second, func() error {
			eps, err := a.API.Endpoints(ctx)
			if err != nil {
				return err
			}
			var got []string
			for _, e := range eps {
				if e.State != "ready" {
					return fmt.Errorf("endpoint %s/%s %s", e.Namespace, e.Pod, e.State)
				}
				got = append(got, e.Namespace+"/"+e.Pod)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("endpoints %v, want %v", got, want)
			}
			return nil
		})
	}

	url := "http://" + pods["deathstar"].IP.String() + "/v1/request-landing"
	if r := harness.Curl(t, pods["xwing"], "-XPOST", url); r.Code != http.StatusOK {
		t.Fatalf("xwing on %s -> deathstar on %s without a policy: %v, want 200", pods["xwing"].Node, pods["deathstar"].Node, r)
	}

	p := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "rule1"},
		Spec: &v1alpha1.Rule{
			Description:      "L3-L4 policy to restrict deathstar access to empire ships only",
			EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"org": "empire", "class": "deathstar"}}},
			Ingress: []v1alpha1.IngressRule{{
				IngressCommonRule: v1alpha1.IngressCommonRule{FromEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"org": "empire"}}}}},
				ToPorts:           []v1alpha1.PortRule{{Ports: []v1alpha1.PortProtocol{{Port: "80", Protocol: v1alpha1.ProtoTCP}}}},
			}},
		},
	}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammedOn(t, k8s, names, p)

	waitDS := agents[2].Follow(t)
	waitX := agents[0].Follow(t)
	check := func(when string) {
		t.Helper()
		if r := harness.Curl(t, pods["tiefighter"], "-XPOST", url); r.Code != http.StatusOK || r.Body != "Ship landed\n" {
			t.Errorf("%s: tiefighter on %s -> deathstar on %s: %v, want 200 Ship landed", when, pods["tiefighter"].Node, pods["deathstar"].Node, r)
		}
		if r := harness.Curl(t, pods["xwing"], "-XPOST", url); r.Exit != 28 {
			t.Errorf("%s: xwing on %s -> deathstar on %s: %v, want a timeout (dropped)", when, pods["xwing"].Node, pods["deathstar"].Node, r)
		}
		if r := harness.Curl(t, rogue, "-XPOST", url); r.Exit != 28 {
			t.Errorf("%s: rogue/tiefighter on %s -> deathstar on %s: %v, want a timeout (another namespace: dropped)", when, rogue.Node, pods["deathstar"].Node, r)
		}
	}
	check("policy in force")
	xwingDrop := func(e agentclient.Event) bool {
		return e.Verdict == "DROPPED" && e.Source.IP == pods["xwing"].IP.String() && e.Destination.IP == pods["deathstar"].IP.String()
	}
	ev, ok := waitDS(xwingDrop, 10*time.Second)
	if !ok {
		t.Fatalf("no DROPPED event for xwing -> deathstar on %s's agent", pods["deathstar"].Node)
	}
	if ev.Node != pods["deathstar"].Node || ev.Direction != "ingress" ||
		!slices.Contains(ev.Source.Labels, "org=alliance") || !slices.Contains(ev.Source.Labels, "class=xwing") ||
		!slices.Contains(ev.Destination.Labels, "class=deathstar") {
		t.Errorf("DROPPED event %+v: want node %s, ingress, the xwing's and the deathstar's labels", ev, pods["deathstar"].Node)
	}
	if ev, ok := waitX(xwingDrop, 0); ok {
		t.Errorf("the xwing's own node reported the drop: %+v (its egress is not enforced)", ev)
	}

	// The deathstar's agent gone entirely: its pins keep enforcing.
	agents[2].Stop(t)
	check("deathstar's agent stopped")
	agents[2].Start(t)
	check("deathstar's agent restarted")

	// Cilium's sw_l3_l4_l7_policy: the deathstar's node redirects the
	// tiefighter's connection (from another node) to its own proxy at its
	// uplink, which lands the ship and refuses the exhaust port.
	waitDS = agents[2].Follow(t)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec.Ingress[0].ToPorts[0].Rules = &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "POST", Path: "/v1/request-landing"}}}
		return k8s.Update(ctx, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammedOn(t, k8s, names, p)
	check("L7 policy in force")
	if r := harness.Curl(t, pods["tiefighter"], "-XPUT", "http://"+pods["deathstar"].IP.String()+"/v1/exhaust-port"); r.Code != http.StatusForbidden {
		t.Errorf("tiefighter on %s -> PUT /v1/exhaust-port on %s: %v, want 403 from the deathstar's node's proxy", pods["tiefighter"].Node, pods["deathstar"].Node, r)
	}
	denied, ok := waitDS(func(e agentclient.Event) bool {
		return e.Type == "l7" && e.Verdict == "DENIED" && e.Source.IP == pods["tiefighter"].IP.String()
	}, 10*time.Second)
	if !ok {
		t.Fatalf("no DENIED L7 event for the tiefighter on %s's agent", pods["deathstar"].Node)
	}
	if denied.Node != pods["deathstar"].Node || denied.L7 == nil || denied.L7.Method != "PUT" || !slices.Contains(denied.Source.Labels, "class=tiefighter") {
		t.Errorf("DENIED event %+v: want node %s, PUT, the tiefighter's labels", denied, pods["deathstar"].Node)
	}
	if ev, ok := waitDS(func(e agentclient.Event) bool { return e.Reason == "redirect-unsupported" }, 0); ok {
		t.Errorf("a remote client's L7 flow was dropped as unsupported: %+v", ev)
	}

	// The first node's agent (the xwing's node, and the underlay's router)
	// restarted: traffic between the other two nodes goes on as before,
	// through its pinned uplink programs, which pass transit traffic.
	agents[0].Stop(t)
	check("first node's agent stopped")
	agents[0].Start(t)
	check("first node's agent restarted")

	// A remote pod that goes while the deathstar's agent is down leaves
	// that node's ipcache at the agent's first sync after its return.
	pinned := func() map[netip.Prefix]policy.NumericIdentity {
		t.Helper()
		m, err := bpf.ReadPinnedIPCache(filepath.Join(agents[2].BPFFS, "portcullis"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	xw, tf := netip.PrefixFrom(pods["xwing"].IP, 32), netip.PrefixFrom(pods["tiefighter"].IP, 32)
	if m := pinned(); m[xw] == 0 || m[tf] == 0 {
		t.Fatalf("ipcache of %s lacks the remote pods %s, %s: %v", pods["deathstar"].Node, xw, tf, m)
	}
	agents[2].Stop(t)
	if err := c.DeletePod(ctx, "default", "xwing"); err != nil {
		t.Fatal(err)
	}
	agents[2].Start(t)
	harness.Eventually(t, "the gone xwing pruned from the ipcache of "+pods["deathstar"].Node, 20*time.Second, func() error {
		m := pinned()
		if _, ok := m[xw]; ok {
			return fmt.Errorf("ipcache still maps %s to %d", xw, m[xw])
		}
		if m[tf] == 0 {
			return fmt.Errorf("ipcache lost the tiefighter %s", tf)
		}
		return nil
	})
	if r := harness.Curl(t, pods["tiefighter"], "-XPOST", url); r.Code != http.StatusOK {
		t.Errorf("tiefighter after the deathstar's agent came back: %v", r)
	}

	// An egress L7 rule of the tiefighter too: its own node's proxy judges
	// the request first and dials the deathstar from the tiefighter's own
	// address (the replies come back by the uplink, handed to the proxy's
	// socket there), so the deathstar's node still sees the tiefighter's
	// identity (from the node's address it would be remote-node: denied).
	eg := &v1alpha1.TrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "tiefighter-egress"},
		Spec: &v1alpha1.Rule{
			EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"class": "tiefighter"}}},
			Egress: []v1alpha1.EgressRule{{
				EgressCommonRule: v1alpha1.EgressCommonRule{ToEndpoints: []v1alpha1.EndpointSelector{{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"class": "deathstar"}}}}},
				ToPorts: []v1alpha1.PortRule{{
					Ports: []v1alpha1.PortProtocol{{Port: "80", Protocol: v1alpha1.ProtoTCP}},
					Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "POST", Path: "/v1/request-landing"}, {Method: "PUT"}}},
				}},
			}},
		},
	}
	if err := k8s.Create(ctx, eg); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammedOn(t, k8s, names, eg)
	waitDS = agents[2].Follow(t)
	waitTF := agents[1].Follow(t)
	if r := harness.Curl(t, pods["tiefighter"], "-XPOST", url); r.Code != http.StatusOK || r.Body != "Ship landed\n" {
		t.Errorf("tiefighter POST through both proxies: %v, want 200 Ship landed", r)
	}
	seenBy := func(wait func(func(agentclient.Event) bool, time.Duration) (agentclient.Event, bool), verdict, method string) bool {
		_, ok := wait(func(e agentclient.Event) bool {
			return e.Type == "l7" && e.Verdict == verdict && e.Source.IP == pods["tiefighter"].IP.String() && e.L7 != nil && e.L7.Method == method
		}, 10*time.Second)
		return ok
	}
	if !seenBy(waitTF, "FORWARDED", "POST") {
		t.Errorf("no FORWARDED POST of the tiefighter on its own node's agent (%s)", pods["tiefighter"].Node)
	}
	if !seenBy(waitDS, "FORWARDED", "POST") {
		t.Errorf("the deathstar's node did not see the proxied POST from the tiefighter's own address")
	}
	if r := harness.Curl(t, pods["tiefighter"], "-XPUT", "http://"+pods["deathstar"].IP.String()+"/v1/exhaust-port"); r.Code != http.StatusForbidden {
		t.Errorf("tiefighter PUT through both proxies: %v, want 403 from the deathstar's node", r)
	}
	if !seenBy(waitDS, "DENIED", "PUT") {
		t.Errorf("no DENIED PUT from the tiefighter's own address on the deathstar's node")
	}

	// The gRPC door manager across nodes: Cilium's Cloud City policy from
	// examples/, the terminal's calls judged by the door manager's node.
	door := harness.ExamplePolicy(t, "grpc/door-manager.yaml")
	if err := k8s.Create(ctx, door); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammedOn(t, k8s, names, door)
	gc := harness.StartWorkload(t, pods["public-terminal"], workloads.RoleGRPCClient, pods["cc-door-mgr"].IP.String()+":50051")
	for _, tc := range []struct{ method, code string }{
		{"GetName", "OK"},
		{"RequestMaintenance", "OK"},
		{"SetAccessCode", "PermissionDenied"},
	} {
		r, err := gc.Do(workloads.Command{Method: tc.method}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != tc.code {
			t.Errorf("public-terminal on %s -> %s on %s: %s %q, want %s", pods["public-terminal"].Node, tc.method, pods["cc-door-mgr"].Node, r.Code, r.Message, tc.code)
		}
	}
}
