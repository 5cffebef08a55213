package packaging

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const (
	tpHead  = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: TrafficPolicy\nmetadata:\n  name: p\n  namespace: default\n"
	ctpHead = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: ClusterTrafficPolicy\nmetadata:\n  name: p\n"
	atpHead = "apiVersion: policy.portcullis.dev/v1alpha1\nkind: AdminTrafficPolicy\nmetadata:\n  name: p\n"
)

// dryRunCreate creates obj with a server-side dry run and strict field
// validation (unknown and duplicate fields are errors, as with kubectl).
func dryRunCreate(ctx context.Context, obj *unstructured.Unstructured) error {
	return k8s.Create(ctx, obj, client.DryRunAll, client.FieldValidation("Strict"))
}

func decodeDoc(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("parsing test YAML: %v", err)
	}
	return &unstructured.Unstructured{Object: m}
}

// TestInvalidPoliciesRejected sends invalid policies to the real apiserver
// and checks each is refused with the field and message a user needs. The
// same cases run in-process in apis/policy/validation; here they prove the
// installed CRDs (OpenAPI schema, CEL rules, pruning) do it in a cluster.
func TestInvalidPoliciesRejected(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		// want are substrings of the apiserver's error: the field path and
		// the message.
		want []string
	}{{
		name: "unknown field",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - fromEndpointz: [{}]
`,
		want: []string{`unknown field "spec.ingress[0].fromEndpointz"`},
	}, {
		name: "L7 rules in a deny rule",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingressDeny:
  - fromEntities: [world]
    toPorts:
    - ports: [{port: "80"}]
      rules: {http: [{method: GET}]}
`,
		want: []string{`unknown field "spec.ingressDeny[0].toPorts[0].rules"`},
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
		want: []string{"spec.ingress[0].toPorts[0].rules", "only one L7 protocol (http, kafka or dns) per port rule"},
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
		want: []string{"spec.ingress[0].toPorts[0].rules.kafka[0]", "role and apiKey are mutually exclusive"},
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
		want: []string{"spec.ingress[0].toPorts[0].rules.kafka[0].topic", "should match '^[a-zA-Z0-9._-]+$'"},
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
		want: []string{"spec.ingress[0].toPorts[0].rules.kafka[0].topic", "may not be more than 255"},
	}, {
		name: "port 70000",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "70000", protocol: TCP}]
`,
		want: []string{"spec.ingress[0].toPorts[0].ports[0]", "port must be between 0 and 65535"},
	}, {
		name: "endPort below port",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "8080", endPort: 8000, protocol: TCP}]
`,
		want: []string{"spec.egress[0].toPorts[0].ports[0]", "endPort must be a number not below port"},
	}, {
		name: "endPort above 65535",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "8000", endPort: 70000}]
`,
		want: []string{"spec.egress[0].toPorts[0].ports[0].endPort", "should be less than or equal to 65535"},
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
		want: []string{"spec.egress[0].toPorts[0]", "DNS rules cannot be used with port ranges"},
	}, {
		name: "toFQDNs with toEndpoints",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: api.github.com}]
    toEndpoints: [{}]
`,
		want: []string{"spec.egress[0]", "toFQDNs cannot be combined with other L3 selectors"},
	}, {
		name: "toFQDNs with matchName and matchPattern",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: api.github.com, matchPattern: "*.github.com"}]
`,
		want: []string{"spec.egress[0].toFQDNs[0]", "exactly one of matchName and matchPattern"},
	}, {
		name: "bad CIDR",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - fromCIDR: ["10.0.0.0/33"]
`,
		want: []string{"spec.ingress[0].fromCIDR[0]", "must be an IP address or a CIDR prefix"},
	}, {
		name: "bad entity",
		doc: tpHead + `spec:
  endpointSelector: {}
  egress:
  - toEntities: [wrld]
`,
		want: []string{"spec.egress[0].toEntities[0]", `Unsupported value: "wrld"`},
	}, {
		name: "bad protocol",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: HTTP}]
`,
		want: []string{"spec.ingress[0].toPorts[0].ports[0].protocol", `Unsupported value: "HTTP"`},
	}, {
		name: "toPorts and icmps in one rule",
		doc: tpHead + `spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "80"}]}]
    icmps: [{fields: [{type: 8}]}]
`,
		want: []string{"spec.ingress[0]", "toPorts and icmps cannot be combined in one rule"},
	}, {
		name: "nodeSelector in a TrafficPolicy",
		doc: tpHead + `specs:
- nodeSelector: {matchLabels: {role: worker}}
`,
		want: []string{"nodeSelector is only valid in a ClusterTrafficPolicy"},
	}, {
		name: "TrafficPolicy without spec or specs",
		doc:  tpHead,
		want: []string{"a TrafficPolicy needs spec or specs"},
	}, {
		name: "endpointSelector and nodeSelector",
		doc: ctpHead + `spec:
  endpointSelector: {}
  nodeSelector: {}
`,
		want: []string{"spec", "endpointSelector and nodeSelector are mutually exclusive"},
	}, {
		name: "too many ingress rules",
		doc:  tpHead + "spec:\n  endpointSelector: {}\n  ingress:\n" + strings.Repeat("  - fromEntities: [world]\n", 33),
		want: []string{"spec.ingress", "must have at most 32 items"},
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
		want: []string{"spec", "action Pass is only valid in the Admin tier"},
	}, {
		name: "priority 1001",
		doc: atpHead + `spec:
  priority: 1001
  subject: {namespaces: {}}
`,
		want: []string{"spec.priority", "should be less than or equal to 1000"},
	}, {
		name: "missing priority",
		doc: atpHead + `spec:
  subject: {namespaces: {}}
`,
		want: []string{"spec.priority", "Required value"},
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
		want: []string{"spec.ingress[0]", "L7 rules are only valid with action Allow"},
	}, {
		name: "admin subject with namespaces and pods",
		doc: atpHead + `spec:
  priority: 10
  subject:
    namespaces: {matchLabels: {team: a}}
    pods: {namespaceSelector: {}, podSelector: {}}
`,
		want: []string{"spec.subject", "exactly one of namespaces and pods"},
	}, {
		name: "bad tier",
		doc: atpHead + `spec:
  tier: Namespace
  priority: 1
  subject: {namespaces: {}}
`,
		want: []string{"spec.tier", `Unsupported value: "Namespace"`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := dryRunCreate(ctx, decodeDoc(t, tt.doc))
			if err == nil {
				t.Fatalf("the apiserver accepted it, want an error containing %q", tt.want)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Errorf("error is %v (reason %s), want Invalid or BadRequest", err, apierrors.ReasonForError(err))
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestExamplesAccepted applies every document under examples/ except
// examples/cilium (Cilium's own kinds, converted by `portcullis policy
// convert`): Namespaces for real, then each policy with a server-side dry
// run and strict field validation.
func TestExamplesAccepted(t *testing.T) {
	type example struct {
		file string // relative to the repository root
		obj  *unstructured.Unstructured
	}
	var namespaces []*unstructured.Unstructured
	var policies []example
	root := filepath.Join(repoRoot, "examples")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "cilium" {
			return fs.SkipDir
		}
		if d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		for _, o := range parseObjects(t, data) {
			switch {
			case o.GetKind() == "Namespace":
				namespaces = append(namespaces, o)
			case o.GroupVersionKind().Group == "policy.portcullis.dev":
				policies = append(policies, example{rel, o})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading examples: %v", err)
	}
	// Fewer would mean the walk lost files, not that the examples are fine.
	if len(policies) < 5 {
		t.Fatalf("found %d policies under examples/, want at least 5", len(policies))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, ns := range namespaces {
		if err := k8s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s: %v", key(ns), err)
		}
	}
	for _, p := range policies {
		t.Run(p.file+"/"+p.obj.GetKind()+"/"+p.obj.GetName(), func(t *testing.T) {
			if err := dryRunCreate(ctx, p.obj); err != nil {
				t.Errorf("%s: %v", p.file, err)
			}
		})
	}
}
