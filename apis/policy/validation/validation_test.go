package validation

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// decode parses one YAML document into an Unstructured.
func decode(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("parsing test YAML: %v", err)
	}
	return &unstructured.Unstructured{Object: m}
}

func formatErrs(errs field.ErrorList) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n\t")
		b.WriteString(e.Error())
	}
	return b.String()
}

const (
	tpHead  = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: TrafficPolicy\nmetadata:\n  name: p\n  namespace: default\n"
	ctpHead = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: ClusterTrafficPolicy\nmetadata:\n  name: p\n"
	atpHead = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: AdminTrafficPolicy\nmetadata:\n  name: p\n"
)

func TestValidateInvalid(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		wantField string
		wantMsg   string
	}{{
		name: "unknown field",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - fromEndpointz: [{}]
`,
		wantField: "spec.ingress[0].fromEndpointz",
		wantMsg:   `unknown field "spec.ingress[0].fromEndpointz"`,
	}, {
		name: "unknown metadata field",
		doc: tpHead + `  lables: {a: b}
spec:
  endpointSelector: {}
`,
		wantField: "metadata.lables",
		wantMsg:   `unknown field "metadata.lables"`,
	}, {
		name: "rules in an ingressDeny toPorts entry",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingressDeny:
  - fromEntities: [world]
    toPorts:
    - ports: [{port: "80"}]
      rules: {http: [{method: GET}]}
`,
		wantField: "spec.ingressDeny[0].toPorts[0].rules",
		wantMsg:   `unknown field "spec.ingressDeny[0].toPorts[0].rules"`,
	}, {
		name: "bad CIDR",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - fromCIDR: ["10.0.0.0/33"]
`,
		wantField: "spec.ingress[0].fromCIDR[0]",
		wantMsg:   "must be an IP address or a CIDR prefix",
	}, {
		name: "bad CIDR in an except list",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toCIDRSet:
    - cidr: 10.0.0.0/8
      except: ["10.1.0.0/16", "10.2.x.0/16"]
`,
		wantField: "spec.egress[0].toCIDRSet[0].except[1]",
		wantMsg:   "must be an IP address or a CIDR prefix",
	}, {
		name: "bad entity",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toEntities: [wrld]
`,
		wantField: "spec.egress[0].toEntities[0]",
		wantMsg:   `Unsupported value: "wrld"`,
	}, {
		name: "bad protocol",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: HTTP}]
`,
		wantField: "spec.ingress[0].toPorts[0].ports[0].protocol",
		wantMsg:   `Unsupported value: "HTTP"`,
	}, {
		name: "ICMP type above 255",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - icmps:
    - fields: [{type: 256}]
`,
		wantField: "spec.ingress[0].icmps[0].fields[0].type",
		wantMsg:   "ICMP type must be between 0 and 255 or a name",
	}, {
		name: "ICMP family",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - icmps:
    - fields: [{family: IPv5, type: 8}]
`,
		wantField: "spec.egress[0].icmps[0].fields[0].family",
		wantMsg:   `Unsupported value: "IPv5"`,
	}, {
		name: "toPorts and icmps in one rule",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "80"}]}]
    icmps: [{fields: [{type: 8}]}]
`,
		wantField: "spec.ingress[0]",
		wantMsg:   "toPorts and icmps cannot be combined in one rule",
	}, {
		name: "endpointSelector and nodeSelector",
		doc: ctpHead + `spec:
  endpointSelector: {}
  nodeSelector: {}
`,
		wantField: "spec",
		wantMsg:   "endpointSelector and nodeSelector are mutually exclusive",
	}, {
		name: "neither endpointSelector nor nodeSelector",
		doc: ctpHead + `specs:
- endpointSelector: {}
- ingress: [{}]
`,
		wantField: "specs[1]",
		wantMsg:   "a rule needs an endpointSelector",
	}, {
		name: "nodeSelector in a TrafficPolicy",
		doc: tpHead + `specs:
- nodeSelector: {matchLabels: {role: worker}}
`,
		wantField: "<nil>",
		wantMsg:   "nodeSelector is only valid in a ClusterTrafficPolicy",
	}, {
		name:      "missing spec",
		doc:       tpHead,
		wantField: "<nil>",
		wantMsg:   "a TrafficPolicy needs spec or specs",
	}, {
		name:      "missing spec in a ClusterTrafficPolicy",
		doc:       ctpHead,
		wantField: "<nil>",
		wantMsg:   "a ClusterTrafficPolicy needs spec or specs",
	}, {
		name: "toFQDNs with both matchName and matchPattern",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: api.github.com, matchPattern: "*.github.com"}]
`,
		wantField: "spec.egress[0].toFQDNs[0]",
		wantMsg:   "exactly one of matchName and matchPattern",
	}, {
		name: "DNS rule with both matchName and matchPattern",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "53", protocol: UDP}]
      rules:
        dns: [{matchName: a.example, matchPattern: "*.example"}]
`,
		wantField: "spec.egress[0].toPorts[0].rules.dns[0]",
		wantMsg:   "exactly one of matchName and matchPattern",
	}, {
		name: "toFQDNs combined with toEndpoints",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: api.github.com}]
    toEndpoints: [{}]
`,
		wantField: "spec.egress[0]",
		wantMsg:   "toFQDNs cannot be combined with other L3 selectors",
	}, {
		name: "toFQDNs combined with toCIDR",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchPattern: "*.github.com"}]
    toCIDR: [192.0.2.0/24]
`,
		wantField: "spec.egress[0]",
		wantMsg:   "toFQDNs cannot be combined with other L3 selectors",
	}, {
		name: "two L7 protocols in one port rule",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80"}]
      rules:
        http: [{method: GET}]
        kafka: [{topic: t}]
`,
		wantField: "spec.ingress[0].toPorts[0].rules",
		wantMsg:   "only one L7 protocol (http, kafka or dns) per port rule",
	}, {
		name: "Kafka role and apiKey",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "9092"}]
      rules:
        kafka: [{role: produce, apiKey: fetch}]
`,
		wantField: "spec.ingress[0].toPorts[0].rules.kafka[0]",
		wantMsg:   "role and apiKey are mutually exclusive",
	}, {
		name: "Kafka role not produce or consume",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "9092"}]
      rules:
        kafka: [{role: admin}]
`,
		wantField: "spec.ingress[0].toPorts[0].rules.kafka[0].role",
		wantMsg:   `Unsupported value: "admin"`,
	}, {
		name: "Kafka topic too long",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "9092"}]
      rules:
        kafka: [{topic: ` + strings.Repeat("t", 256) + `}]
`,
		wantField: "spec.ingress[0].toPorts[0].rules.kafka[0].topic",
		wantMsg:   "may not be more than 255",
	}, {
		name: "Kafka topic with a bad character",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "9092"}]
      rules:
        kafka: [{topic: "deathstar/plans"}]
`,
		wantField: "spec.ingress[0].toPorts[0].rules.kafka[0].topic",
		wantMsg:   "should match '^[a-zA-Z0-9._-]+$'",
	}, {
		name: "port 70000",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "70000", protocol: TCP}]
`,
		wantField: "spec.ingress[0].toPorts[0].ports[0]",
		wantMsg:   "port must be between 0 and 65535",
	}, {
		name: "bad named port",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "Http_Alt"}]
`,
		wantField: "spec.ingress[0].toPorts[0].ports[0].port",
		wantMsg:   "should match",
	}, {
		name: "endPort below port",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "8080", endPort: 8000, protocol: TCP}]
`,
		wantField: "spec.egress[0].toPorts[0].ports[0]",
		wantMsg:   "endPort must be a number not below port",
	}, {
		name: "endPort with a named port",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: http, endPort: 8000}]
`,
		wantField: "spec.egress[0].toPorts[0].ports[0]",
		wantMsg:   "needs a numeric port",
	}, {
		name: "endPort above 65535",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "8000", endPort: 70000}]
`,
		wantField: "spec.egress[0].toPorts[0].ports[0].endPort",
		wantMsg:   "should be less than or equal to 65535",
	}, {
		name: "DNS rules with a port range",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "53", endPort: 54, protocol: UDP}]
      rules:
        dns: [{matchPattern: "*"}]
`,
		wantField: "spec.egress[0].toPorts[0]",
		wantMsg:   "DNS rules cannot be used with port ranges",
	}, {
		name:      "too many ingress rules",
		doc:       tpHead + "spec:\n  endpointSelector: {}\n  ingress:\n" + strings.Repeat("  - fromEntities: [world]\n", 33),
		wantField: "spec.ingress",
		wantMsg:   "must have at most 32 items",
	}, {
		name: "bad metadata name",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: Bad_Name
spec:
  endpointSelector: {}
`,
		wantField: "metadata.name",
		wantMsg:   "a lowercase RFC 1123 subdomain",
	}, {
		name: "unknown kind",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: NetworkPolicy
metadata:
  name: p
`,
		wantField: "kind",
		wantMsg:   `Unsupported value: "NetworkPolicy"`,
	}, {
		name: "L7 rules on an admin Deny rule",
		doc: atpHead + `spec:
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
    ports: [{port: "80"}]
    rules: {http: [{method: GET}]}
`,
		wantField: "spec.ingress[0]",
		wantMsg:   "L7 rules are only valid with action Allow",
	}, {
		name: "admin L7 rules without ports",
		doc: atpHead + `spec:
  priority: 10
  subject: {namespaces: {}}
  egress:
  - action: Allow
    to: [{entities: [world]}]
    rules: {http: [{method: GET}]}
`,
		wantField: "spec.egress[0]",
		wantMsg:   "L7 rules need ports",
	}, {
		name: "admin subject with both namespaces and pods",
		doc: atpHead + `spec:
  priority: 10
  subject:
    namespaces: {matchLabels: {team: a}}
    pods: {namespaceSelector: {}, podSelector: {}}
`,
		wantField: "spec.subject",
		wantMsg:   "exactly one of namespaces and pods",
	}, {
		name: "admin peer with two kinds",
		doc: atpHead + `spec:
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - action: Allow
    from: [{namespaces: {}, entities: [world]}]
`,
		wantField: "spec.ingress[0].from[0]",
		wantMsg:   "exactly one of namespaces, pods, networks and entities",
	}, {
		name: "Pass in the Baseline tier",
		doc: atpHead + `spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {}}
  egress:
  - action: Pass
    to: [{entities: [world]}]
`,
		wantField: "spec",
		wantMsg:   "action Pass is only valid in the Admin tier",
	}, {
		name: "priority 1001",
		doc: atpHead + `spec:
  priority: 1001
  subject: {namespaces: {}}
`,
		wantField: "spec.priority",
		wantMsg:   "should be less than or equal to 1000",
	}, {
		name: "negative priority",
		doc: atpHead + `spec:
  priority: -1
  subject: {namespaces: {}}
`,
		wantField: "spec.priority",
		wantMsg:   "should be greater than or equal to 0",
	}, {
		name: "missing priority",
		doc: atpHead + `spec:
  subject: {namespaces: {}}
`,
		wantField: "spec.priority",
		wantMsg:   "Required value",
	}, {
		name: "bad admin network",
		doc: atpHead + `spec:
  priority: 1
  subject: {namespaces: {}}
  egress:
  - action: Deny
    to: [{networks: ["300.0.0.0/8"]}]
`,
		wantField: "spec.egress[0].to[0].networks[0]",
		wantMsg:   "must be an IP address or a CIDR prefix",
	}, {
		name: "bad tier",
		doc: atpHead + `spec:
  tier: Namespace
  priority: 1
  subject: {namespaces: {}}
`,
		wantField: "spec.tier",
		wantMsg:   `Unsupported value: "Namespace"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Validate(decode(t, tt.doc))
			if len(errs) == 0 {
				t.Fatalf("Validate() = no errors, want %s: ...%s...", tt.wantField, tt.wantMsg)
			}
			for _, e := range errs {
				if e.Field == tt.wantField && strings.Contains(e.ErrorBody(), tt.wantMsg) {
					t.Logf("got %v", e)
					return
				}
			}
			t.Errorf("Validate() errors:%s\nwant one at %s containing %q", formatErrs(errs), tt.wantField, tt.wantMsg)
		})
	}
}

func TestValidateValid(t *testing.T) {
	starWars, err := os.ReadFile(filepath.Join("testdata", "starwars-l3-l4-l7.yaml"))
	if err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	tests := []struct {
		name string
		doc  string
	}{{
		name: "Star Wars L3/L4/L7 (Cilium docs)",
		doc:  string(starWars),
	}, {
		name: "Kafka roles (Cilium docs)",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: secure-empire-kafka
spec:
  description: "enable empire-hq to produce to empire-announce and deathstar-plans"
  endpointSelector:
    matchLabels:
      app: kafka
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: empire-hq
    toPorts:
    - ports:
      - port: "9092"
        protocol: TCP
      rules:
        kafka:
        - role: "produce"
          topic: "deathstar-plans"
        - role: "produce"
          topic: "empire-announce"
  - fromEndpoints:
    - matchLabels:
        app: empire-outpost
    toPorts:
    - ports:
      - port: "9092"
        protocol: TCP
      rules:
        kafka:
        - role: "consume"
          topic: "empire-announce"
        - apiKey: "apiversions"
        - apiKey: "metadata"
          apiVersion: "12"
          clientID: outpost-1
`,
	}, {
		name: "DNS matchPattern and toFQDNs (Cilium docs)",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: fqdn
spec:
  endpointSelector:
    matchLabels:
      org: alliance
      class: mediabot
  egress:
  - toEndpoints:
    - matchLabels:
        "k8s:io.kubernetes.pod.namespace": kube-system
        "k8s:k8s-app": kube-dns
    toPorts:
    - ports:
      - port: "53"
        protocol: ANY
      rules:
        dns:
        - matchPattern: "*"
  - toFQDNs:
    - matchName: "api.github.com"
    - matchPattern: "*.githubusercontent.com"
    - matchPattern: "**.example.com"
    toPorts:
    - ports:
      - port: "443"
        protocol: TCP
`,
	}, {
		name: "AdminTrafficPolicy with Pass",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: AdminTrafficPolicy
metadata:
  name: delegate-tenants
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces:
      matchLabels:
        tenant: "true"
  ingress:
  - name: monitoring
    action: Allow
    from:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: monitoring
    ports:
    - port: "9090"
      protocol: TCP
    rules:
      http:
      - method: GET
        path: /metrics
  - name: same-tenant-decides
    action: Pass
    from:
    - pods:
        namespaceSelector: {}
        podSelector: {}
  egress:
  - name: no-metadata-service
    action: Deny
    to:
    - networks: ["169.254.169.254/32"]
  - action: Pass
    to:
    - entities: [world, kube-apiserver]
`,
	}, {
		name: "Baseline AdminTrafficPolicy, tier defaulted away",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: AdminTrafficPolicy
metadata:
  name: baseline
spec:
  tier: Baseline
  priority: 1000
  subject:
    pods:
      namespaceSelector: {}
      podSelector: {matchLabels: {app: db}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
`,
	}, {
		name: "host policy with nodeSelector, deny rules, ICMP, CIDR sets",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: ClusterTrafficPolicy
metadata:
  name: host-fw
specs:
- description: host firewall
  nodeSelector:
    matchLabels:
      node-role.kubernetes.io/worker: ""
  ingress:
  - fromEntities: [cluster, health]
  - fromCIDRSet:
    - cidr: 10.0.0.0/8
      except: [10.96.0.0/12, "10.1.2.3"]
    toPorts:
    - ports:
      - port: "22"
        protocol: TCP
      - port: "30000"
        endPort: 32767
        protocol: TCP
  - icmps:
    - fields:
      - type: 8
      - type: EchoRequest
        family: IPv6
  ingressDeny:
  - fromCIDR: ["192.0.2.1", "2001:db8::/32"]
    toPorts:
    - ports: [{port: "0", protocol: ANY}]
  enableDefaultDeny:
    ingress: true
    egress: false
- endpointSelector: {}
  egressDeny:
  - toEntities: [world]
    icmps: [{fields: [{type: 0}]}]
`,
	}, {
		name: "TrafficPolicy without namespace, services, TLS, header matches",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: svc
  labels: {team: web}
spec:
  endpointSelector:
    matchExpressions:
    - {key: app, operator: In, values: [web, api]}
  labels:
  - key: owner
    value: web
    source: k8s
  egress:
  - toServices:
    - k8sService: {serviceName: backend, namespace: api}
    - k8sServiceSelector:
        selector: {matchLabels: {tier: db}}
    toPorts:
    - ports: [{port: http, protocol: TCP}]
      serverNames: ["api.example.com", "*.example.org", "**.example.net"]
      terminatingTLS:
        secret: {name: web-tls, namespace: portcullis-secrets}
        certificate: tls.crt
        privateKey: tls.key
      originatingTLS:
        secret: {name: ca}
        trustedCA: ca.crt
      rules:
        http:
        - method: "GET|HEAD"
          path: "/api/v[0-9]+/.*"
          host: "api\\.example\\.com"
          headers: ["X-Request-Id"]
          headerMatches:
          - name: Authorization
            mismatch: LOG
            secret: {name: token}
  ingress:
  - {}
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := Validate(decode(t, tt.doc)); len(errs) > 0 {
				t.Errorf("Validate() errors:%s\nwant none", formatErrs(errs))
			}
		})
	}
}

// TestAdmitDefaultsAndPrunes checks that Admit returns the object as the
// apiserver would store it.
func TestAdmitDefaultsAndPrunes(t *testing.T) {
	u := decode(t, atpHead+`spec:
  priority: 5
  subject: {namespaces: {}}
  extra: true
status:
  observedGeneration: 3
`)
	before := u.DeepCopy()
	got, errs := Admit(u.Object)
	if len(errs) != 1 || errs[0].Origin != OriginUnknownField {
		t.Errorf("Admit() errors:%s\nwant exactly the unknown field spec.extra", formatErrs(errs))
	}
	if tier, _, _ := unstructured.NestedString(got.Object, "spec", "tier"); tier != string(v1alpha1.TierAdmin) {
		t.Errorf("spec.tier = %q, want the default %q", tier, v1alpha1.TierAdmin)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "extra"); found {
		t.Errorf("spec.extra survived pruning")
	}
	if _, found := got.Object["status"]; found {
		t.Errorf("status survived create")
	}
	if prio, _, err := unstructured.NestedInt64(got.Object, "spec", "priority"); err != nil || prio != 5 {
		t.Errorf("spec.priority = %v (%v), want int64 5", prio, err)
	}
	if !equalJSON(t, before.Object, u.Object) {
		t.Errorf("Admit modified its input")
	}
}

func TestDefault(t *testing.T) {
	u := decode(t, atpHead+"spec:\n  priority: 5\n  subject: {namespaces: {}}\n")
	if err := Default(u); err != nil {
		t.Fatalf("Default() = %v", err)
	}
	if tier, _, _ := unstructured.NestedString(u.Object, "spec", "tier"); tier != "Admin" {
		t.Errorf("after Default, spec.tier = %q, want Admin", tier)
	}
	bad := decode(t, "apiVersion: v1\nkind: ConfigMap\n")
	if err := Default(bad); err == nil {
		t.Errorf("Default(ConfigMap) = nil, want an error")
	}
}

func TestKinds(t *testing.T) {
	kinds, err := Kinds()
	if err != nil {
		t.Fatalf("Kinds() = %v", err)
	}
	var got []string
	for _, k := range kinds {
		got = append(got, k.String())
	}
	want := []string{
		"policy.portcullis.dev/v1alpha1, Kind=AdminTrafficPolicy",
		"policy.portcullis.dev/v1alpha1, Kind=ClusterTrafficPolicy",
		"policy.portcullis.dev/v1alpha1, Kind=TrafficPolicy",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Kinds() = %q, want %q", got, want)
	}
}

func equalJSON(t *testing.T, a, b map[string]any) bool {
	t.Helper()
	ja, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// TestExamples validates every policy.portcullis.dev/v1alpha1 document
// under the repository's examples/ directory; documents of other API
// groups (Deployments, Services, ...) are skipped.
func TestExamples(t *testing.T) {
	root := filepath.Join("..", "..", "..", "examples")
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("no %s directory", root)
	}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s: reading document %d: %v", path, i, err)
				break
			}
			m := map[string]any{}
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Errorf("%s: document %d: %v", path, i, err)
				continue
			}
			if m["apiVersion"] != v1alpha1.GroupVersion.String() {
				continue
			}
			checked++
			if errs := ValidateMap(m); len(errs) > 0 {
				t.Errorf("%s: document %d (%v %v): errors:%s", path, i, m["kind"], nameOf(m), formatErrs(errs))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	t.Logf("validated %d policy documents under %s", checked, root)
}

func nameOf(m map[string]any) any {
	if md, ok := m["metadata"].(map[string]any); ok {
		return md["name"]
	}
	return nil
}
