package crd

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// moduleRoot is the repository root, relative to this package.
const moduleRoot = "../.."

// controllerGen returns the controller-gen binary named by $CONTROLLER_GEN,
// made absolute, or fails the test.
func controllerGen(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CONTROLLER_GEN")
	if bin == "" {
		t.Fatal("CONTROLLER_GEN is not set: run `make test`, or set CONTROLLER_GEN=bin/controller-gen-v0.23.0 (built by `make bin/controller-gen-v0.23.0`)")
	}
	if !filepath.IsAbs(bin) && strings.ContainsRune(bin, filepath.Separator) {
		// Relative to the repository root, as in the Makefile.
		abs, err := filepath.Abs(filepath.Join(moduleRoot, bin))
		if err != nil {
			t.Fatalf("resolving CONTROLLER_GEN: %v", err)
		}
		bin = abs
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("CONTROLLER_GEN=%s: %v (run `make bin/controller-gen-v0.23.0`)", os.Getenv("CONTROLLER_GEN"), err)
	}
	return bin
}

func runControllerGen(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = moduleRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("controller-gen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestCRDsUpToDate regenerates the CRDs from ./apis/... into a temporary
// directory and fails, naming the file, if config/crd/bases differs.
func TestCRDsUpToDate(t *testing.T) {
	bin := controllerGen(t)
	out := t.TempDir()
	runControllerGen(t, bin, "crd", "paths=./apis/...", "output:crd:artifacts:config="+out)

	compareDirs(t, out, "bases", "*.yaml")
}

// TestDeepCopyUpToDate regenerates zz_generated.deepcopy.go of every API
// package (those with +kubebuilder:object:generate=true or a generated
// file) into a temporary directory and fails, naming the file, if the
// committed one differs.
func TestDeepCopyUpToDate(t *testing.T) {
	bin := controllerGen(t)
	pkgs := apiPackages(t)
	if len(pkgs) == 0 {
		t.Fatal("no API packages found under apis/")
	}
	for _, pkg := range pkgs {
		out := t.TempDir()
		runControllerGen(t, bin, "object", "paths=./"+pkg, "output:object:dir="+out)
		compareDirs(t, out, filepath.Join(moduleRoot, pkg), "zz_generated.deepcopy.go")
	}
}

// apiPackages lists, relative to the module root, the directories under
// apis/ that hold a generated deepcopy file or ask for one.
func apiPackages(t *testing.T) []string {
	t.Helper()
	var pkgs []string
	root := filepath.Join(moduleRoot, "apis")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		want := d.Name() == "zz_generated.deepcopy.go"
		if !want {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			want = bytes.Contains(data, []byte("+kubebuilder:object:generate=true"))
		}
		if want {
			rel, err := filepath.Rel(moduleRoot, filepath.Dir(path))
			if err != nil {
				return err
			}
			pkgs = append(pkgs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("finding API packages: %v", err)
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs)
}

// compareDirs fails for every file matching pattern that differs between
// the generated directory and the committed one, or exists in only one.
func compareDirs(t *testing.T, generated, committed, pattern string) {
	t.Helper()
	gen, err := filepath.Glob(filepath.Join(generated, pattern))
	if err != nil {
		t.Fatalf("listing generated files: %v", err)
	}
	if len(gen) == 0 {
		t.Fatalf("controller-gen wrote no %s into %s", pattern, generated)
	}
	com, err := filepath.Glob(filepath.Join(committed, pattern))
	if err != nil {
		t.Fatalf("listing committed files: %v", err)
	}
	committedNames := map[string]bool{}
	for _, p := range com {
		committedNames[filepath.Base(p)] = true
	}
	const fix = "run `make generate manifests` and commit the result"
	for _, g := range gen {
		name := filepath.Base(g)
		path := repoPath(filepath.Join(committed, name))
		if !committedNames[name] {
			t.Errorf("%s is missing: %s", path, fix)
			continue
		}
		delete(committedNames, name)
		want, err := os.ReadFile(g)
		if err != nil {
			t.Fatalf("reading generated %s: %v", name, err)
		}
		got, err := os.ReadFile(filepath.Join(committed, name))
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (first difference at line %d): %s", path, firstDiffLine(got, want), fix)
		}
	}
	for name := range committedNames {
		t.Errorf("%s is not generated from the API types any more: delete it, or %s", repoPath(filepath.Join(committed, name)), fix)
	}
}

// firstDiffLine returns the 1-based number of the first line that differs.
func firstDiffLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// repoPath returns path relative to the repository root, for messages.
func repoPath(path string) string {
	root, err1 := filepath.Abs(moduleRoot)
	abs, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return path
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return path
	}
	return filepath.ToSlash(rel)
}
