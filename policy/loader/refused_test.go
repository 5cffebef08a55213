package loader_test

import (
	"os"
	"strings"
	"testing"

	"portcullis.dev/portcullis/policy/loader"
)

// The evaluation document lists every Cilium field the loader refuses by
// name, so the list a user reads cannot fall behind the loader's table.
func TestRefusedFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/design/evaluation.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range loader.RefusedCiliumFields() {
		if !strings.Contains(string(doc), "| `"+f.Name+"` |") {
			t.Errorf("docs/design/evaluation.md does not list the refused field %q (%s)", f.Name, f.Reason)
		}
	}
}

// The same document lists the entity names refused by name.
func TestRefusedEntitiesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/design/evaluation.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range loader.RefusedEntities() {
		if !strings.Contains(string(doc), "| `"+e.Name+"` |") {
			t.Errorf("docs/design/evaluation.md does not list the refused entity %q (%s)", e.Name, e.Reason)
		}
	}
}
