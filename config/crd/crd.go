package crd

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// bases holds the CRD manifests written by controller-gen.
//
//go:embed bases/*.yaml
var bases embed.FS

// ErrNotFound is returned by ForGroupKind when no embedded CRD serves the
// group-kind.
var ErrNotFound = errors.New("no CustomResourceDefinition for group-kind")

// FS returns the embedded manifests; the files are under bases/.
func FS() fs.FS { return bases }

var parsed = sync.OnceValues(parseAll)

// CRDs returns the embedded CustomResourceDefinitions, sorted by name. Each
// call returns fresh deep copies that the caller may modify.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crds, err := parsed()
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, len(crds))
	for i, c := range crds {
		out[i] = c.DeepCopy()
	}
	return out, nil
}

// ForGroupKind returns a deep copy of the embedded CustomResourceDefinition
// whose spec.group and spec.names.kind are gk's. It returns an error
// wrapping ErrNotFound if there is none.
func ForGroupKind(gk schema.GroupKind) (*apiextensionsv1.CustomResourceDefinition, error) {
	crds, err := parsed()
	if err != nil {
		return nil, err
	}
	for _, c := range crds {
		if c.Spec.Group == gk.Group && c.Spec.Names.Kind == gk.Kind {
			return c.DeepCopy(), nil
		}
	}
	return nil, fmt.Errorf("%w %s", ErrNotFound, gk)
}

func parseAll() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	names, err := fs.Glob(bases, "bases/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("listing embedded CRDs: %w", err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, name := range names {
		data, err := bases.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading embedded CRD %s: %w", name, err)
		}
		c := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, c); err != nil {
			return nil, fmt.Errorf("parsing embedded CRD %s: %w", path.Base(name), err)
		}
		if c.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("parsing embedded CRD %s: kind is %q, want CustomResourceDefinition", path.Base(name), c.Kind)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
