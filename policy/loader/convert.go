package loader

import (
	"bytes"
	"fmt"
	"io"
	"sort"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Convert writes the documents of r as one multi-document YAML stream, in
// the order they were read: CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy documents rendered as TrafficPolicy and
// ClusterTrafficPolicy (see Marshal), each after a comment naming its
// source; every other document (our kinds, Namespaces, skipped kinds) as
// it was written. YAML documents keep their text and comments; JSON
// documents and List items are rendered as YAML.
func Convert(w io.Writer, r *Result) error {
	docs := make([]Document, 0, len(r.Documents)+len(r.Skipped))
	docs = append(docs, r.Documents...)
	docs = append(docs, r.Skipped...)
	sort.SliceStable(docs, func(i, j int) bool { return docs[i].seq < docs[j].seq })

	var buf bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		var text []byte
		var err error
		switch d.Source.Kind {
		case CiliumNetworkPolicy.Kind, CiliumClusterwideNetworkPolicy.Kind:
			fmt.Fprintf(&buf, "# Converted from %s.\n", d.Source)
			text, err = Marshal(d.Object)
		default:
			text, err = asYAML(d.Raw)
		}
		if err != nil {
			return fmt.Errorf("converting %s: %w", d.Source, err)
		}
		buf.Write(text)
		if len(text) > 0 && text[len(text)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing converted policies: %w", err)
	}
	return nil
}

// Marshal renders an object as YAML with keys in alphabetical order
// (apiVersion, kind, metadata, spec, ...), without status and without an
// empty creationTimestamp.
func Marshal(obj runtime.Object) ([]byte, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T to unstructured: %w", obj, err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		if md["creationTimestamp"] == nil {
			delete(md, "creationTimestamp")
		}
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("rendering %T: %w", obj, err)
	}
	return out, nil
}

// asYAML returns a YAML document as it is, trimmed of surrounding blank
// lines, and renders a JSON one as YAML.
func asYAML(raw []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return yaml.JSONToYAML(trimmed)
	}
	return append(trimmed, '\n'), nil
}
