package proxy_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
)

var (
	clientIP = netip.MustParseAddr("10.244.1.1")
	serverIP = netip.MustParseAddr("10.244.1.2")
	otherIP  = netip.MustParseAddr("10.244.1.3")
)

// testSnapshot builds a repository with a client (app=client) and a server
// (app=server) pod in namespace default, applies the policies and returns
// a snapshot whose local endpoints are the named pods. audit puts the
// server in audit mode.
func testSnapshot(t *testing.T, local []string, audit bool, yamls ...string) *proxy.Snapshot {
	t.Helper()
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", nil, false)
	server := policytest.Pod("server", serverIP)
	server.Audit = audit
	pods := map[string]*policy.Endpoint{"client": policytest.Pod("client", clientIP), "server": server}
	for _, ep := range pods {
		repo.UpsertEndpoint(ep)
	}
	policytest.Apply(t, repo, yamls...)
	var eps []*policy.Endpoint
	for _, name := range local {
		eps = append(eps, pods[name])
	}
	return policytest.Snapshot(repo, eps...)
}

// The policies the cases combine: the client's egress and the server's
// ingress on port 80, with HTTP rules, Kafka rules or none.
var (
	egressHTTP  = policytest.Egress("client-out", "80", `http: [{method: GET, path: "/public.*"}, {method: GET, path: "/shared"}]`)
	egressL4    = policytest.Egress("client-out", "80", "")
	ingressHTTP = policytest.Ingress("server-in", "80", `
		http:
		- method: GET
		  path: "/shared"
		- method: POST
		  path: "/submit"
		  headerMatches: [{mismatch: ADD, name: X-Checked, value: "yes"}]`)
	ingressOtherPort = policytest.Ingress("server-in", "8080", "")
	ingressKafka     = policytest.Ingress("server-in", "80", "kafka: [{role: produce, topic: t}]")
)

func getReq(path string) l7.HTTPRequest {
	return l7.HTTPRequest{Method: "GET", Path: path, Header: http.Header{}}
}

func TestResolveAndDecideHTTP(t *testing.T) {
	flow := [2]netip.AddrPort{netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80)}
	type reqCase struct {
		req              l7.HTTPRequest
		allowed, audited bool
		deniedBy         policy.Direction // checked when denied or audited
		actions          int
		rulePrefix       string
	}
	tests := []struct {
		name        string
		local       []string
		audit       bool
		yamls       []string
		nilSnapshot bool
		// want of the ConnPolicy
		sides    []policy.Direction
		denied   bool
		err      string
		parser   l7.Parser
		parseErr string
		reqs     []reqCase
	}{
		{
			name: "egress only", local: []string{"client", "server"}, yamls: []string{egressHTTP},
			sides: []policy.Direction{policy.Egress}, parser: l7.ParserHTTP,
			reqs: []reqCase{
				{req: getReq("/public/a"), allowed: true, rulePrefix: "TrafficPolicy default/client-out"},
				{req: getReq("/private"), deniedBy: policy.Egress},
				{req: l7.HTTPRequest{Method: "POST", Path: "/public", Header: http.Header{}}, deniedBy: policy.Egress},
			},
		},
		{
			name: "ingress only", local: []string{"client", "server"}, yamls: []string{ingressHTTP},
			sides: []policy.Direction{policy.Ingress}, parser: l7.ParserHTTP,
			reqs: []reqCase{
				{req: getReq("/shared"), allowed: true},
				{req: getReq("/public/a"), deniedBy: policy.Ingress},
				{req: l7.HTTPRequest{Method: "POST", Path: "/submit", Header: http.Header{}}, allowed: true, actions: 1},
			},
		},
		{
			name: "both sides redirect", local: []string{"client", "server"}, yamls: []string{egressHTTP, ingressHTTP},
			sides: []policy.Direction{policy.Egress, policy.Ingress}, parser: l7.ParserHTTP,
			reqs: []reqCase{
				{req: getReq("/shared"), allowed: true},
				// Allowed by the egress side, refused by the ingress side.
				{req: getReq("/public/a"), deniedBy: policy.Ingress},
				// Refused by the egress side first.
				{req: l7.HTTPRequest{Method: "POST", Path: "/submit", Header: http.Header{}}, deniedBy: policy.Egress},
			},
		},
		{
			name: "one side allow, one redirect", local: []string{"client", "server"}, yamls: []string{egressL4, ingressHTTP},
			sides: []policy.Direction{policy.Ingress}, parser: l7.ParserHTTP,
			reqs: []reqCase{
				{req: getReq("/shared"), allowed: true},
				{req: getReq("/other"), deniedBy: policy.Ingress},
			},
		},
		{
			name: "only the source is local", local: []string{"client"}, yamls: []string{egressHTTP, ingressHTTP},
			sides: []policy.Direction{policy.Egress}, parser: l7.ParserHTTP,
			reqs: []reqCase{{req: getReq("/public/a"), allowed: true}},
		},
		{
			name: "L4 deny after a change", local: []string{"client", "server"}, yamls: []string{egressHTTP, ingressOtherPort},
			sides: []policy.Direction{policy.Egress}, denied: true, parser: l7.ParserHTTP,
			reqs: []reqCase{{req: getReq("/public/a"), deniedBy: policy.Ingress}},
		},
		{
			name: "audit side", local: []string{"client", "server"}, audit: true, yamls: []string{egressHTTP, ingressHTTP},
			sides: []policy.Direction{policy.Egress, policy.Ingress}, parser: l7.ParserHTTP,
			reqs: []reqCase{
				// The ingress side is in audit mode: its denial is reported.
				{req: getReq("/public/a"), allowed: true, audited: true, deniedBy: policy.Ingress},
				// The egress side enforces.
				{req: l7.HTTPRequest{Method: "POST", Path: "/submit", Header: http.Header{}}, deniedBy: policy.Egress},
				{req: getReq("/shared"), allowed: true},
			},
		},
		{
			name: "audit side with an L4 deny", local: []string{"client", "server"}, audit: true, yamls: []string{egressHTTP, ingressOtherPort},
			sides: []policy.Direction{policy.Egress}, parser: l7.ParserHTTP,
			reqs: []reqCase{{req: getReq("/public/a"), allowed: true}},
		},
		{
			name: "no snapshot", nilSnapshot: true, denied: true, err: "no policy snapshot",
			reqs: []reqCase{{req: getReq("/public/a"), deniedBy: policy.Ingress}},
		},
		{
			name: "neither side local", local: nil, yamls: []string{egressHTTP}, denied: true, err: "neither",
			reqs: []reqCase{{req: getReq("/public/a"), deniedBy: policy.Ingress}},
		},
		{
			name: "parser conflict", local: []string{"client", "server"}, yamls: []string{egressHTTP, ingressKafka},
			sides: []policy.Direction{policy.Egress, policy.Ingress}, parseErr: "needs http but the ingress policy of server needs kafka",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st proxy.Store
			if !tc.nilSnapshot {
				st.Set(testSnapshot(t, tc.local, tc.audit, tc.yamls...))
			}
			cp := st.Resolve(flow[0], flow[1], policy.ProtoTCP)
			var dirs []policy.Direction
			for _, s := range cp.Sides {
				dirs = append(dirs, s.Direction)
			}
			if len(dirs) != len(tc.sides) {
				t.Fatalf("sides %v, want %v", dirs, tc.sides)
			}
			for i := range dirs {
				if dirs[i] != tc.sides[i] {
					t.Fatalf("sides %v, want %v", dirs, tc.sides)
				}
			}
			if (cp.Denied != nil) != tc.denied {
				t.Fatalf("Denied = %+v, want denied=%v", cp.Denied, tc.denied)
			}
			if tc.err == "" && cp.Err != nil || tc.err != "" && (cp.Err == nil || !strings.Contains(cp.Err.Error(), tc.err)) {
				t.Fatalf("Err = %v, want %q", cp.Err, tc.err)
			}
			if tc.nilSnapshot && cp.Revision != 0 || !tc.nilSnapshot && cp.Revision == 0 {
				t.Errorf("Revision = %d", cp.Revision)
			}
			if !tc.denied {
				p, err := cp.Parser()
				if tc.parseErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.parseErr) {
						t.Fatalf("Parser() error %v, want %q", err, tc.parseErr)
					}
					return
				}
				if err != nil || p != tc.parser {
					t.Fatalf("Parser() = %v, %v; want %v", p, err, tc.parser)
				}
			}
			for _, rc := range tc.reqs {
				d := cp.DecideHTTP(rc.req)
				what := rc.req.Method + " " + rc.req.Path
				if d.Allowed != rc.allowed || d.Audited != rc.audited {
					t.Errorf("%s: allowed=%v audited=%v, want %v %v", what, d.Allowed, d.Audited, rc.allowed, rc.audited)
					continue
				}
				if !d.Allowed || d.Audited {
					if d.DeniedBy == nil {
						t.Errorf("%s: no DeniedBy", what)
					} else if d.DeniedBy.Endpoint != nil && d.DeniedBy.Direction != rc.deniedBy {
						t.Errorf("%s: denied by %s, want %s", what, d.DeniedBy.Direction, rc.deniedBy)
					}
					if !d.Allowed && (d.Rule != "" || d.Actions != nil) {
						t.Errorf("%s: denied with rule %q actions %v", what, d.Rule, d.Actions)
					}
				} else if d.DeniedBy != nil {
					t.Errorf("%s: allowed but DeniedBy %+v", what, d.DeniedBy)
				}
				if len(d.Actions) != rc.actions {
					t.Errorf("%s: %d header actions, want %d", what, len(d.Actions), rc.actions)
				}
				if rc.rulePrefix != "" && !strings.HasPrefix(d.Rule, rc.rulePrefix) {
					t.Errorf("%s: rule %q, want prefix %q", what, d.Rule, rc.rulePrefix)
				}
			}
		})
	}
}

// TestDeniedSidePolicies checks the names a denial carries.
func TestDeniedSidePolicies(t *testing.T) {
	var st proxy.Store
	st.Set(testSnapshot(t, []string{"client", "server"}, false, egressHTTP, ingressOtherPort))
	cp := st.Resolve(netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80), policy.ProtoTCP)
	if cp.Denied == nil || cp.Denied.Direction != policy.Ingress || cp.Denied.Endpoint.Name != "server" {
		t.Fatalf("Denied = %+v", cp.Denied)
	}
	e := cp.Event("DENIED", "x", "tcp", cp.Denied)
	if e.Source.Pod != "client" || e.Destination.Pod != "server" || e.Direction != "ingress" || e.Destination.Port != 80 {
		t.Errorf("event %+v", e)
	}
	if e.Source.Identity == 0 || len(e.Source.Labels) == 0 {
		t.Errorf("source without identity: %+v", e.Source)
	}
	// An unknown peer is world.
	cp = st.Resolve(netip.AddrPortFrom(otherIP, 1), netip.AddrPortFrom(serverIP, 80), policy.ProtoTCP)
	if cp.Source.Identity == nil || cp.Source.Identity.ID != policy.IdentityWorld {
		t.Errorf("unknown source identity %v, want world", cp.Source.Identity)
	}
}

// TestResolveUnwrittenEndpoint: a local endpoint whose policy is not
// written refuses the flow, on either side; it is not taken for a remote
// peer whose side needs no check.
func TestResolveUnwrittenEndpoint(t *testing.T) {
	for _, side := range []string{"client", "server"} {
		s := testSnapshot(t, []string{"client", "server"}, false, egressHTTP)
		ip := map[string]netip.Addr{"client": clientIP, "server": serverIP}[side]
		s.Endpoints[ip].Policy = nil
		cp := s.Resolve(netip.AddrPortFrom(clientIP, 40000), netip.AddrPortFrom(serverIP, 80), policy.ProtoTCP)
		if cp.Denied == nil || cp.Err == nil || !strings.Contains(cp.Err.Error(), "default/"+side+" is not written yet") {
			t.Errorf("%s unwritten: Denied %+v, Err %v", side, cp.Denied, cp.Err)
		}
		if d := cp.DecideHTTP(getReq("/public/a")); d.Allowed {
			t.Errorf("%s unwritten: request allowed", side)
		}
	}
}
