package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/loader"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	tiefighter = "org=empire,class=tiefighter"
	xwing      = "org=alliance,class=xwing"
	deathstar  = "org=empire,class=deathstar"
	kubeDNS    = "io.kubernetes.pod.namespace=kube-system,k8s-app=kube-dns"
	mediabot   = "org=alliance,class=mediabot"

	starwars    = "../../examples/starwars"
	ciliumSW    = "../../examples/cilium/sw_l3_l4_l7_policy.yaml"
	kafkaDir    = "../../examples/kafka"
	ciliumKafka = "../../examples/cilium/kafka-sw-security-policy.yaml"
	grpcDir     = "../../examples/grpc"
	ciliumGRPC  = "../../examples/cilium/cc-door-ingress-security.yaml"
	dnsDir      = "../../examples/dns"
	adminDir    = "../../examples/admin"
)

// run calls Execute in-process.
func run(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = Execute(args, &out, &errb)
	return out.String(), errb.String(), code
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// traceCase is one traced scenario.
type traceCase struct {
	name  string // golden file base name
	files []string
	args  []string
	want  string // final verdict
}

func traceArgs(c traceCase, extra ...string) []string {
	args := []string{"policy", "trace"}
	for _, f := range c.files {
		args = append(args, "-f", f)
	}
	args = append(args, c.args...)
	return append(args, extra...)
}

func flowArgs(src, dst, port string, more ...string) []string {
	return append([]string{"--src", src, "--dst", dst, "--dport", port}, more...)
}

var traceCases = []traceCase{
	{"starwars-land", []string{starwars}, flowArgs(tiefighter, deathstar, "80", "--http", "POST /v1/request-landing"), policy.VerdictAllowed},
	{"starwars-exhaust-port", []string{starwars}, flowArgs(tiefighter, deathstar, "80", "--http", "PUT /v1/exhaust-port"), policy.VerdictDenied},
	{"starwars-xwing", []string{starwars}, flowArgs(xwing, deathstar, "80", "--http", "POST /v1/request-landing"), policy.VerdictDenied},
	{"starwars-no-request", []string{starwars}, flowArgs(tiefighter, deathstar, "80/TCP"), policy.VerdictAllowed},
	{"starwars-headers", []string{starwars}, flowArgs(tiefighter, deathstar, "80", "--http", "POST /v1/request-landing", "--http-host", "deathstar.default.svc", "--http-header", "X-Pilot: Vader", "--http-header", "Accept: */*"), policy.VerdictAllowed},
	{"header-regex", []string{"testdata/header-regex.yaml"}, flowArgs(tiefighter, deathstar, "80", "--http", "POST /v1/request-landing", "--http-header", "X-Token: 123"), policy.VerdictAllowed},
	{"header-regex-mismatch", []string{"testdata/header-regex.yaml"}, flowArgs(tiefighter, deathstar, "80", "--http", "POST /v1/request-landing", "--http-header", "X-Token: 12a"), policy.VerdictDenied},
	{"header-regex-absent", []string{"testdata/header-regex.yaml"}, flowArgs(tiefighter, deathstar, "80", "--http", "POST /v1/request-landing"), policy.VerdictDenied},
	{"cilium-starwars-land", []string{ciliumSW}, flowArgs(tiefighter, deathstar, "80", "--http", "POST /v1/request-landing"), policy.VerdictAllowed},
	{"cilium-starwars-exhaust-port", []string{ciliumSW}, flowArgs(tiefighter, deathstar, "80", "--http", "PUT /v1/exhaust-port"), policy.VerdictDenied},
	{"cilium-starwars-xwing", []string{ciliumSW}, flowArgs(xwing, deathstar, "80", "--http", "POST /v1/request-landing"), policy.VerdictDenied},
	{"kafka-produce", []string{kafkaDir}, flowArgs("app=empire-hq", "app=kafka", "9092", "--kafka", "produce:empire-announce", "--kafka-client-id", "hq", "--kafka-api-version", "3"), policy.VerdictAllowed},
	{"kafka-consume-plans", []string{kafkaDir}, flowArgs("app=empire-outpost", "app=kafka", "9092", "--kafka", "consume:deathstar-plans"), policy.VerdictDenied},
	{"kafka-consume-announce", []string{kafkaDir}, flowArgs("app=empire-outpost", "app=kafka", "9092", "--kafka", "fetch:empire-announce"), policy.VerdictAllowed},
	{"kafka-multi-topic", []string{kafkaDir}, flowArgs("app=empire-outpost", "app=kafka", "9092", "--kafka", "1:empire-announce,deathstar-plans"), policy.VerdictDenied},
	{"kafka-joingroup", []string{kafkaDir}, flowArgs("app=empire-outpost", "app=kafka", "9092", "--kafka", "joingroup"), policy.VerdictAllowed},
	{"cilium-kafka-produce", []string{ciliumKafka}, flowArgs("app=empire-hq", "app=kafka", "9092", "--kafka", "produce:empire-announce", "--kafka-client-id", "hq", "--kafka-api-version", "3"), policy.VerdictAllowed},
	{"grpc-getname", []string{grpcDir}, flowArgs("app=public-terminal", "app=cc-door-mgr", "50051", "--http", "POST /cloudcity.DoorManager/GetName"), policy.VerdictAllowed},
	{"grpc-setaccesscode", []string{grpcDir}, flowArgs("app=public-terminal", "app=cc-door-mgr", "50051", "--http", "POST /cloudcity.DoorManager/SetAccessCode"), policy.VerdictDenied},
	{"cilium-grpc-setaccesscode", []string{ciliumGRPC}, flowArgs("app=public-terminal", "app=cc-door-mgr", "50051", "--http", "POST /cloudcity.DoorManager/SetAccessCode"), policy.VerdictDenied},
	{"dns-lookup", []string{dnsDir}, flowArgs(mediabot, kubeDNS, "53/UDP", "--dns", "api.github.com"), policy.VerdictAllowed},
	{"dns-https-unresolved", []string{dnsDir}, []string{"--src", mediabot, "--dst-ip", "203.0.113.10", "--dport", "443", "--sni", "api.github.com"}, policy.VerdictDenied},
	// --fqdn stands for the lookup the agent would have seen.
	{"dns-https-resolved", []string{dnsDir}, []string{"--src", mediabot, "--dst-ip", "203.0.113.10", "--dport", "443", "--fqdn", "api.github.com=203.0.113.10,2001:db8::10"}, policy.VerdictAllowed},
	{"sni-missing", []string{"testdata/sni.yaml"}, []string{"--src", "app=client", "--dst-ip", "203.0.113.10", "--dport", "443"}, policy.VerdictDenied},
	{"sni-empty", []string{"testdata/sni.yaml"}, []string{"--src", "app=client", "--dst-ip", "203.0.113.10", "--dport", "443", "--sni", ""}, policy.VerdictDenied},
	{"sni-allowed", []string{"testdata/sni.yaml"}, []string{"--src", "app=client", "--dst-ip", "203.0.113.10", "--dport", "443", "--sni", "api.github.com"}, policy.VerdictAllowed},
	{"dns-wrong-parser", []string{dnsDir}, flowArgs(mediabot, kubeDNS, "53/UDP", "--http", "GET /"), policy.VerdictDenied},
	{"audit-global", []string{starwars}, flowArgs(xwing, deathstar, "80", "--audit"), policy.VerdictAudited},
	{"audit-namespace", []string{starwars + "/rule1.yaml", "testdata/audit-namespace.yaml"}, flowArgs(tiefighter, deathstar, "80", "--http", "PUT /v1/exhaust-port"), policy.VerdictAudited},
	{"mode-always", []string{starwars}, flowArgs(tiefighter, "app=other", "8080", "--mode", "always"), policy.VerdictDenied},
	{"mode-always-egress", []string{starwars}, flowArgs(tiefighter, deathstar, "80", "--mode", "always", "--http", "POST /v1/request-landing"), policy.VerdictDenied},
	{"mode-never", []string{starwars}, flowArgs(xwing, deathstar, "80", "--mode", "never"), policy.VerdictAllowed},
	{"admin-deny", []string{adminDir}, flowArgs("app=x,io.kubernetes.pod.namespace=sandbox", "app=etcd,io.kubernetes.pod.namespace=kube-system", "2379"), policy.VerdictDenied},
	{"admin-dns", []string{adminDir}, flowArgs("app=x,io.kubernetes.pod.namespace=sandbox", kubeDNS, "53/UDP", "--dns", "example.com"), policy.VerdictAllowed},
	{"admin-pass-baseline-deny", []string{adminDir}, flowArgs("app=x", "app=web,io.kubernetes.pod.namespace=team-a", "80"), policy.VerdictDenied},
	{"admin-pass-same-namespace", []string{adminDir}, flowArgs("app=x,io.kubernetes.pod.namespace=team-a", "app=web,io.kubernetes.pod.namespace=team-a", "80"), policy.VerdictAllowed},
	{"entity-world-icmp", []string{starwars}, []string{"--src-entity", "world", "--dst", deathstar, "--dport", "8/ICMP"}, policy.VerdictDenied},
	// Port-less protocols of Cilium 1.18: allowed both ways for VRRP;
	// IGMP is allowed at the ingress but not at the source's egress.
	{"vrrp", []string{"testdata/vrrp.yaml"}, flowArgs("app=keepalived,role=backup", "app=keepalived,role=master", "VRRP"), policy.VerdictAllowed},
	{"igmp-egress-denied", []string{"testdata/vrrp.yaml"}, flowArgs("app=keepalived,role=backup", "app=keepalived,role=master", "0/IGMP"), policy.VerdictDenied},
	{"vrrp-other-peer", []string{"testdata/vrrp.yaml"}, flowArgs("app=web", "app=keepalived", "VRRP"), policy.VerdictDenied},
}

func TestTraceGolden(t *testing.T) {
	for _, c := range traceCases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := run(traceArgs(c)...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			golden(t, c.name+".golden", stdout)
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if last := lines[len(lines)-1]; last != "Final verdict: "+c.want {
				t.Errorf("last line = %q, want %q", last, "Final verdict: "+c.want)
			}

			stdout, stderr, code = run(traceArgs(c, "-o", "json")...)
			if code != exitOK || stderr != "" {
				t.Fatalf("-o json: exit %d, stderr:\n%s", code, stderr)
			}
			golden(t, c.name+".json.golden", stdout)
			var got traceJSON
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("-o json: %v", err)
			}
			if got.Verdict != c.want {
				t.Errorf("-o json: verdict = %q, want %q", got.Verdict, c.want)
			}
		})
	}
}

// The unmodified Cilium YAML gives the same verdicts, side by side, as our
// kinds.
func TestCiliumYAMLSameVerdicts(t *testing.T) {
	pairs := []struct{ ours, cilium string }{
		{"starwars-land", "cilium-starwars-land"},
		{"starwars-exhaust-port", "cilium-starwars-exhaust-port"},
		{"starwars-xwing", "cilium-starwars-xwing"},
		{"kafka-produce", "cilium-kafka-produce"},
		{"grpc-setaccesscode", "cilium-grpc-setaccesscode"},
	}
	byName := map[string]traceCase{}
	for _, c := range traceCases {
		byName[c.name] = c
	}
	for _, p := range pairs {
		t.Run(p.cilium, func(t *testing.T) {
			a, b := traceJSONOf(t, traceArgs(byName[p.ours])), traceJSONOf(t, traceArgs(byName[p.cilium]))
			if a.Verdict != b.Verdict || a.Egress.Verdict != b.Egress.Verdict || a.Ingress.Verdict != b.Ingress.Verdict ||
				a.Ingress.L4 != b.Ingress.L4 {
				t.Errorf("verdicts differ: ours %s (egress %s, ingress %s %s), Cilium YAML %s (egress %s, ingress %s %s)",
					a.Verdict, a.Egress.Verdict, a.Ingress.Verdict, a.Ingress.L4,
					b.Verdict, b.Egress.Verdict, b.Ingress.Verdict, b.Ingress.L4)
			}
		})
	}
}

func traceJSONOf(t *testing.T, args []string) traceJSON {
	t.Helper()
	stdout, stderr, code := run(append(args, "-o", "json")...)
	if code != exitOK {
		t.Fatalf("%v: exit %d, stderr:\n%s", args, code, stderr)
	}
	var out traceJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Bad input: exit 1, nothing on stdout, every message naming the file,
// the document and the field.
func TestBadInput(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"unknown-field.yaml", []string{"document 1 (TrafficPolicy default/typo)", "spec.ingress[0].fromEndpoint", "unknown field"}},
		{"bad-regex.yaml", []string{"document 2 (TrafficPolicy shop/bad-path)", "spec.ingress[0].toPorts[0].rules.http[0].path", "regular expression"}},
		{"port-range.yaml", []string{"document 1 (CiliumNetworkPolicy default/big-port)", "spec.ingress[0].toPorts[0].ports[0]", "65535"}},
		{"kafka-role-and-apikey.yaml", []string{"document 1 (TrafficPolicy default/kafka-both)", "spec.ingress[0].toPorts[0].rules.kafka[0]", "mutually exclusive"}},
		{"l7-in-deny.yaml", []string{"document 1 (TrafficPolicy default/deny-l7)", "spec.ingressDeny[0].toPorts[0].rules", "unknown field"}},
	}
	for _, c := range cases {
		path := filepath.Join("testdata", "bad", c.file)
		for _, cmd := range [][]string{
			{"policy", "trace", "-f", path, "--src", "app=a", "--dst", "app=b", "--dport", "80"},
			{"policy", "validate", "-f", path},
			{"policy", "convert", "-f", path},
		} {
			t.Run(c.file+"/"+cmd[1], func(t *testing.T) {
				stdout, stderr, code := run(cmd...)
				if code != exitInput {
					t.Errorf("exit %d, want %d", code, exitInput)
				}
				if stdout != "" {
					t.Errorf("stdout not empty:\n%s", stdout)
				}
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if len(lines) != 1 {
					t.Errorf("want one problem, got:\n%s", stderr)
				}
				if !strings.HasPrefix(lines[0], path+": ") {
					t.Errorf("message does not start with the file name %q:\n%s", path, stderr)
				}
				for _, w := range c.want {
					if !strings.Contains(lines[0], w) {
						t.Errorf("message does not contain %q:\n%s", w, stderr)
					}
				}
			})
		}
	}
	t.Run("missing file", func(t *testing.T) {
		stdout, stderr, code := run("policy", "validate", "-f", "testdata/no-such-file.yaml")
		if code != exitInput || stdout != "" || !strings.Contains(stderr, "testdata/no-such-file.yaml") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}

// Engine problems are reported like the loader's, with the document's
// source. The loader's own validation finds these first, so compile is
// exercised with a loader without the Validate hook.
func TestCompileProblems(t *testing.T) {
	var l loader.Loader
	res, err := l.Load("testdata/bad/bad-regex.yaml", "testdata/bad/header-regex.yaml", "testdata/bad/kafka-role-and-apikey.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := compile(policy.NewRepository(policy.Options{}), res)
	want := []string{
		"testdata/bad/bad-regex.yaml: document 2 (TrafficPolicy shop/bad-path): spec.ingress[0].toPorts[0].rules.http[0].path: Invalid value: \"[\":",
		"testdata/bad/header-regex.yaml: document 1 (TrafficPolicy shop/regex-and-value): spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].regex: Invalid value: \"[0-9]+\": regex is mutually exclusive with value and secret",
		"testdata/bad/header-regex.yaml: document 2 (TrafficPolicy shop/regex-replace): spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch: Invalid value: \"REPLACE\": with regex, mismatch must be LOG or DELETE",
		"testdata/bad/header-regex.yaml: document 3 (TrafficPolicy shop/bad-regex): spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].regex: Invalid value: \"[0-9+\": invalid regular expression",
		"testdata/bad/kafka-role-and-apikey.yaml: document 1 (TrafficPolicy default/kafka-both): spec.ingress[0].toPorts[0].rules.kafka[0].apiKey: Invalid value:",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func TestValidate(t *testing.T) {
	t.Run("every problem of every file", func(t *testing.T) {
		stdout, stderr, code := run("policy", "validate", "-f", "testdata/bad", "-f", starwars)
		if code != exitInput || stdout != "" {
			t.Fatalf("exit %d, stdout %q", code, stdout)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		files := map[string]bool{}
		for _, l := range lines {
			f, _, _ := strings.Cut(l, ": ")
			files[f] = true
		}
		if len(lines) != 10 || len(files) != 7 {
			t.Errorf("want 10 problems in 7 files, got:\n%s", stderr)
		}
	})
	// A schema problem does not hide an engine problem of the same
	// document: both are reported at once.
	t.Run("schema and engine problems together", func(t *testing.T) {
		stdout, stderr, code := run("policy", "validate", "-f", "testdata/bad/schema-and-engine.yaml")
		if code != exitInput || stdout != "" {
			t.Fatalf("exit %d, stdout %q", code, stdout)
		}
		const src = "testdata/bad/schema-and-engine.yaml: document 1 (CiliumClusterwideNetworkPolicy two-problems): "
		want := []string{src + "spec.ingress[0].toPorts[0].ports[0]: ", src + "spec.nodeSelector: Forbidden: host policies"}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if len(lines) != len(want) {
			t.Fatalf("want %d problems, got:\n%s", len(want), stderr)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
			}
		}
	})
	// kube-dns is refused by name with what to write instead, and not
	// also as an unsupported enum value.
	t.Run("the kube-dns entity", func(t *testing.T) {
		stdout, stderr, code := run("policy", "validate", "-f", "testdata/kube-dns.yaml")
		if code != exitInput || stdout != "" {
			t.Fatalf("exit %d, stdout %q", code, stdout)
		}
		const want = "testdata/kube-dns.yaml: document 1 (CiliumNetworkPolicy default/dns-by-entity): spec.egress[0].toEntities[0]: not supported by Portcullis: kube-dns is not a Cilium entity"
		if !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, `toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]`) ||
			strings.Contains(stderr, "Unsupported value") {
			t.Errorf("stderr:\n%s\nwant it to start with %q, suggest toEndpoints, and not repeat the enum error", stderr, want)
		}
	})
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{starwars}, "2 documents valid (1 Namespace, 1 TrafficPolicy)\n"},
		{[]string{kafkaDir, ciliumSW}, "2 documents valid (1 CiliumNetworkPolicy, 1 TrafficPolicy)\n"},
		{[]string{adminDir}, "7 documents valid (4 AdminTrafficPolicy, 3 Namespace)\n"},
		{[]string{ciliumGRPC}, "1 document valid (1 CiliumNetworkPolicy)\n"},
	} {
		t.Run(strings.Join(c.files, ","), func(t *testing.T) {
			args := []string{"policy", "validate"}
			for _, f := range c.files {
				args = append(args, "-f", f)
			}
			stdout, stderr, code := run(args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if stdout != c.want {
				t.Errorf("stdout = %q, want %q", stdout, c.want)
			}
		})
	}
}

// Bad command lines: exit 2, the usage on stderr, nothing on stdout.
func TestUsageErrors(t *testing.T) {
	base := func(more ...string) []string {
		return append([]string{"policy", "trace", "-f", starwars}, more...)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--bogus"), "unknown flag: --bogus"},
		{"no source", base("--dst", deathstar, "--dport", "80"), "src"},
		{"two sources", base("--src", xwing, "--src-ip", "10.0.0.1", "--dst", deathstar, "--dport", "80"), "none of the others can be"},
		{"no destination", base("--src", xwing, "--dport", "80"), "dst"},
		{"no port", base("--src", xwing, "--dst", deathstar), `"dport" not set`},
		{"no files", []string{"policy", "trace", "--src", xwing, "--dst", deathstar, "--dport", "80"}, `"filename" not set`},
		{"port out of range", base("--src", xwing, "--dst", deathstar, "--dport", "70000"), "--dport"},
		{"port zero", base("--src", xwing, "--dst", deathstar, "--dport", "0"), "--dport"},
		{"unknown protocol", base("--src", xwing, "--dst", deathstar, "--dport", "80/QUIC"), "unknown protocol"},
		{"a port for VRRP", base("--src", xwing, "--dst", deathstar, "--dport", "112/VRRP"), "VRRP has no ports"},
		{"bad icmp type", base("--src", xwing, "--dst", deathstar, "--dport", "300/ICMP"), "ICMP type"},
		{"bad address", base("--src-ip", "10.0.0.300", "--dst", deathstar, "--dport", "80"), "--src-ip"},
		{"unknown entity", base("--src-entity", "moon", "--dst", deathstar, "--dport", "80"), "unknown entity"},
		{"reserved label", base("--src", "reserved:host", "--dst", deathstar, "--dport", "80"), "--src-entity"},
		{"bad http", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--http", "GET"), "METHOD PATH"},
		{"bad header", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--http", "GET /", "--http-header", "nocolon"), "Name: value"},
		{"host without http", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--http-host", "x"), "need --http"},
		{"http and kafka", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--http", "GET /", "--kafka", "produce:x"), "none of the others can be"},
		{"bad kafka key", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--kafka", "launch:x"), "unknown API key"},
		{"kafka version without kafka", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--kafka-api-version", "2"), "need --kafka"},
		{"bad mode", base("--src", xwing, "--dst", deathstar, "--dport", "80", "--mode", "sometimes"), "--mode"},
		{"bad output", base("--src", xwing, "--dst", deathstar, "--dport", "80", "-o", "yaml"), "--output"},
		{"unknown command", []string{"policy", "apply", "-f", starwars}, "unknown"},
		{"unknown top-level command", []string{"politics"}, "unknown command"},
		{"validate with arguments", []string{"policy", "validate", "-f", starwars, "extra"}, "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := run(c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty:\n%s", stdout)
			}
			if !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "Usage:") {
				t.Errorf("stderr lacks %q or the usage:\n%s", c.want, stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{}, {"--help"}, {"policy"}, {"policy", "trace", "--help"}} {
		stdout, stderr, code := run(args...)
		if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// The built binary's exit statuses: 0 for a DENIED trace, 1 for bad
// input, 2 for a bad flag.
func TestBinaryExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "portcullis")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cases := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
	}{
		{"denied trace", traceArgs(traceCases[1]), 0, "Final verdict: DENIED\n"},
		{"bad input", []string{"policy", "trace", "-f", "testdata/bad/bad-regex.yaml", "--src", "app=a", "--dst", "app=b", "--dport", "80"}, 1, ""},
		{"bad flag", []string{"policy", "trace", "-f", starwars, "--no-such-flag"}, 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, c.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if !strings.HasSuffix(stdout.String(), c.wantStdout) || (c.wantStdout == "" && stdout.Len() > 0) {
				t.Errorf("stdout = %q, want it to end with %q", stdout.String(), c.wantStdout)
			}
			if c.code != 0 && stderr.Len() == 0 {
				t.Error("no message on stderr")
			}
		})
	}
}

// The peer and request parsers, alone.
func TestParsers(t *testing.T) {
	ports := []struct {
		in    string
		port  uint16
		proto uint8
		ok    bool
	}{
		{"80", 80, policy.ProtoTCP, true},
		{"53/udp", 53, policy.ProtoUDP, true},
		{"2905/SCTP", 2905, policy.ProtoSCTP, true},
		{"8/ICMP", 8, policy.ProtoICMP, true},
		{"0/ICMP", 0, policy.ProtoICMP, true},
		{"128/ICMPv6", 128, policy.ProtoICMPv6, true},
		{"65535", 65535, policy.ProtoTCP, true},
		{"65536", 0, 0, false},
		{"0", 0, 0, false},
		{"-1", 0, 0, false},
		{"80/", 0, 0, false},
		{"80/6", 0, 0, false},
		{"http", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, c := range ports {
		port, proto, err := parsePort(c.in)
		if (err == nil) != c.ok || port != c.port || proto != c.proto {
			t.Errorf("parsePort(%q) = %d, %d, %v; want %d, %d, ok=%v", c.in, port, proto, err, c.port, c.proto, c.ok)
		}
	}
	kafka := []struct {
		in     string
		key    int16
		topics []string
		ok     bool
	}{
		{"produce:empire-announce", 0, []string{"empire-announce"}, true},
		{"consume:a,b", 1, []string{"a", "b"}, true},
		{"Fetch:a", 1, []string{"a"}, true},
		{"metadata", 3, nil, true},
		{"18", 18, nil, true},
		{"joingroup:", 11, nil, true},
		{"fetch:a,,b", 0, nil, false},
		{"-1:a", 0, nil, false},
		{"launch", 0, nil, false},
	}
	for _, c := range kafka {
		req, err := parseKafka(c.in)
		if (err == nil) != c.ok {
			t.Errorf("parseKafka(%q) error = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if err == nil && (req.APIKey != c.key || strings.Join(req.Topics, ",") != strings.Join(c.topics, ",")) {
			t.Errorf("parseKafka(%q) = key %d topics %v, want %d %v", c.in, req.APIKey, req.Topics, c.key, c.topics)
		}
	}
}

// The flag parsers never panic, whatever they are given.
func FuzzParseFlags(f *testing.F) {
	for _, s := range []string{"80", "53/UDP", "8/ICMP", "produce:a,b", "GET /", "X-A: b", "", ":", "/", "1:,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = parsePort(s)
		_, _ = parseKafka(s)
		_, _ = parseHTTP(s, s, []string{s})
		_, _ = policy.ParseLabels(s)
	})
}

// An empty peer list is valid (Cilium accepts it) but selects nobody, so
// validate warns about it on stderr and still exits 0.
func TestValidateWarnsEmptyPeerList(t *testing.T) {
	stdout, stderr, code := run("policy", "validate", "-f", "testdata/warn/empty-peers.yaml")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if stdout != "1 document valid (1 CiliumNetworkPolicy)\n" {
		t.Errorf("stdout = %q", stdout)
	}
	want := []string{
		"warning: testdata/warn/empty-peers.yaml: document 1 (CiliumNetworkPolicy default/empty-peers): spec.ingress[0].fromEndpoints: an empty peer list selects no peer",
		"warning: testdata/warn/empty-peers.yaml: document 1 (CiliumNetworkPolicy default/empty-peers): spec.egress[0].toFQDNs: an empty peer list selects no peer",
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != len(want) {
		t.Fatalf("want %d warnings, got:\n%s", len(want), stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	// And the flow it seems to allow is denied.
	stdout, _, _ = run("policy", "trace", "-f", "testdata/warn/empty-peers.yaml", "--src", "app=client", "--dst", "app=server", "--dport", "80")
	if !strings.HasSuffix(stdout, "Final verdict: DENIED\n") {
		t.Errorf("trace:\n%s", stdout)
	}
}
