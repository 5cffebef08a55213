package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Converted Cilium policies trace exactly as the originals.
func TestConvert(t *testing.T) {
	byFile := map[string][]traceCase{}
	for _, c := range traceCases {
		if len(c.files) == 1 && strings.Contains(c.files[0], "/cilium/") {
			byFile[c.files[0]] = append(byFile[c.files[0]], c)
		}
	}
	if len(byFile) < 3 {
		t.Fatalf("only %d Cilium files traced", len(byFile))
	}
	dir := t.TempDir()
	for file, cases := range byFile {
		t.Run(filepath.Base(file), func(t *testing.T) {
			stdout, stderr, code := run("policy", "convert", "-f", file)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if strings.Contains(stdout, "\nkind: CiliumNetworkPolicy") || !strings.Contains(stdout, "kind: TrafficPolicy") {
				t.Fatalf("not converted:\n%s", stdout)
			}
			conv := filepath.Join(dir, filepath.Base(file))
			if err := os.WriteFile(conv, []byte(stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				orig := traceJSONOf(t, traceArgs(c))
				c.files = []string{conv}
				got := traceJSONOf(t, traceArgs(c))
				if got.Verdict != orig.Verdict || got.Verdict != c.want || got.Ingress.L4 != orig.Ingress.L4 ||
					strings.Join(got.Ingress.Rules, ";") != strings.Join(orig.Ingress.Rules, ";") {
					t.Errorf("%s: converted gives %s %s %v, original %s %s %v", c.name,
						got.Verdict, got.Ingress.L4, got.Ingress.Rules, orig.Verdict, orig.Ingress.L4, orig.Ingress.Rules)
				}
			}
		})
	}
}
