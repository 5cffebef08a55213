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
	"portcullis.dev/portcullis/apis/policy/validation/invalidcases"
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

const atpHead = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: AdminTrafficPolicy\nmetadata:\n  name: p\n"

// TestValidateInvalid checks every fixture in testdata/invalid (shared
// with e2e/packaging, which sends them to a real kube-apiserver) plus the
// in-process-only cases below.
func TestValidateInvalid(t *testing.T) {
	fixtures, err := invalidcases.Load(filepath.Join("testdata", "invalid"))
	if err != nil {
		t.Fatalf("loading fixtures: %v", err)
	}
	type invalidCase struct {
		name      string
		doc       string
		wantField string
		wantMsg   string
	}
	var tests []invalidCase
	for _, c := range fixtures {
		tests = append(tests, invalidCase{c.Name, string(c.Doc), c.Field, c.Message})
	}
	// Cases the apiserver test cannot express: the client refuses both
	// before a request is sent (no REST mapping for an unknown kind; a
	// namespaced object without a namespace), so they stay here. The
	// fixture 32-bad-metadata-name covers a bad name with a namespace on
	// both sides.
	tests = append(tests, invalidCase{
		name: "bad metadata name without a namespace",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: Bad_Name
spec:
  endpointSelector: {}
`,
		wantField: "metadata.name",
		wantMsg:   "a lowercase RFC 1123 subdomain",
	}, invalidCase{
		name: "unknown kind",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: NetworkPolicy
metadata:
  name: p
`,
		wantField: "kind",
		wantMsg:   `Unsupported value: "NetworkPolicy"`,
	})
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
		name: "headerMatches regex (a Portcullis extension)",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: token
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80"}]
      rules:
        http:
        - headerMatches:
          - {name: X-Token, regex: "[0-9]+"}
          - {name: X-Trace, regex: "[a-f0-9]{32}", mismatch: DELETE}
`,
	}, {
		// Cilium 1.18 pkg/policy/rule_test.go TestIPProtocolsWithNoTransportPorts:
		// VRRP and IGMP without a port, and port "0" (rule_validation.go
		// accepts "empty or 0").
		name: "VRRP and IGMP without ports (Cilium 1.18)",
		doc: `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: vrrp
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{protocol: VRRP}, {protocol: IGMP}]
  egress:
  - toPorts:
    - ports: [{protocol: VRRP, port: "0"}]
  egressDeny:
  - toPorts:
    - ports: [{protocol: IGMP}]
`,
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
