package policy_test

import (
	"net/http"
	"net/netip"
	"testing"

	"portcullis.dev/portcullis/policy"
)

const (
	tiefighter = "org=empire,class=tiefighter"
	deathstar  = "org=empire,class=deathstar"
	xwing      = "org=alliance,class=xwing"
)

// Scenarios from Cilium's documentation, each run against our kinds and
// against Cilium's unmodified YAML.
func TestCiliumDocScenarios(t *testing.T) {
	type check struct {
		name string
		f    flow
		want string
		// wantL4 is the ingress side's L4 verdict when it matters.
		wantL4 string
	}
	scenarios := []struct {
		name   string
		files  []string
		checks []check
	}{
		{
			name:  "star wars L3/L4/L7",
			files: []string{"../examples/starwars", "../examples/cilium/sw_l3_l4_l7_policy.yaml"},
			checks: []check{
				{"tiefighter lands", flow{src: tiefighter, dst: deathstar, port: 80, http: "POST /v1/request-landing"}, policy.VerdictAllowed, "redirect"},
				{"tiefighter exhaust port", flow{src: tiefighter, dst: deathstar, port: 80, http: "PUT /v1/exhaust-port"}, policy.VerdictDenied, "redirect"},
				{"tiefighter GET landing", flow{src: tiefighter, dst: deathstar, port: 80, http: "GET /v1/request-landing"}, policy.VerdictDenied, "redirect"},
				{"landing path is anchored", flow{src: tiefighter, dst: deathstar, port: 80, http: "POST /v1/request-landing/x"}, policy.VerdictDenied, "redirect"},
				{"xwing dropped at L3", flow{src: xwing, dst: deathstar, port: 80, http: "POST /v1/request-landing"}, policy.VerdictDenied, "deny"},
				{"tiefighter other port", flow{src: tiefighter, dst: deathstar, port: 443}, policy.VerdictDenied, "deny"},
				{"deathstar in another namespace is not selected", flow{src: xwing, dst: deathstar + ",io.kubernetes.pod.namespace=other", port: 80}, policy.VerdictAllowed, "allow"},
			},
		},
		{
			name:  "kafka empire",
			files: []string{"../examples/kafka"},
			checks: []check{
				{"hq produces announcements", flow{src: "app=empire-hq", dst: "app=kafka", port: 9092, kafka: "produce:empire-announce"}, policy.VerdictAllowed, "redirect"},
				{"hq produces plans", flow{src: "app=empire-hq", dst: "app=kafka", port: 9092, kafka: "produce:deathstar-plans"}, policy.VerdictAllowed, "redirect"},
				{"outpost consumes announcements", flow{src: "app=empire-outpost", dst: "app=kafka", port: 9092, kafka: "fetch:empire-announce"}, policy.VerdictAllowed, "redirect"},
				{"outpost joins its group", flow{src: "app=empire-outpost", dst: "app=kafka", port: 9092, kafka: "joingroup"}, policy.VerdictAllowed, "redirect"},
				{"outpost cannot read plans", flow{src: "app=empire-outpost", dst: "app=kafka", port: 9092, kafka: "fetch:deathstar-plans"}, policy.VerdictDenied, "redirect"},
				{"outpost cannot produce", flow{src: "app=empire-outpost", dst: "app=kafka", port: 9092, kafka: "produce:empire-announce"}, policy.VerdictDenied, "redirect"},
				{"multi-topic needs every topic", flow{src: "app=empire-outpost", dst: "app=kafka", port: 9092, kafka: "fetch:empire-announce,deathstar-plans"}, policy.VerdictDenied, "redirect"},
				{"backup reads plans", flow{src: "app=empire-backup", dst: "app=kafka", port: 9092, kafka: "fetch:deathstar-plans"}, policy.VerdictAllowed, "redirect"},
				{"broker to broker is L4", flow{src: "app=kafka", dst: "app=kafka", port: 9092, kafka: "createtopics"}, policy.VerdictAllowed, "allow"},
				{"unknown client dropped", flow{src: "app=rebel", dst: "app=kafka", port: 9092}, policy.VerdictDenied, "deny"},
			},
		},
		{
			name:  "gRPC door manager",
			files: []string{"../examples/grpc"},
			checks: []check{
				{"GetName", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/GetName"}, policy.VerdictAllowed, "redirect"},
				{"GetLocation", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/GetLocation"}, policy.VerdictAllowed, "redirect"},
				{"RequestMaintenance", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/RequestMaintenance"}, policy.VerdictAllowed, "redirect"},
				{"SetAccessCode", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/SetAccessCode"}, policy.VerdictDenied, "redirect"},
				{"GetStatus", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/GetStatus"}, policy.VerdictDenied, "redirect"},
			},
		},
		{
			name:  "gRPC door manager, Cilium YAML",
			files: []string{"../examples/cilium/cc-door-ingress-security.yaml"},
			checks: []check{
				{"GetName", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/GetName"}, policy.VerdictAllowed, "redirect"},
				{"SetAccessCode", flow{src: "app=public-terminal", dst: "app=cc-door-mgr", port: 50051, http: "POST /cloudcity.DoorManager/SetAccessCode"}, policy.VerdictDenied, "redirect"},
			},
		},
		{
			name:  "kafka, Cilium YAML",
			files: []string{"../examples/cilium/kafka-sw-security-policy.yaml"},
			checks: []check{
				{"hq produces announcements", flow{src: "app=empire-hq", dst: "app=kafka", port: 9092, kafka: "produce:empire-announce"}, policy.VerdictAllowed, "redirect"},
				{"outpost cannot read plans", flow{src: "app=empire-outpost", dst: "app=kafka", port: 9092, kafka: "fetch:deathstar-plans"}, policy.VerdictDenied, "redirect"},
			},
		},
		{
			name:  "dns visibility and FQDN egress",
			files: []string{"../examples/dns"},
			checks: []check{
				{"lookup allowed by pattern *", flow{src: "org=alliance,class=mediabot", dst: "io.kubernetes.pod.namespace=kube-system,k8s-app=kube-dns", port: 53, proto: policy.ProtoUDP, dns: "api.github.com"}, policy.VerdictAllowed, "allow"},
				{"https to unresolved world denied", flow{src: "org=alliance,class=mediabot", dst: "ip:203.0.113.10", port: 443}, policy.VerdictDenied, ""},
			},
		},
	}
	for _, sc := range scenarios {
		for _, file := range sc.files {
			r := load(t, policy.ModeDefault, file)
			for _, c := range sc.checks {
				t.Run(sc.name+"/"+file+"/"+c.name, func(t *testing.T) {
					res := trace(t, r, c.f)
					if res.Verdict != c.want {
						t.Fatalf("verdict = %s, want %s\negress: %+v\ningress: %+v", res.Verdict, c.want, res.Egress, res.Ingress)
					}
					if c.wantL4 != "" && res.Ingress.Applies && res.Ingress.Decision.Verdict.String() != c.wantL4 {
						t.Errorf("ingress L4 verdict = %s, want %s (%s)", res.Ingress.Decision.Verdict, c.wantL4, res.Ingress.Decision.Reason)
					}
				})
			}
		}
	}
}

func TestDNSPatternScenario(t *testing.T) {
	r := load(t, policy.ModeDefault, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints:
    - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns:
        - matchPattern: "*.cilium.io"
        - matchName: "api.github.com"
`)
	dnsPod := "io.kubernetes.pod.namespace=kube-system,k8s-app=kube-dns"
	for _, c := range []struct {
		name string
		want string
	}{
		{"sub.cilium.io", policy.VerdictAllowed},
		{"SUB.Cilium.IO.", policy.VerdictAllowed},
		{"cilium.io", policy.VerdictDenied},
		{"sub.sub.cilium.io", policy.VerdictDenied},
		{"api.github.com", policy.VerdictAllowed},
		{"api.github.com.", policy.VerdictAllowed},
		{"github.com", policy.VerdictDenied},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := trace(t, r, flow{src: "app=client", dst: dnsPod, port: 53, proto: policy.ProtoUDP, dns: c.name})
			if res.Verdict != c.want {
				t.Errorf("verdict for %q = %s, want %s (%+v)", c.name, res.Verdict, c.want, res.Egress.L7)
			}
		})
	}
}

// Semantics beyond the docs' walkthroughs, as Cilium's reference describes.
func TestSemantics(t *testing.T) {
	cases := []struct {
		name   string
		mode   policy.Mode
		yaml   string
		f      flow
		want   string
		reason string // substring of the deciding side's reason, optional
	}{
		{
			name: "CIDR with except: inside",
			yaml: egressCIDR,
			f:    flow{src: "app=client", dst: "ip:192.0.2.5", port: 443},
			want: policy.VerdictAllowed,
		},
		{
			name: "CIDR with except: excepted",
			yaml: egressCIDR,
			f:    flow{src: "app=client", dst: "ip:192.0.2.200", port: 443},
			want: policy.VerdictDenied, reason: "default deny",
		},
		{
			name: "CIDR with except: outside",
			yaml: egressCIDR,
			f:    flow{src: "app=client", dst: "ip:198.51.100.1", port: 443},
			want: policy.VerdictDenied,
		},
		{
			name: "CIDR rules never select pods",
			yaml: egressCIDR,
			f:    flow{src: "app=client", dst: "app=server", port: 443},
			want: policy.VerdictDenied,
		},
		{
			name: "toCIDR single address",
			yaml: `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDR: ["203.0.113.7"]
`,
			f:    flow{src: "app=client", dst: "ip:203.0.113.7", port: 22},
			want: policy.VerdictAllowed,
		},
		{
			name: "entity world allows outside addresses",
			yaml: egressWorld,
			f:    flow{src: "app=client", dst: "ip:203.0.113.9", port: 443},
			want: policy.VerdictAllowed,
		},
		{
			name: "entity world does not allow pods",
			yaml: egressWorld,
			f:    flow{src: "app=client", dst: "app=server", port: 443},
			want: policy.VerdictDenied,
		},
		{
			name: "entity cluster allows pods of other namespaces",
			yaml: ingressCluster,
			f:    flow{src: "app=x,io.kubernetes.pod.namespace=elsewhere", dst: "app=server", port: 80},
			want: policy.VerdictAllowed,
		},
		{
			name: "entity cluster allows the host",
			yaml: ingressCluster,
			f:    flow{src: "entity:host", dst: "app=server", port: 80},
			want: policy.VerdictAllowed,
		},
		{
			name: "entity cluster does not allow world",
			yaml: ingressCluster,
			f:    flow{src: "ip:203.0.113.9", dst: "app=server", port: 80},
			want: policy.VerdictDenied,
		},
		{
			name: "deny beats allow",
			yaml: denyPrecedence,
			f:    flow{src: xwing, dst: deathstar, port: 80},
			want: policy.VerdictDenied, reason: "deny beats",
		},
		{
			name: "deny leaves other peers allowed",
			yaml: denyPrecedence,
			f:    flow{src: tiefighter, dst: deathstar, port: 80},
			want: policy.VerdictAllowed,
		},
		{
			name: "deny on a port range",
			yaml: denyPrecedence,
			f:    flow{src: tiefighter, dst: deathstar, port: 8005},
			want: policy.VerdictDenied,
		},
		{
			name: "port range end is inclusive",
			yaml: denyPrecedence,
			f:    flow{src: tiefighter, dst: deathstar, port: 8010},
			want: policy.VerdictDenied,
		},
		{
			name: "after the port range",
			yaml: denyPrecedence,
			f:    flow{src: tiefighter, dst: deathstar, port: 8011},
			want: policy.VerdictAllowed,
		},
		{
			name: "enableDefaultDeny false does not deny the rest",
			yaml: noDefaultDeny,
			f:    flow{src: "app=client", dst: "ip:203.0.113.9", port: 443},
			want: policy.VerdictAllowed,
		},
		{
			name: "enableDefaultDeny false still applies denies",
			yaml: noDefaultDeny,
			f:    flow{src: "app=client", dst: "ip:198.51.100.1", port: 443},
			want: policy.VerdictDenied,
		},
		{
			name: "enableDefaultDeny false still applies L7 rules",
			yaml: noDefaultDeny,
			f:    flow{src: "app=client", dst: "app=api", port: 8080, http: "DELETE /x"},
			want: policy.VerdictDenied,
		},
		{
			name: "namespace boundary: same labels, other namespace",
			yaml: nsBoundary,
			f:    flow{src: "app=frontend,io.kubernetes.pod.namespace=other", dst: "app=backend,io.kubernetes.pod.namespace=prod", port: 80},
			want: policy.VerdictDenied,
		},
		{
			name: "namespace boundary: same namespace",
			yaml: nsBoundary,
			f:    flow{src: "app=frontend,io.kubernetes.pod.namespace=prod", dst: "app=backend,io.kubernetes.pod.namespace=prod", port: 80},
			want: policy.VerdictAllowed,
		},
		{
			name: "namespace boundary: peer names its namespace",
			yaml: nsBoundary,
			f:    flow{src: "app=monitor,io.kubernetes.pod.namespace=ops", dst: "app=backend,io.kubernetes.pod.namespace=prod", port: 9090},
			want: policy.VerdictAllowed,
		},
		{
			name: "namespace boundary: peer by namespace label",
			yaml: nsBoundary,
			f:    flow{src: "app=anything,io.kubernetes.pod.namespace=team-x", dst: "app=backend,io.kubernetes.pod.namespace=prod", port: 7000},
			want: policy.VerdictAllowed,
		},
		{
			name: "namespace boundary: namespace label not matching",
			yaml: nsBoundary,
			f:    flow{src: "app=anything,io.kubernetes.pod.namespace=ops", dst: "app=backend,io.kubernetes.pod.namespace=prod", port: 7000},
			want: policy.VerdictDenied,
		},
		{
			name: "service account selector",
			yaml: serviceAccount,
			f:    flow{src: "app=x,io.cilium.k8s.policy.serviceaccount=reporter", dst: "app=db", port: 5432},
			want: policy.VerdictAllowed,
		},
		{
			name: "service account selector, other account",
			yaml: serviceAccount,
			f:    flow{src: "app=x,io.cilium.k8s.policy.serviceaccount=default", dst: "app=db", port: 5432},
			want: policy.VerdictDenied,
		},
		{
			name: "matchExpressions are ANDed: both hold",
			yaml: expressions,
			f:    flow{src: "tier=web,env=prod", dst: "app=db", port: 5432},
			want: policy.VerdictAllowed,
		},
		{
			name: "matchExpressions are ANDed: one fails",
			yaml: expressions,
			f:    flow{src: "tier=web,env=dev", dst: "app=db", port: 5432},
			want: policy.VerdictDenied,
		},
		{
			name: "selectors in fromEndpoints are ORed",
			yaml: expressions,
			f:    flow{src: "role=admin", dst: "app=db", port: 5432},
			want: policy.VerdictAllowed,
		},
		{
			name: "NotIn matches a missing label",
			yaml: expressions,
			f:    flow{src: "tier=web", dst: "app=db", port: 5432},
			want: policy.VerdictDenied, // env Exists fails
		},
		{
			name: "ICMP by name",
			yaml: icmp,
			f:    flow{src: "app=client", dst: "app=server", proto: policy.ProtoICMP, port: 8},
			want: policy.VerdictAllowed,
		},
		{
			name: "ICMP other type",
			yaml: icmp,
			f:    flow{src: "app=client", dst: "app=server", proto: policy.ProtoICMP, port: 13},
			want: policy.VerdictDenied,
		},
		{
			name: "L7 rules of two policies are unioned",
			yaml: l7Union,
			f:    flow{src: "app=client", dst: "app=api", port: 8080, http: "GET /b"},
			want: policy.VerdictAllowed,
		},
		{
			name: "L7 union still denies the rest",
			yaml: l7Union,
			f:    flow{src: "app=client", dst: "app=api", port: 8080, http: "GET /c"},
			want: policy.VerdictDenied,
		},
		{
			name: "an L4-only allow on the same port makes L7 moot",
			yaml: l7Union,
			f:    flow{src: "app=trusted", dst: "app=api", port: 8080, http: "DELETE /anything"},
			want: policy.VerdictAllowed, reason: "moot",
		},
		{
			name: "header presence rule",
			yaml: headers,
			f:    flow{src: "app=client", dst: "app=api", port: 80, http: "GET /", header: http.Header{"X-Token": {"123"}}},
			want: policy.VerdictAllowed,
		},
		{
			name: "header presence rule, header missing",
			yaml: headers,
			f:    flow{src: "app=client", dst: "app=api", port: 80, http: "GET /"},
			want: policy.VerdictDenied,
		},
		{
			name: "mode always denies unselected endpoints",
			mode: policy.ModeAlways,
			yaml: egressWorld,
			f:    flow{src: "app=other", dst: "app=another", port: 80},
			want: policy.VerdictDenied, reason: "always",
		},
		{
			name: "mode always still allows what a rule allows",
			mode: policy.ModeAlways,
			yaml: ingressCluster,
			f:    flow{src: "entity:host", dst: "app=server", port: 80},
			want: policy.VerdictAllowed,
		},
		{
			name: "mode never ignores denies",
			mode: policy.ModeNever,
			yaml: denyPrecedence,
			f:    flow{src: xwing, dst: deathstar, port: 80},
			want: policy.VerdictAllowed, reason: "never",
		},
		{
			name: "default mode allows unselected endpoints",
			yaml: egressWorld,
			f:    flow{src: "app=other", dst: "app=another", port: 80},
			want: policy.VerdictAllowed,
		},
		{
			name: "audit namespace turns denies into AUDITED",
			yaml: auditNS,
			f:    flow{src: "app=x,io.kubernetes.pod.namespace=audited", dst: "app=y,io.kubernetes.pod.namespace=audited", port: 80},
			want: policy.VerdictAudited,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mode := c.mode
			if mode == "" {
				mode = policy.ModeDefault
			}
			r := load(t, mode, c.yaml)
			res := trace(t, r, c.f)
			if res.Verdict != c.want {
				t.Fatalf("verdict = %s, want %s\negress: %+v\ningress: %+v", res.Verdict, c.want, res.Egress, res.Ingress)
			}
			if c.reason != "" {
				got := res.Egress.Decision.Reason + " | " + res.Ingress.Decision.Reason
				if !contains(got, c.reason) {
					t.Errorf("reasons %q do not mention %q", got, c.reason)
				}
			}
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

const egressCIDR = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: cidr, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDRSet:
    - cidr: 192.0.2.0/24
      except: [192.0.2.128/25]
    - cidr: 10.244.0.0/16
`

const egressWorld = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: world}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEntities: [world]
`

const ingressCluster = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: cluster}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEntities: [cluster]
`

const denyPrecedence = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow-all-empire}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{}]
---
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: deny-alliance}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {org: alliance}}]
  - toPorts:
    - ports: [{port: "8000", endPort: 8010, protocol: TCP}]
`

const noDefaultDeny = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: l7-visibility}
spec:
  endpointSelector: {matchLabels: {app: client}}
  enableDefaultDeny: {egress: false}
  egress:
  - toEndpoints: [{matchLabels: {app: api}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: GET}]
  egressDeny:
  - toCIDR: [198.51.100.0/24]
`

const nsBoundary = `
apiVersion: v1
kind: Namespace
metadata: {name: team-x, labels: {team: x}}
---
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: backend, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: backend}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
    toPorts: [{ports: [{port: "80"}]}]
  - fromEndpoints: [{matchLabels: {app: monitor, "k8s:io.kubernetes.pod.namespace": ops}}]
    toPorts: [{ports: [{port: "9090"}]}]
  - fromEndpoints: [{matchLabels: {"io.cilium.k8s.namespace.labels.team": x}}]
    toPorts: [{ports: [{port: "7000"}]}]
`

const serviceAccount = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: sa}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.policy.serviceaccount: reporter}}]
`

const expressions = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: expr}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints:
    - matchExpressions:
      - {key: tier, operator: In, values: [web, api]}
      - {key: env, operator: Exists}
      - {key: env, operator: NotIn, values: [dev]}
    - matchLabels: {role: admin}
`

const icmp = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: icmp}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps:
    - fields: [{type: EchoRequest, family: IPv4}]
`

const l7Union = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: a}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules: {http: [{method: GET, path: /a}]}
---
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: b}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules: {http: [{method: GET, path: /b}]}
  - fromEndpoints: [{matchLabels: {app: trusted}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
`

const headers = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: h}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{headers: [X-Token]}]}
`

const auditNS = `
apiVersion: v1
kind: Namespace
metadata:
  name: audited
  annotations: {policy.portcullis.dev/audit-mode: "true"}
---
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: lockdown, namespace: audited}
spec:
  endpointSelector: {}
  ingress: [{}]
`

// toFQDNs selects addresses only once a DNS answer names them.
func TestToFQDNsLearnsAddresses(t *testing.T) {
	r := load(t, policy.ModeDefault, "../examples/dns")
	bot := "org=alliance,class=mediabot"
	github := "ip:140.82.112.5"
	if v := trace(t, r, flow{src: bot, dst: github, port: 443}).Verdict; v != policy.VerdictDenied {
		t.Fatalf("before any DNS answer: %s, want DENIED", v)
	}
	r.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, false)
	r.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: "mediabot", Labels: map[string]string{"org": "alliance", "class": "mediabot"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.0.9")}})
	botID := r.EndpointPolicy("default", "mediabot").Identity.ID
	if sels := r.FQDNSelectors(botID, "API.GitHub.com."); len(sels) != 1 {
		t.Errorf("FQDNSelectors(mediabot, api.github.com) = %v, want its matchName", sels)
	}
	if sels := r.FQDNSelectors(botID, "github.com"); len(sels) != 0 {
		t.Errorf("FQDNSelectors(mediabot, github.com) = %v, want none", sels)
	}
	r.ObserveDNS("API.GitHub.com.", []netip.Addr{netip.MustParseAddr("140.82.112.5")})
	if v := trace(t, r, flow{src: bot, dst: github, port: 443}).Verdict; v != policy.VerdictAllowed {
		t.Fatalf("after api.github.com resolved: %s, want ALLOWED", v)
	}
	if v := trace(t, r, flow{src: bot, dst: github, port: 80}).Verdict; v != policy.VerdictDenied {
		t.Fatalf("learnt address on another port: %s, want DENIED", v)
	}
	r.ObserveDNS("docs.cilium.io", []netip.Addr{netip.MustParseAddr("198.51.100.20")})
	if v := trace(t, r, flow{src: bot, dst: "ip:198.51.100.20", port: 443}).Verdict; v != policy.VerdictAllowed {
		t.Fatalf("after docs.cilium.io resolved (matchPattern *.cilium.io): %s, want ALLOWED", v)
	}
	r.ObserveDNS("cilium.io", []netip.Addr{netip.MustParseAddr("198.51.100.21")})
	if v := trace(t, r, flow{src: bot, dst: "ip:198.51.100.21", port: 443}).Verdict; v != policy.VerdictDenied {
		t.Fatalf("cilium.io does not match *.cilium.io: %s, want DENIED", v)
	}
	r.ObserveDNS("api.github.com", nil)
	if v := trace(t, r, flow{src: bot, dst: github, port: 443}).Verdict; v != policy.VerdictDenied {
		t.Fatalf("after the name expired: %s, want DENIED", v)
	}
}

// toServices selects a Service's backends, outside and inside the cluster.
func TestToServices(t *testing.T) {
	r := load(t, policy.ModeDefault, `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: svc, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toServices:
    - k8sService: {serviceName: external-db, namespace: default}
    - k8sServiceSelector: {selector: {matchLabels: {tier: backend}}}
`)
	api := &policy.Endpoint{Namespace: "default", Name: "api-0", Labels: map[string]string{"app": "api"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.7")}}
	r.UpsertEndpoint(api)
	if v := trace(t, r, flow{src: "app=client", dst: "ip:203.0.113.50", port: 5432}).Verdict; v != policy.VerdictDenied {
		t.Fatalf("before the service exists: %s, want DENIED", v)
	}
	r.UpsertService(&policy.Service{Namespace: "default", Name: "external-db", Backends: []netip.Addr{netip.MustParseAddr("203.0.113.50")}})
	r.UpsertService(&policy.Service{Namespace: "default", Name: "api", Labels: map[string]string{"tier": "backend"}, Backends: []netip.Addr{netip.MustParseAddr("10.244.1.7")}})
	for _, c := range []struct {
		dst  string
		want string
	}{
		{"ip:203.0.113.50", policy.VerdictAllowed},
		{"ip:10.244.1.7", policy.VerdictAllowed},
		{"ip:203.0.113.51", policy.VerdictDenied},
	} {
		if v := trace(t, r, flow{src: "app=client", dst: c.dst, port: 5432}).Verdict; v != c.want {
			t.Errorf("to %s: %s, want %s", c.dst, v, c.want)
		}
	}
	r.DeleteService("default", "external-db")
	if v := trace(t, r, flow{src: "app=client", dst: "ip:203.0.113.50", port: 5432}).Verdict; v != policy.VerdictDenied {
		t.Fatalf("after the service is gone: %s, want DENIED", v)
	}
}
