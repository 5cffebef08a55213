package loader

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sources(r *Result) []string {
	var out []string
	for _, d := range r.Documents {
		out = append(out, d.Source.String())
	}
	return out
}

func warnings(r *Result) []string {
	var out []string
	for _, w := range r.Warnings {
		out = append(out, w.String())
	}
	return out
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestLoadGood(t *testing.T) {
	tests := []struct {
		name         string
		paths        []string
		wantDocs     []string
		wantWarnings []string
	}{{
		name:  "multi-document YAML with comments and empty documents",
		paths: []string{"testdata/good/multi.yaml"},
		wantDocs: []string{
			"testdata/good/multi.yaml: document 1 (Namespace shop)",
			"testdata/good/multi.yaml: document 2 (TrafficPolicy default/web-from-lb)",
			"testdata/good/multi.yaml: document 3 (ClusterTrafficPolicy host-ssh)",
			"testdata/good/multi.yaml: document 4 (AdminTrafficPolicy deny-world)",
		},
	}, {
		name:  "JSON stream",
		paths: []string{"testdata/good/policies.json"},
		wantDocs: []string{
			"testdata/good/policies.json: document 1 (TrafficPolicy shop/json-one)",
			"testdata/good/policies.json: document 2 (Namespace json-ns)",
		},
	}, {
		name:     "List with a skipped item",
		paths:    []string{"testdata/good/list.yaml"},
		wantDocs: []string{"testdata/good/list.yaml: document 1, item 1 (TrafficPolicy shop/listed)"},
		wantWarnings: []string{
			"testdata/good/list.yaml: document 1, item 2 (Pod shop/skipped): skipped: Pod does not affect policy verdicts",
		},
	}, {
		name:  "directory recursion: sorted, extensions, hidden directories",
		paths: []string{"testdata/good/dir"},
		wantDocs: []string{
			"testdata/good/dir/a.yaml: document 1 (TrafficPolicy default/a)",
			"testdata/good/dir/sub/b.yml: document 1 (TrafficPolicy default/b)",
			"testdata/good/dir/sub/c.json: document 1 (TrafficPolicy default/c)",
		},
		wantWarnings: []string{
			"testdata/good/dir/sub/deploy.yaml: document 1 (Deployment a): skipped: Deployment does not affect policy verdicts",
		},
	}, {
		name:  "Cilium kinds keep their kind in the source",
		paths: []string{"testdata/cilium"},
		wantDocs: []string{
			"testdata/cilium/ccnp.yaml: document 1 (CiliumClusterwideNetworkPolicy allow-dns)",
			"testdata/cilium/cnp.yaml: document 1 (CiliumNetworkPolicy shop/l7-visibility)",
		},
	}, {
		name:     "the same file twice: identical duplicates are a warning",
		paths:    []string{"testdata/good/dir/a.yaml", "testdata/good/dir/a.yaml"},
		wantDocs: []string{"testdata/good/dir/a.yaml: document 1 (TrafficPolicy default/a)"},
		wantWarnings: []string{
			"testdata/good/dir/a.yaml: document 1 (TrafficPolicy default/a): identical to testdata/good/dir/a.yaml: document 1 (TrafficPolicy default/a); ignored",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Load(tt.paths...)
			if err != nil {
				t.Fatalf("Load(%q): %v", tt.paths, err)
			}
			diffLines(t, "documents", sources(r), tt.wantDocs)
			diffLines(t, "warnings", warnings(r), tt.wantWarnings)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name   string
		paths  []string
		want   []string
		wantIs error
	}{{
		name:   "unknown fields, all of them, with hints",
		paths:  []string{"testdata/bad/unknown-field.yaml"},
		wantIs: ErrUnknownField,
		want: []string{
			`testdata/bad/unknown-field.yaml: document 2 (TrafficPolicy shop/typo): spec.extra: unknown field`,
			`testdata/bad/unknown-field.yaml: document 2 (TrafficPolicy shop/typo): spec.ingress[0].fromEndpointz: unknown field (did you mean "fromEndpoints"?)`,
			`testdata/bad/unknown-field.yaml: document 2 (TrafficPolicy shop/typo): spec.ingress[0].toPorts[0].ports[0].protcol: unknown field (did you mean "protocol"?)`,
		},
	}, {
		name:   "wrong types",
		paths:  []string{"testdata/bad/wrong-type.yaml"},
		wantIs: ErrWrongType,
		want: []string{
			`testdata/bad/wrong-type.yaml: document 1 (TrafficPolicy default/numbers): spec.enableDefaultDeny.ingress: wrong type: got string "yes", want boolean`,
			`testdata/bad/wrong-type.yaml: document 1 (TrafficPolicy default/numbers): spec.ingress[0].toPorts[0].ports[0].endPort: wrong type: got string "5433", want integer`,
			`testdata/bad/wrong-type.yaml: document 1 (TrafficPolicy default/numbers): spec.ingress[0].toPorts[0].ports[0].port: wrong type: got number 5432, want string`,
			`testdata/bad/wrong-type.yaml: document 2 (AdminTrafficPolicy prio): metadata.labels: wrong type: got list, want object`,
			`testdata/bad/wrong-type.yaml: document 2 (AdminTrafficPolicy prio): spec.ingress: wrong type: got object, want list`,
			`testdata/bad/wrong-type.yaml: document 2 (AdminTrafficPolicy prio): spec.priority: wrong type: got number 1.5, want integer`,
		},
	}, {
		name:   "unknown kinds, unknown versions, missing apiVersion, not an object",
		paths:  []string{"testdata/bad/unknown-kind.yaml"},
		wantIs: ErrUnknownKind,
		want: []string{
			`testdata/bad/unknown-kind.yaml: document 1 (NetworkPolicy np): unknown kind "NetworkPolicy" (apiVersion "networking.k8s.io/v1"): the loader reads TrafficPolicy, ClusterTrafficPolicy and AdminTrafficPolicy (policy.portcullis.dev/v1alpha1), CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2) and Namespace (v1)`,
			`testdata/bad/unknown-kind.yaml: document 2 (TrafficPolicy future): unknown kind "TrafficPolicy": apiVersion "policy.portcullis.dev/v1beta1" is not known; use "policy.portcullis.dev/v1alpha1"`,
			`testdata/bad/unknown-kind.yaml: document 3 (TrafficPolicy no-version): apiVersion: Required value: every document needs an apiVersion`,
			`testdata/bad/unknown-kind.yaml: document 4: document is not an object: got list`,
		},
	}, {
		name:   "Cilium fields Portcullis does not implement",
		paths:  []string{"testdata/bad/unsupported.yaml"},
		wantIs: ErrUnsupportedField,
		want: []string{
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.egress[0].toGroups: not supported by Portcullis: cloud provider groups (toGroups) are not implemented`,
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.egress[1].toCIDRSet[0].cidrGroupRef: not supported by Portcullis: CiliumCIDRGroup references are not implemented; list the prefixes`,
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.egress[2].toPorts[0].listener: not supported by Portcullis: Envoy listeners are not implemented`,
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.egress[2].toPorts[0].rules.l7: not supported by Portcullis: generic L7 rules (l7) are not implemented; only http, kafka and dns`,
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.egress[2].toPorts[0].rules.l7proto: not supported by Portcullis: generic L7 parsers (l7proto) are not implemented; only http, kafka and dns`,
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.ingress[0].authentication: not supported by Portcullis: mutual authentication is not implemented`,
			`testdata/bad/unsupported.yaml: document 1 (CiliumNetworkPolicy shop/cilium-only): spec.ingress[0].fromRequires: not supported by Portcullis: requirements on peer labels (fromRequires) are deprecated in Cilium and not implemented`,
			`testdata/bad/unsupported.yaml: document 2 (CiliumClusterwideNetworkPolicy nodes): specs[0].egress[0].toNodes: not supported by Portcullis: node peers (toNodes) are not implemented; use toEntities host/remote-node`,
		},
	}, {
		name:   "the kube-dns entity, which Cilium does not have",
		paths:  []string{"testdata/bad/kube-dns.yaml"},
		wantIs: ErrUnsupportedField,
		want: []string{
			`testdata/bad/kube-dns.yaml: document 1 (CiliumNetworkPolicy kube-system/hubble-relay): spec.egress[1].toEntities[0]: not supported by Portcullis: kube-dns is not a Cilium entity (Cilium 1.18 has none by that name); select the DNS pods instead: toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]`,
			`testdata/bad/kube-dns.yaml: document 2 (TrafficPolicy kube-system/dns): spec.ingress[0].fromEntities[1]: not supported by Portcullis: kube-dns is not a Cilium entity (Cilium 1.18 has none by that name); select the DNS pods instead: toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]`,
		},
	}, {
		name:   "a Portcullis extension in a Cilium policy",
		paths:  []string{"testdata/bad/cilium-header-regex.yaml"},
		wantIs: ErrUnknownField,
		want: []string{
			`testdata/bad/cilium-header-regex.yaml: document 1 (CiliumNetworkPolicy shop/token): spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].regex: unknown field: Cilium's headerMatches have no regex (it is a Portcullis extension); write the policy as a TrafficPolicy to use it`,
		},
	}, {
		name:   "YAML syntax errors with file line numbers, and later documents still checked",
		paths:  []string{"testdata/bad/syntax.yaml"},
		wantIs: ErrSyntax,
		want: []string{
			`testdata/bad/syntax.yaml: document 2: line 10: syntax error: mapping values are not allowed in this context`,
			`testdata/bad/syntax.yaml: document 3: line 16: syntax error: key "name" already set in map`,
			`testdata/bad/syntax.yaml: document 4 (Namespace Not_A_Label): metadata.name: Invalid value: "Not_A_Label": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
		},
	}, {
		name:   "JSON syntax error with line number",
		paths:  []string{"testdata/bad/syntax.json"},
		wantIs: ErrSyntax,
		want: []string{
			`testdata/bad/syntax.json: document 2: line 4: syntax error: invalid character '}' looking for beginning of object key string`,
		},
	}, {
		name:   "different duplicates are an error",
		paths:  []string{"testdata/bad/duplicate.yaml"},
		wantIs: ErrDuplicate,
		want: []string{
			`testdata/bad/duplicate.yaml: document 3 (Namespace twice): duplicate object: Namespace twice is also defined, differently, at testdata/bad/duplicate.yaml: document 1 (Namespace twice)`,
		},
	}, {
		name:   "missing file",
		paths:  []string{"testdata/nope.yaml"},
		wantIs: os.ErrNotExist,
		want:   []string{`testdata/nope.yaml: stat testdata/nope.yaml: no such file or directory`},
	}, {
		name:   "errors from every file together; good files do not count",
		paths:  []string{"testdata/good/dir/a.yaml", "testdata/bad/syntax.json", "testdata/bad/duplicate.yaml"},
		wantIs: ErrDuplicate,
		want: []string{
			`testdata/bad/syntax.json: document 2: line 4: syntax error: invalid character '}' looking for beginning of object key string`,
			`testdata/bad/duplicate.yaml: document 3 (Namespace twice): duplicate object: Namespace twice is also defined, differently, at testdata/bad/duplicate.yaml: document 1 (Namespace twice)`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Load(tt.paths...)
			if err == nil {
				t.Fatalf("Load(%q) = %v, want errors", tt.paths, sources(r))
			}
			if r != nil {
				t.Errorf("Load(%q) returned a result with the errors; want nil", tt.paths)
			}
			diffLines(t, "errors", errLines(err), tt.want)
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(err, %v) = false, want true", tt.wantIs)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != len(tt.want) {
				t.Errorf("errors.As(err, *Errors) gave %d errors, want %d", len(es), len(tt.want))
			}
		})
	}
}

func TestNamespaceDefaultingAndClusterScope(t *testing.T) {
	in := `apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: tp}
spec: {endpointSelector: {}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cnp}
spec: {endpointSelector: {}}
---
apiVersion: policy.portcullis.dev/v1alpha1
kind: ClusterTrafficPolicy
metadata: {name: ctp, namespace: shop}
spec: {endpointSelector: {}}
`
	var l Loader
	r, err := l.LoadBytes("in.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	tps := r.TrafficPolicies()
	if len(tps) != 2 || tps[0].Namespace != "default" || tps[1].Namespace != "default" {
		t.Errorf("TrafficPolicies() = %+v, want two in namespace default", tps)
	}
	ctps := r.ClusterTrafficPolicies()
	if len(ctps) != 1 || ctps[0].Namespace != "" {
		t.Errorf("ClusterTrafficPolicies() = %+v, want one without namespace", ctps)
	}
	diffLines(t, "warnings", warnings(r), []string{
		"in.yaml: document 3 (ClusterTrafficPolicy ctp): metadata.namespace ignored: ClusterTrafficPolicy is cluster-scoped",
	})
}

func TestValidateHook(t *testing.T) {
	in := `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpointz: []
    toPorts:
    - ports:
      - port: "70000"
`
	var seen []string
	l := Loader{Validate: func(u *unstructured.Unstructured) field.ErrorList {
		seen = append(seen, u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName())
		u.SetName("mutated") // must not leak into the result
		p := field.NewPath("spec", "ingress").Index(0)
		return field.ErrorList{
			field.Invalid(p.Child("toPorts").Index(0).Child("ports").Index(0).Child("port"), "70000", "port must be between 0 and 65535"),
			// The loader reports this one too; only its report is kept.
			field.Invalid(p.Child("fromEndpointz"), nil, "unknown field"),
			// About the whole object.
			field.Invalid(nil, nil, "some rules were not checked"),
		}
	}}
	_, err := l.LoadBytes("examples/bad.yaml", []byte(in))
	diffLines(t, "errors", errLines(err), []string{
		`examples/bad.yaml: document 2 (CiliumNetworkPolicy default/rule1): spec.ingress[0].fromEndpointz: unknown field (did you mean "fromEndpoints"?)`,
		`examples/bad.yaml: document 2 (CiliumNetworkPolicy default/rule1): spec.ingress[0].toPorts[0].ports[0].port: Invalid value: "70000": port must be between 0 and 65535`,
		`examples/bad.yaml: document 2 (CiliumNetworkPolicy default/rule1): Invalid value: null: some rules were not checked`,
	})
	diffLines(t, "hook calls", seen, []string{"TrafficPolicy default/rule1"})
	var fe *field.Error
	if !errors.As(err, &fe) || fe.Type != field.ErrorTypeInvalid {
		t.Errorf("errors.As(err, *field.Error) = %v, want the hook's Invalid error", fe)
	}
}

func TestStdin(t *testing.T) {
	l := Loader{Stdin: strings.NewReader(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"from-stdin","labels":{"a":"b"}}}`)}
	r, err := l.Load("-")
	if err != nil {
		t.Fatal(err)
	}
	diffLines(t, "documents", sources(r), []string{"<stdin>: document 1 (Namespace from-stdin)"})
	got := r.NamespaceLabels()
	want := map[string]map[string]string{"from-stdin": {"a": "b", corev1.LabelMetadataName: "from-stdin"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NamespaceLabels() = %v, want %v", got, want)
	}
}

func TestCiliumConversion(t *testing.T) {
	r, err := Load("testdata/cilium/cnp.yaml", "testdata/cilium/ccnp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tps := r.TrafficPolicies()
	if len(tps) != 1 {
		t.Fatalf("got %d TrafficPolicies, want 1", len(tps))
	}
	tp := tps[0]
	if tp.APIVersion != v1alpha1.GroupVersion.String() || tp.Kind != "TrafficPolicy" {
		t.Errorf("converted type = %s %s, want %s TrafficPolicy", tp.APIVersion, tp.Kind, v1alpha1.GroupVersion)
	}
	if len(tp.Specs) != 2 || tp.Spec != nil {
		t.Fatalf("converted specs = %d (spec %v), want 2 specs and no spec", len(tp.Specs), tp.Spec)
	}
	if got := tp.Specs[0].Ingress[0].ToPorts[0].Rules.HTTP[0].HeaderMatches[0].Mismatch; got != v1alpha1.MismatchLog {
		t.Errorf("headerMatches[0].mismatch = %q, want LOG", got)
	}
	if got := tp.Specs[0].Ingress[0].FromEndpoints[0].MatchLabels["listener"]; got != "yes" {
		t.Errorf("label listener = %q, want yes (label keys are not Cilium fields)", got)
	}
	if got := tp.Specs[1].EnableDefaultDeny; got == nil || got.Egress == nil || *got.Egress {
		t.Errorf("enableDefaultDeny = %+v, want egress false", got)
	}
	ctps := r.ClusterTrafficPolicies()
	if len(ctps) != 1 || ctps[0].Spec == nil || ctps[0].Spec.Egress[1].ToPorts[0].Ports[0].EndPort != 6444 {
		t.Fatalf("ClusterTrafficPolicies() = %+v, want allow-dns with endPort 6444", ctps)
	}

	var buf bytes.Buffer
	if err := Convert(&buf, r); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/golden/cilium-converted.yaml"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got := buf.String(); got != string(want) {
		t.Errorf("Convert output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	for _, noise := range []string{"status:", "creationTimestamp", "cilium.io"} {
		if strings.Contains(buf.String(), noise) {
			t.Errorf("Convert output contains %q", noise)
		}
	}

	// Round trip: the converted YAML loads back to the same objects.
	back, err := new(Loader).LoadBytes("converted.yaml", buf.Bytes())
	if err != nil {
		t.Fatalf("loading converted output: %v", err)
	}
	if !reflect.DeepEqual(back.Objects(), r.Objects()) {
		t.Errorf("round trip changed the objects:\ngot  %+v\nwant %+v", back.Objects(), r.Objects())
	}
	for _, d := range back.Documents {
		if k := d.Source.Kind; k != "TrafficPolicy" && k != "ClusterTrafficPolicy" {
			t.Errorf("converted document %s has kind %s", d.Source, k)
		}
	}
}

func TestConvertKeepsOwnKinds(t *testing.T) {
	r, err := Load("testdata/good/multi.yaml", "testdata/good/list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Convert(&buf, r); err != nil {
		t.Fatal(err)
	}
	multi, err := os.ReadFile("testdata/good/multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Our kinds keep their text, comments included.
	for _, s := range []string{"  - fromEntities:\n    - world\n", "          # only the API\n", "    - entities: [world]\n"} {
		if !bytes.Contains(multi, []byte(s)) || !strings.Contains(buf.String(), s) {
			t.Errorf("Convert output lacks %q from the input", s)
		}
	}
	back, err := new(Loader).LoadBytes("converted.yaml", buf.Bytes())
	if err != nil {
		t.Fatalf("loading converted output: %v", err)
	}
	if !reflect.DeepEqual(back.Objects(), r.Objects()) {
		t.Errorf("round trip changed the objects")
	}
	if got, want := len(back.Skipped), 1; got != want {
		t.Errorf("skipped after round trip = %d, want %d (the Pod is passed through)", got, want)
	}
}

func TestExamples(t *testing.T) {
	const root = "../../examples"
	dirs, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		p := filepath.Join(root, d.Name())
		if d.Name() == "cilium" {
			// Cilium's guides reuse names (rule1, fqdn): one file at a time.
			files, err := filepath.Glob(filepath.Join(p, "*.yaml"))
			if err != nil || len(files) == 0 {
				t.Fatalf("no Cilium examples in %s: %v", p, err)
			}
			for _, f := range files {
				if _, err := Load(f); err != nil {
					t.Errorf("Load(%s): %v", f, err)
				}
			}
			continue
		}
		r, err := Load(p)
		if err != nil {
			t.Errorf("Load(%s): %v", p, err)
			continue
		}
		if len(r.Documents) == 0 {
			t.Errorf("Load(%s): no documents", p)
		}
		// starwars-l3l4 is the first step of the starwars scenario: the
		// same rule1 before its L7 part, applied instead of it.
		if d.Name() != "starwars-l3l4" {
			ours = append(ours, p)
		}
	}
	if _, err := Load(ours...); err != nil {
		t.Errorf("Load(all of %s but cilium): %v", root, err)
	}

	// Our examples mean what Cilium's originals mean.
	same := []struct{ ours, cilium string }{
		{"starwars/rule1.yaml", "cilium/sw_l3_l4_l7_policy.yaml"},
		{"kafka/secure-empire-kafka.yaml", "cilium/kafka-sw-security-policy.yaml"},
		{"grpc/door-manager.yaml", "cilium/cc-door-ingress-security.yaml"},
	}
	for _, s := range same {
		a, err := Load(filepath.Join(root, s.ours))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Load(filepath.Join(root, s.cilium))
		if err != nil {
			t.Fatal(err)
		}
		ra, rb := a.TrafficPolicies()[0].Rules(), b.TrafficPolicies()[0].Rules()
		for i := range ra {
			ra[i].Description = ""
		}
		for i := range rb {
			rb[i].Description = ""
		}
		if !reflect.DeepEqual(ra, rb) {
			t.Errorf("%s and %s have different rules", s.ours, s.cilium)
		}
	}
}

func TestSourceString(t *testing.T) {
	tests := []struct {
		src  Source
		want string
	}{
		{Source{File: "f"}, "f"},
		{Source{File: "f", Doc: 2}, "f: document 2"},
		{Source{File: "f", Doc: 2, Item: 3, Kind: "Pod"}, "f: document 2, item 3 (Pod)"},
		{Source{File: "f", Doc: 1, Kind: "TrafficPolicy", Namespace: "ns", Name: "n"}, "f: document 1 (TrafficPolicy ns/n)"},
		{Source{File: "f", Doc: 1, Name: "n"}, "f: document 1 (n)"},
	}
	for _, tt := range tests {
		if got := tt.src.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.src, got, tt.want)
		}
	}
}

func TestSplitYAML(t *testing.T) {
	in := "a: 1\n---\nb: 2\n--- # comment\nc: 3\n---x: 4\n---\n"
	var got []string
	for _, c := range splitYAML([]byte(in)) {
		got = append(got, strings.TrimSpace(string(c.text))+"@"+string(rune('0'+c.line)))
	}
	diffLines(t, "chunks", got, []string{"a: 1@1", "b: 2@3", "c: 3\n---x: 4@5", "@8"})
}

func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"testdata/*/*.yaml", "testdata/*/*.json", "../../examples/*/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("{\"kind\": \"Namespace\"} {"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Loader
		r, err := l.LoadBytes("fuzz.yaml", data)
		if err != nil {
			if r != nil {
				t.Fatalf("LoadBytes returned a result with an error")
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("LoadBytes error %T is not a non-empty Errors", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := Convert(&buf, r); err != nil {
			t.Fatalf("Convert after a successful load: %v", err)
		}
	})
}
