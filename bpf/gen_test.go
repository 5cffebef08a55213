package bpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestGeneratedUpToDate rebuilds the objects from datapath.c with the
// go:generate line of gen.go into a temporary directory and compares them
// with the committed ones.
func TestGeneratedUpToDate(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed (make deps): cannot check the committed objects against datapath.c")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH")
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^//go:generate go tool bpf2go (.*)$`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no go:generate line in gen.go")
	}
	out := t.TempDir()
	args := append([]string{"tool", "bpf2go", "-output-dir", out}, splitArgs(string(m[1]))...)
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, b)
	}
	for _, name := range []string{"datapath_bpfel.o", "datapath_bpfel.go"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("bpf/%s is stale: run make generate and commit it", name)
		}
	}
}

// splitArgs splits a command line on spaces, keeping double-quoted parts.
func splitArgs(s string) []string {
	var out []string
	var cur []byte
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inQuote, have = !inQuote, true
		case c == ' ' && !inQuote:
			if have {
				out = append(out, string(cur))
			}
			cur, have = cur[:0], false
		default:
			cur, have = append(cur, c), true
		}
	}
	if have {
		out = append(out, string(cur))
	}
	return out
}
