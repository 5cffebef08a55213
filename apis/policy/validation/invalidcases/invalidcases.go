// Package invalidcases loads the invalid-policy fixtures under
// apis/policy/validation/testdata/invalid. The same files are checked
// in-process (package validation) and against a real kube-apiserver
// (e2e/packaging), so both tests share one source of truth.
//
// Each fixture is one YAML object preceded by a comment block:
//
//	# free text describing the case (optional)
//	# field: spec.ingress[0]
//	# message: toPorts and icmps cannot be combined in one rule
//
// field is the expected field path of the error ("<nil>" for an error
// about the object as a whole); message is a substring of its message.
// Both are required; everything after "field: " or "message: " up to the
// end of the line is taken literally.
package invalidcases

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// NoField is the field of an error about the object as a whole.
const NoField = "<nil>"

// Case is one invalid object and the error it must produce.
type Case struct {
	Name    string // file name without .yaml
	Doc     []byte // the whole file (comments are valid YAML)
	Field   string
	Message string
}

// Load reads every *.yaml file in dir, sorted by name. It fails on a
// fixture without exactly one field and one message line, and on an
// empty directory.
func Load(dir string) ([]Case, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no *.yaml fixtures in %s", dir)
	}
	sort.Strings(paths)
	cases := make([]Case, 0, len(paths))
	for _, p := range paths {
		c, err := parse(p)
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	return cases, nil
}

func parse(path string) (Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Case{}, err
	}
	c := Case{Name: strings.TrimSuffix(filepath.Base(path), ".yaml"), Doc: data}
	var nField, nMsg int
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break // the header ends at the first non-comment line
		}
		body := strings.TrimSpace(strings.TrimPrefix(line, "#"))
		if v, ok := strings.CutPrefix(body, "field:"); ok {
			c.Field = strings.TrimSpace(v)
			nField++
		} else if v, ok := strings.CutPrefix(body, "message:"); ok {
			c.Message = strings.TrimSpace(v)
			nMsg++
		}
	}
	if err := sc.Err(); err != nil {
		return Case{}, fmt.Errorf("%s: %v", path, err)
	}
	if nField != 1 || nMsg != 1 || c.Field == "" || c.Message == "" {
		return Case{}, fmt.Errorf("%s: want exactly one non-empty \"# field:\" and one \"# message:\" line in the leading comment block, got %d and %d", path, nField, nMsg)
	}
	return c, nil
}
