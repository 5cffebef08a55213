// Package proxy is the end-to-end test of the L7 proxy through the real
// BPF redirect: a local cluster (real kube-apiserver, pods as network
// namespaces), the agent in-process (agent.Run: datapath, policy sync and
// the proxy on its own port), the policies of examples/ applied through
// the apiserver, real servers in the server pods (the deathstar over
// HTTP/1.1 and h2c, the gRPC door manager, both internal/workloads run by this
// binary) and real clients in the client pods: Debian's curl, and a
// grpc-go client and a keep-alive HTTP client (this binary again).
package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/e2e/internal/nodelock"
	"portcullis.dev/portcullis/internal/localcluster"
	"portcullis.dev/portcullis/internal/workloads"
	"portcullis.dev/portcullis/monitor"
)

// accessDenied is the body of the proxy's HTTP 403.
const accessDenied = "Access denied\r\n"

// TestMain runs a workload when the binary is re-executed in a pod
// (internal/workloads), else the tests under the node lock.
func TestMain(m *testing.M) {
	workloads.RunIfChild()
	ctrl.SetLogger(logr.Discard())
	// Node-wide state (the proxy's ip rule) is shared with other e2e
	// packages that go test runs in parallel: one at a time.
	nodelock.RunTests(m)
}

// TestProxy runs the scenarios on one cluster (starting one takes
// seconds): Cilium's Star Wars HTTP demo over HTTP/1.1 and HTTP/2, the
// gRPC door manager, a header rule, and a policy change under an open
// keep-alive connection.
func TestProxy(t *testing.T) {
	begin := time.Now()
	ctx := context.Background()
	e := newEnv(t)

	// The pods of examples/starwars and examples/grpc, in "default" as
	// there.
	deathstar := e.addPod("default", "deathstar", map[string]string{"org": "empire", "class": "deathstar"})
	tiefighter := e.addPod("default", "tiefighter", map[string]string{"org": "empire", "class": "tiefighter"})
	xwing := e.addPod("default", "xwing", map[string]string{"org": "alliance", "class": "xwing"})
	doorMgr := e.addPod("default", "cc-door-mgr", map[string]string{"app": "cc-door-mgr"})
	terminal := e.addPod("default", "public-terminal", map[string]string{"app": "public-terminal"})
	ds := harness.StartWorkload(t, deathstar, workloads.RoleDeathstar, "0.0.0.0:80")
	dm := harness.StartWorkload(t, doorMgr, workloads.RoleDoorManager, "0.0.0.0:50051")
	// Their Services, and kube-dns: clients call the servers by name, as
	// users do (the names resolve through CoreDNS at its ClusterIP, both
	// translated by the datapath).
	dsURL := "http://" + e.addService("default", "deathstar", map[string]string{"org": "empire", "class": "deathstar"}, 80)
	doorAddr := e.addService("default", "cc-door-server", map[string]string{"app": "cc-door-mgr"}, 50051) + ":50051"
	if _, err := e.c.StartDNS(ctx); err != nil {
		t.Fatal(err)
	}

	harness.StartOperator(t, e.c)
	e.startAgent()

	// Without a policy everything reaches the servers directly: the
	// deathstar explodes, the door manager opens to anyone.
	t.Run("without policy", func(t *testing.T) {
		expectCurl(t, tiefighter, 200, "Ship landed\n", "-X", "POST", dsURL+"/v1/request-landing")
		expectCurl(t, xwing, 503, "Panic: deathstar exploded\n", "-X", "PUT", dsURL+"/v1/exhaust-port")
		gc := harness.StartWorkload(t, terminal, workloads.RoleGRPCClient, doorAddr)
		defer gc.Stop()
		for _, m := range workloads.DoorManagerMethods {
			if r, err := gc.Do(workloads.Command{Method: m}, 10*time.Second); err != nil || r.Code != "OK" {
				t.Errorf("%s: %+v, %v; want OK", m, r, err)
			}
		}
	})

	rule1 := harness.ExamplePolicy(t, "starwars/rule1.yaml")
	doorPolicy := harness.ExamplePolicy(t, "grpc/door-manager.yaml")
	for _, p := range []*v1alpha1.TrafficPolicy{rule1, doorPolicy} {
		if err := e.k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	harness.WaitProgrammed(t, e.c, e.k8s, rule1)
	harness.WaitProgrammed(t, e.c, e.k8s, doorPolicy)
	t.Logf("cluster, pods, agent, policies ready after %v", time.Since(begin).Round(time.Millisecond))

	expect := func(t *testing.T, pod string, want int, wantBody string, args ...string) curlResult {
		t.Helper()
		return expectCurl(t, e.c.Pod("default", pod), want, wantBody, args...)
	}
	// notSeen checks the deathstar received no method path after its
	// first mark requests: a later allowed request it did receive marks
	// that the denied one would have arrived by then.
	notSeen := func(t *testing.T, mark int, method, path string) {
		t.Helper()
		expect(t, "tiefighter", 200, "Ship landed\n", "-X", "POST", dsURL+"/v1/request-landing")
		if _, ok := ds.WaitSeen(func(s workloads.Seen) bool { return s.Method == "POST" }, 5*time.Second); !ok {
			t.Fatal("the deathstar never saw the marker request")
		}
		for _, s := range ds.Seen()[mark:] {
			if s.Method == method && s.Path == path {
				t.Errorf("the deathstar received the denied %s %s (%s)", method, path, s.Proto)
			}
		}
	}

	t.Run("starwars http/1.1", func(t *testing.T) {
		r := expect(t, "tiefighter", 200, "Ship landed\n", "-X", "POST", dsURL+"/v1/request-landing")
		if r.Version != "1.1" {
			t.Errorf("response version %s, want 1.1", r.Version)
		}
		// The deathstar sees the request from the tiefighter's own
		// address: the proxy's upstream leg keeps the pod's address when
		// both pods are on this node.
		if s, ok := ds.WaitSeen(workloads.SeenPath("POST", "/v1/request-landing"), 5*time.Second); !ok {
			t.Error("the deathstar did not see the landing request")
		} else if host, _, _ := net.SplitHostPort(s.Remote); host != tiefighter.IP.String() {
			t.Errorf("the deathstar saw the request from %s, want the tiefighter's %s", s.Remote, tiefighter.IP)
		}
		mark := len(ds.Seen())
		expect(t, "tiefighter", 403, accessDenied, "-X", "PUT", dsURL+"/v1/exhaust-port")
		notSeen(t, mark, "PUT", "/v1/exhaust-port")

		// What `portcullis monitor` shows: the request forwarded and the
		// denial, with the policy that decided.
		e.l7Event(t, "FORWARDED POST /v1/request-landing at the deathstar's ingress", func(ev monitor.Event) bool {
			return ev.Verdict == monitor.VerdictForwarded && ev.L7.Method == "POST" && ev.L7.Path == "/v1/request-landing" &&
				ev.Source.Pod == "tiefighter" && ev.Destination.Pod == "deathstar" && ev.Direction == "ingress"
		})
		denied := e.l7Event(t, "DENIED PUT /v1/exhaust-port", func(ev monitor.Event) bool {
			return ev.Verdict == monitor.VerdictDenied && ev.L7.Method == "PUT" && ev.L7.Path == "/v1/exhaust-port"
		})
		if denied.L7.Status != 403 || denied.Source.Pod != "tiefighter" || denied.Destination.Pod != "deathstar" || !strings.Contains(denied.Policy, "default/rule1") {
			t.Errorf("denial event %+v (l7 %+v): want status 403 from tiefighter to deathstar naming default/rule1", denied, *denied.L7)
		}

		for _, v := range []string{"FORWARDED", "DENIED"} {
			if n := agent.ProxyRequestCount("http/1.1", v); n < 1 {
				t.Errorf("portcullis_proxy_requests_total{http/1.1,%s} = %v, want >= 1", v, n)
			}
		}

		// The xwing is dropped at L3 by the kernel: curl times out.
		r = curl(t, xwing, "-X", "POST", dsURL+"/v1/request-landing")
		if r.Exit != 28 || r.Code != 0 {
			t.Errorf("xwing: %v, want a timeout (exit 28) and no response", r)
		}
		if e.dropsFrom(xwing.IP) == 0 {
			t.Error("no DROPPED event from the xwing's address")
		}
	})

	t.Run("starwars http2 prior knowledge", func(t *testing.T) {
		h2 := "--http2-prior-knowledge"
		r := expect(t, "tiefighter", 200, "Ship landed\n", h2, "-X", "POST", dsURL+"/v1/request-landing")
		if r.Version != "2" {
			t.Errorf("response version %s, want 2", r.Version)
		}
		mark := len(ds.Seen())
		expect(t, "tiefighter", 403, accessDenied, h2, "-X", "PUT", dsURL+"/v1/exhaust-port")
		notSeen(t, mark, "PUT", "/v1/exhaust-port")
		e.l7Event(t, "DENIED h2 PUT /v1/exhaust-port", func(ev monitor.Event) bool {
			return ev.Verdict == monitor.VerdictDenied && ev.L7.Protocol == "h2" && ev.L7.Path == "/v1/exhaust-port"
		})
	})

	t.Run("grpc door manager", func(t *testing.T) {
		mark := len(dm.Seen())
		gc := harness.StartWorkload(t, terminal, workloads.RoleGRPCClient, doorAddr)
		var last workloads.Result
		for _, tc := range []struct {
			method string
			code   string
		}{
			{"GetName", "OK"},
			{"GetLocation", "OK"},
			{"RequestMaintenance", "OK"},
			{"SetAccessCode", "PermissionDenied"},
			{"GetStatus", "PermissionDenied"},
		} {
			r, err := gc.Do(workloads.Command{Method: tc.method}, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			last = r
			if r.Code != tc.code && tc.code == "OK" {
				t.Fatalf("%s: %s %q, want OK", tc.method, r.Code, r.Message)
			}
			if r.Code != tc.code {
				t.Errorf("%s: %s %q, want %s", tc.method, r.Code, r.Message, tc.code)
				continue
			}
			if tc.code != "OK" {
				t.Logf("%s: %s %q", tc.method, r.Code, r.Message)
				if !strings.Contains(r.Message, "default/door-manager") {
					t.Errorf("%s: message %q does not name the policy default/door-manager", tc.method, r.Message)
				}
				continue
			}
			s, seen := dm.WaitSeen(workloads.SeenPath("POST", workloads.DoorManagerPath(tc.method)), 5*time.Second)
			if r.Reply == "" || !seen {
				t.Errorf("%s: reply %q, the server saw it: %v", tc.method, r.Reply, seen)
			} else if host, _, _ := net.SplitHostPort(s.Remote); host != terminal.IP.String() {
				t.Errorf("%s: the door manager saw the call from %s, want the terminal's %s", tc.method, s.Remote, terminal.IP)
			}
		}
		// Denials are answered on the call, not by closing the connection:
		// a later call works on the same one, and once the server has it,
		// a denied call it had been sent would have arrived too.
		before := len(dm.Seen())
		if r, err := gc.Do(workloads.Command{Method: "GetName"}, 10*time.Second); err != nil || r.Code != "OK" {
			t.Fatalf("GetName after the denials: %+v, %v", r, err)
		} else {
			last = r
		}
		harness.Eventually(t, "the door manager sees the GetName after the denials", 5*time.Second, func() error {
			if n := len(dm.Seen()); n <= before {
				return fmt.Errorf("%d calls seen", n)
			}
			return nil
		})
		if last.Conns != 1 {
			t.Errorf("the client dialled %d connections, want 1", last.Conns)
		}
		for _, s := range dm.Seen()[mark:] {
			if strings.HasSuffix(s.Path, "/SetAccessCode") || strings.HasSuffix(s.Path, "/GetStatus") {
				t.Errorf("the door manager received the denied %s", s.Path)
			}
		}
		ev := e.l7Event(t, "DENIED grpc SetAccessCode", func(ev monitor.Event) bool {
			return ev.Verdict == monitor.VerdictDenied && ev.L7.Path == workloads.DoorManagerPath("SetAccessCode")
		})
		if ev.L7.GRPCStatus == nil || *ev.L7.GRPCStatus != 7 {
			t.Errorf("denial event l7 %+v: want grpc status 7", *ev.L7)
		}
		if n := agent.ProxyRequestCount("grpc", "DENIED"); n < 2 {
			t.Errorf("portcullis_proxy_requests_total{grpc,DENIED} = %v, want >= 2", n)
		}

		// gRPC connections live long: a policy change applies to the next
		// call on the open HTTP/2 connection.
		call := func(method string) workloads.Result {
			t.Helper()
			r, err := gc.Do(workloads.Command{Method: method}, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		original := harness.ExamplePolicy(t, "grpc/door-manager.yaml").Spec.Ingress[0].ToPorts[0].Rules.HTTP
		setHTTPRules(t, e.k8s, doorPolicy, []v1alpha1.PortRuleHTTP{{Method: "POST", Path: workloads.DoorManagerPath("GetLocation")}})
		harness.WaitProgrammed(t, e.c, e.k8s, doorPolicy)
		harness.Eventually(t, "GetName denied on the open connection", 10*time.Second, func() error {
			if r := call("GetName"); r.Code != "PermissionDenied" {
				return fmt.Errorf("%s %q", r.Code, r.Message)
			}
			return nil
		})
		if r := call("GetLocation"); r.Code != "OK" || r.Conns != 1 {
			t.Errorf("GetLocation after the change: %+v, want OK on the first connection", r)
		}
		setHTTPRules(t, e.k8s, doorPolicy, original)
		harness.WaitProgrammed(t, e.c, e.k8s, doorPolicy)
		harness.Eventually(t, "GetName allowed again on the open connection", 10*time.Second, func() error {
			if r := call("GetName"); r.Code != "OK" || r.Conns != 1 {
				return fmt.Errorf("%+v", r)
			}
			return nil
		})
	})

	t.Run("header regex", func(t *testing.T) {
		// examples/headers: a second policy on the deathstar, GET /v1/
		// with a numeric X-Token (headerMatches[].regex, a Portcullis
		// extension; the whole value must match).
		token := harness.ExamplePolicy(t, "headers/deathstar-token.yaml")
		if err := e.k8s.Create(ctx, token); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := e.k8s.Delete(ctx, token); err != nil {
				t.Error(err)
			}
		}()
		mark := len(ds.Seen())
		harness.WaitProgrammed(t, e.c, e.k8s, token)
		expect(t, "tiefighter", 200, "", "-H", "X-Token: 12345", dsURL+"/v1/")
		if s, ok := ds.WaitSeen(func(s workloads.Seen) bool { return s.Method == "GET" && s.Header["X-Token"] == "12345" }, 5*time.Second); !ok {
			t.Error("the deathstar did not see the GET with X-Token: 12345")
		} else if s.Path != "/v1/" {
			t.Errorf("the deathstar saw %s", s.Path)
		}
		for _, hdr := range []string{"X-Token: abc", "X-Token: 12a", "X-Other: 12345"} {
			expect(t, "tiefighter", 403, accessDenied, "-H", hdr, dsURL+"/v1/")
		}
		for _, s := range ds.Seen()[mark:] {
			if s.Method == "GET" && s.Header["X-Token"] != "12345" {
				t.Errorf("the deathstar received a denied GET (headers %v)", s.Header)
			}
		}
	})

	t.Run("policy change under a keep-alive connection", func(t *testing.T) {
		hc := harness.StartWorkload(t, tiefighter, workloads.RoleHTTPClient)
		do := func(method, path string) workloads.Result {
			t.Helper()
			r, err := hc.Do(workloads.Command{Method: method, URL: dsURL + path}, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := do("POST", "/v1/request-landing"); r.Status != 200 || r.Body != "Ship landed\n" || r.Conns != 1 {
			t.Fatalf("request 1: %+v, want 200 Ship landed on the first connection", r)
		}
		// rule1 now allows only GET /v1/; the connection stays open.
		setHTTPRules(t, e.k8s, rule1, []v1alpha1.PortRuleHTTP{{Method: "GET", Path: "/v1/"}})
		harness.WaitProgrammed(t, e.c, e.k8s, rule1)
		// New connections see the change first; then the old one must too.
		expect(t, "tiefighter", 403, accessDenied, "-X", "POST", dsURL+"/v1/request-landing")
		if r := do("POST", "/v1/request-landing"); r.Status != 403 || r.Body != accessDenied || r.Conns != 1 {
			t.Errorf("request 2: %+v, want 403 %q on the same connection", r, accessDenied)
		}
		if r := do("GET", "/v1/"); r.Status != 200 || r.Conns != 1 {
			t.Errorf("request 3: %+v, want 200 on the same connection", r)
		}
		// And back.
		setHTTPRules(t, e.k8s, rule1, harness.ExamplePolicy(t, "starwars/rule1.yaml").Spec.Ingress[0].ToPorts[0].Rules.HTTP)
		harness.WaitProgrammed(t, e.c, e.k8s, rule1)
		expect(t, "tiefighter", 200, "Ship landed\n", "-X", "POST", dsURL+"/v1/request-landing")
		if r := do("POST", "/v1/request-landing"); r.Status != 200 || r.Conns != 1 {
			t.Errorf("request 4: %+v, want 200 on the same connection", r)
		}
	})
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

// expectCurl runs curl in pod until it gives the status want (the proxy's
// snapshot may trail the reported status by a sync), then checks the body
// ("" for any).
func expectCurl(t *testing.T, pod *localcluster.Pod, want int, wantBody string, args ...string) curlResult {
	t.Helper()
	var r curlResult
	harness.Eventually(t, fmt.Sprintf("%s: curl %s gives %d", pod.Name, strings.Join(args, " "), want), 10*time.Second, func() error {
		r = curl(t, pod, args...)
		if r.Exit != 0 || r.Code != want {
			return fmt.Errorf("got %v", r)
		}
		return nil
	})
	if wantBody != "" && r.Body != wantBody {
		t.Errorf("%s: curl %s: body %q, want %q", pod.Name, strings.Join(args, " "), r.Body, wantBody)
	}
	return r
}

// setHTTPRules replaces the HTTP rules of p's first port rule (the
// operator writes status meanwhile, hence the retry on conflicts).
func setHTTPRules(t *testing.T, k8s client.Client, p *v1alpha1.TrafficPolicy, rules []v1alpha1.PortRuleHTTP) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec.Ingress[0].ToPorts[0].Rules = &v1alpha1.L7Rules{HTTP: rules}
		return k8s.Update(context.Background(), p)
	})
	if err != nil {
		t.Fatal(err)
	}
}
