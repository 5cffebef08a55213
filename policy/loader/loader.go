package loader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// StdinName is the Source.File of documents read from standard input.
const StdinName = "<stdin>"

// DefaultSkipKinds are the kinds skipped with a warning when
// Loader.SkipKinds is nil: workload and configuration kinds that often sit
// next to policies (as in examples/) and cannot change a verdict.
var DefaultSkipKinds = []schema.GroupKind{
	{Kind: "Pod"}, {Kind: "Service"}, {Kind: "ServiceAccount"}, {Kind: "ConfigMap"},
	{Kind: "Secret"}, {Kind: "Endpoints"}, {Kind: "PersistentVolumeClaim"},
	{Group: "apps", Kind: "Deployment"}, {Group: "apps", Kind: "StatefulSet"},
	{Group: "apps", Kind: "DaemonSet"}, {Group: "apps", Kind: "ReplicaSet"},
	{Group: "batch", Kind: "Job"}, {Group: "batch", Kind: "CronJob"},
	{Group: "discovery.k8s.io", Kind: "EndpointSlice"},
	{Group: "gateway.networking.k8s.io", Kind: "ReferenceGrant"},
}

// Loader reads policy files. The zero value is ready to use.
type Loader struct {
	// Validate, if not nil, is applied to every TrafficPolicy,
	// ClusterTrafficPolicy and AdminTrafficPolicy document (Cilium kinds
	// after conversion, namespace defaulted) before typed decoding, even
	// when the loader found problems in it. It gets a copy it may modify.
	// Its errors are reported after the loader's own for the document,
	// except those at or inside a field the loader already reported. Nil
	// means no extra validation; apis/policy/validation.Validate fits.
	Validate func(u *unstructured.Unstructured) field.ErrorList

	// SkipKinds are kinds that are skipped with a warning instead of being
	// an error. Nil means DefaultSkipKinds; an empty non-nil slice skips
	// nothing.
	SkipKinds []schema.GroupKind

	// Stdin is read for the path "-". Nil means os.Stdin.
	Stdin io.Reader
}

// Document is one object the loader took.
type Document struct {
	// Source says where the object came from.
	Source Source
	// Object is a *v1alpha1.TrafficPolicy, *v1alpha1.ClusterTrafficPolicy,
	// *v1alpha1.AdminTrafficPolicy or *corev1.Namespace; for a skipped
	// document it is the *unstructured.Unstructured as written.
	Object runtime.Object
	// Raw is the document as written (YAML or JSON); for an item of a List
	// it is the item as JSON.
	Raw []byte

	seq int // position among all documents of the load
}

// Result is what a successful load produced.
type Result struct {
	// Documents are the objects taken, in path, file and document order.
	Documents []Document
	// Skipped are documents of a kind in SkipKinds, and exact duplicates,
	// in the same order.
	Skipped []Document
	// Warnings are things the caller may want to show, such as skipped
	// documents.
	Warnings []Warning
}

// Load reads the paths with a zero Loader.
func Load(paths ...string) (*Result, error) {
	var l Loader
	return l.Load(paths...)
}

// Load reads the files and directories named by paths ("-" is standard
// input). On any problem it returns a nil Result and an Errors holding
// every problem found; otherwise every document, and no error.
func (l *Loader) Load(paths ...string) (*Result, error) {
	st := l.newState()
	for _, p := range paths {
		st.loadPath(p)
	}
	return st.finish()
}

// LoadBytes reads data as the contents of a file called name.
func (l *Loader) LoadBytes(name string, data []byte) (*Result, error) {
	st := l.newState()
	st.loadFile(name, data)
	return st.finish()
}

type state struct {
	l    *Loader
	skip map[schema.GroupKind]bool
	res  Result
	errs Errors
	seq  int
}

func (l *Loader) newState() *state {
	kinds := l.SkipKinds
	if kinds == nil {
		kinds = DefaultSkipKinds
	}
	st := &state{l: l, skip: make(map[schema.GroupKind]bool, len(kinds))}
	for _, gk := range kinds {
		st.skip[gk] = true
	}
	return st
}

func (st *state) fail(src Source, path string, err error) {
	st.errs = append(st.errs, &Error{Source: src, Field: path, Err: err})
}

func (st *state) warn(src Source, format string, args ...any) {
	st.res.Warnings = append(st.res.Warnings, Warning{Source: src, Message: fmt.Sprintf(format, args...)})
}

func (st *state) loadPath(p string) {
	if p == "-" {
		in := st.l.Stdin
		if in == nil {
			in = os.Stdin
		}
		data, err := io.ReadAll(in)
		if err != nil {
			st.fail(Source{File: StdinName}, "", fmt.Errorf("reading standard input: %w", err))
			return
		}
		st.loadFile(StdinName, data)
		return
	}
	info, err := os.Stat(p)
	if err != nil {
		st.fail(Source{File: p}, "", err)
		return
	}
	if !info.IsDir() {
		st.readFile(p)
		return
	}
	found := 0
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			st.fail(Source{File: path}, "", err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path != p && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			found++
			st.readFile(path)
		}
		return nil
	})
	if err != nil {
		st.fail(Source{File: p}, "", err)
	}
	if found == 0 {
		st.warn(Source{File: p}, "no .yaml, .yml or .json files in directory")
	}
}

func (st *state) readFile(p string) {
	data, err := os.ReadFile(p)
	if err != nil {
		st.fail(Source{File: p}, "", err)
		return
	}
	st.loadFile(p, data)
}

// loadFile reads a stream of JSON objects if the first non-blank byte is
// '{', else a stream of YAML documents.
func (st *state) loadFile(name string, data []byte) {
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a UTF-8 byte order mark
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		st.loadJSONStream(name, data)
		return
	}
	doc := 0
	for _, c := range splitYAML(data) {
		if isEmptyYAML(c.text) {
			continue
		}
		doc++
		src := Source{File: name, Doc: doc, Line: c.line}
		j, err := yaml.YAMLToJSONStrict(c.text)
		if err != nil {
			st.yamlError(src, c.line, err)
			continue
		}
		st.loadJSON(src, c.text, j)
	}
}

func (st *state) loadJSONStream(name string, data []byte) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		start := dec.InputOffset()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return
		}
		src := Source{File: name, Doc: doc, Line: lineAt(data, skipBlank(data, start))}
		if err != nil {
			var se *json.SyntaxError
			off := dec.InputOffset()
			if errors.As(err, &se) {
				off = se.Offset
			}
			st.errs = append(st.errs, &Error{Source: src, Line: lineAt(data, off),
				Err: fmt.Errorf("%w: %s", ErrSyntax, trimJSONErr(err))})
			return // a JSON stream cannot be resynchronised
		}
		st.loadJSON(src, raw, raw)
	}
}

// yamlLineRE finds the line numbers in go-yaml's messages, which count
// from the start of the document.
var yamlLineRE = regexp.MustCompile(`line (\d+): ([^\n]*)`)

func (st *state) yamlError(src Source, start int, err error) {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	matches := yamlLineRE.FindAllStringSubmatch(msg, -1)
	if len(matches) == 0 {
		st.errs = append(st.errs, &Error{Source: src, Err: fmt.Errorf("%w: %s", ErrSyntax, strings.TrimPrefix(msg, "yaml: "))})
		return
	}
	for _, m := range matches {
		n, _ := strconv.Atoi(m[1])
		st.errs = append(st.errs, &Error{Source: src, Line: start + n - 1, Err: fmt.Errorf("%w: %s", ErrSyntax, m[2])})
	}
}

// loadJSON takes one document: raw is its text, j its JSON.
func (st *state) loadJSON(src Source, raw, j []byte) {
	var v any
	if err := utiljson.Unmarshal(j, &v); err != nil {
		st.fail(src, "", fmt.Errorf("%w: %s", ErrSyntax, trimJSONErr(err)))
		return
	}
	if v == nil {
		return // "null" or "~": an empty document
	}
	m, ok := v.(map[string]any)
	if !ok {
		st.fail(src, "", fmt.Errorf("%w: got %s", ErrNotObject, describe(v)))
		return
	}
	st.loadObject(src, m, raw, false)
}

func (st *state) loadObject(src Source, m map[string]any, raw []byte, inList bool) {
	apiVersion, okV := m["apiVersion"].(string)
	kind, okK := m["kind"].(string)
	src.Kind = kind
	if md, ok := m["metadata"].(map[string]any); ok {
		src.Name, _ = md["name"].(string)
		src.Namespace, _ = md["namespace"].(string)
	}
	bad := false
	if !okK || kind == "" {
		st.fail(src, "", field.Required(field.NewPath("kind"), "every document needs a kind"))
		bad = true
	}
	if !okV || apiVersion == "" {
		st.fail(src, "", field.Required(field.NewPath("apiVersion"), "every document needs an apiVersion"))
		bad = true
	}
	if bad {
		return
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		st.fail(src, "apiVersion", err)
		return
	}
	gvk := gv.WithKind(kind)

	if isList(gvk) {
		if inList {
			st.fail(src, "", fmt.Errorf("a %s inside a List is not supported", kind))
			return
		}
		items, ok := m["items"].([]any)
		if !ok && m["items"] != nil {
			st.fail(src, "items", fmt.Errorf("%w: got %s, want list", ErrWrongType, describe(m["items"])))
			return
		}
		for i, it := range items {
			isrc := Source{File: src.File, Doc: src.Doc, Item: i + 1, Line: src.Line}
			im, ok := it.(map[string]any)
			if !ok {
				st.fail(isrc, field.NewPath("items").Index(i).String(), fmt.Errorf("%w: got %s", ErrNotObject, describe(it)))
				continue
			}
			iraw, err := json.Marshal(im)
			if err != nil {
				st.fail(isrc, "", err)
				continue
			}
			st.loadObject(isrc, im, iraw, true)
		}
		return
	}

	st.seq++
	doc := Document{Source: src, Raw: raw, seq: st.seq}
	if _, known := newObject(gvk); known {
		st.decode(doc, gvk, m)
		return
	}
	if st.skip[gvk.GroupKind()] {
		doc.Object = &unstructured.Unstructured{Object: m}
		st.res.Skipped = append(st.res.Skipped, doc)
		st.warn(src, "skipped: %s does not affect policy verdicts", kind)
		return
	}
	st.fail(src, "", unknownKind(gvk))
}

// isList reports whether gvk is a v1 List or a typed list of a kind the
// loader reads, such as TrafficPolicyList.
func isList(gvk schema.GroupVersionKind) bool {
	if gvk == (schema.GroupVersionKind{Version: "v1", Kind: "List"}) {
		return true
	}
	elem, ok := strings.CutSuffix(gvk.Kind, "List")
	if !ok {
		return false
	}
	_, known := newObject(gvk.GroupVersion().WithKind(elem))
	return known
}

// newObject returns an empty object of the type a kind decodes into, and
// whether the kind is one the loader decodes.
func newObject(gvk schema.GroupVersionKind) (runtime.Object, bool) {
	switch gvk {
	case CiliumNetworkPolicy:
		return &v1alpha1.TrafficPolicy{}, true
	case CiliumClusterwideNetworkPolicy:
		return &v1alpha1.ClusterTrafficPolicy{}, true
	case corev1.SchemeGroupVersion.WithKind("Namespace"):
		return &corev1.Namespace{}, true
	}
	if k, ok := v1alpha1.KindOf(gvk.Kind); ok && gvk.GroupVersion() == v1alpha1.GroupVersion {
		return k.New(), true
	}
	return nil, false
}

func unknownKind(gvk schema.GroupVersionKind) error {
	for _, gv := range []schema.GroupVersion{v1alpha1.GroupVersion, CiliumNetworkPolicy.GroupVersion(), corev1.SchemeGroupVersion} {
		if _, ok := newObject(gv.WithKind(gvk.Kind)); ok && gv.Group == gvk.Group {
			return fmt.Errorf("%w %q: apiVersion %q is not known; use %q", ErrUnknownKind, gvk.Kind, gvk.GroupVersion().String(), gv.String())
		}
	}
	known := "the loader reads TrafficPolicy, ClusterTrafficPolicy and AdminTrafficPolicy (policy.portcullis.dev/v1alpha1), " +
		"CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2) and Namespace (v1)"
	return fmt.Errorf("%w %q (apiVersion %q): %s", ErrUnknownKind, gvk.Kind, gvk.GroupVersion().String(), known)
}

// decode converts, defaults, validates and decodes one object of a kind
// the loader reads.
func (st *state) decode(doc Document, gvk schema.GroupVersionKind, m map[string]any) {
	obj, _ := newObject(gvk)
	u := &unstructured.Unstructured{Object: m}
	var errs []fieldErr
	switch gvk {
	case CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy:
		errs = append(errs, convertCilium(u)...)
	case v1alpha1.GroupVersion.WithKind(v1alpha1.TrafficPolicyKind), v1alpha1.GroupVersion.WithKind(v1alpha1.ClusterTrafficPolicyKind):
		// Same rule shape: name Cilium-only fields as such rather than as
		// unknown fields.
		errs = append(errs, unsupportedFields(m)...)
	}

	_, namespaced := obj.(*v1alpha1.TrafficPolicy)
	if m["metadata"] == nil {
		m["metadata"] = map[string]any{}
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		ns, _ := md["namespace"].(string)
		switch {
		case namespaced && ns == "":
			md["namespace"] = metav1.NamespaceDefault
			doc.Source.Namespace = metav1.NamespaceDefault
		case !namespaced && md["namespace"] != nil:
			delete(md, "namespace")
			doc.Source.Namespace = ""
			st.warn(doc.Source, "metadata.namespace ignored: %s is cluster-scoped", kindOf(obj))
		}
	}

	// The hook sees the document before typed decoding; its reports come
	// after the loader's own, which name Cilium-only fields as such and
	// suggest corrections for unknown ones.
	var hookErrs []fieldErr
	if st.l.Validate != nil && !isNamespace(obj) {
		hookErrs = fieldErrs(st.l.Validate(u.DeepCopy()))
	}
	strict := checkStrict(nil, m, reflect.TypeOf(obj).Elem())
	errs = addErrs(errs, strict)
	errs = addErrs(errs, hookErrs)
	if len(strict) == 0 {
		if err := decodeInto(m, obj); err != nil {
			errs = append(errs, fieldErr{err: err})
		} else {
			errs = addErrs(errs, fieldErrs(validateMeta(obj)))
		}
	}
	if len(errs) > 0 {
		for _, e := range errs {
			st.fail(doc.Source, e.path, e.err)
		}
		return
	}
	doc.Object = obj
	st.res.Documents = append(st.res.Documents, doc)
}

func kindOf(obj runtime.Object) string {
	return reflect.TypeOf(obj).Elem().Name()
}

func isNamespace(obj runtime.Object) bool {
	_, ok := obj.(*corev1.Namespace)
	return ok
}

// addErrs appends the errors of more whose path is not at or inside the
// path of an error already in errs.
func addErrs(errs, more []fieldErr) []fieldErr {
	n := len(errs)
next:
	for _, e := range more {
		for _, old := range errs[:n] {
			if old.path != "" && (e.path == old.path || strings.HasPrefix(e.path, old.path+".") || strings.HasPrefix(e.path, old.path+"[")) {
				continue next
			}
		}
		errs = append(errs, e)
	}
	return errs
}

// decodeInto decodes an object that checkStrict accepted.
func decodeInto(m map[string]any, obj runtime.Object) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding document: %w", err)
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(b, obj); err != nil {
		return fmt.Errorf("decoding document: %w", err)
	}
	return nil
}

// validateMeta checks metadata as the API server would: a name (a DNS
// label for a Namespace, a DNS subdomain otherwise), valid labels and
// annotations.
func validateMeta(obj runtime.Object) field.ErrorList {
	acc, err := meta(obj)
	if err != nil {
		return nil
	}
	if _, ok := obj.(*corev1.Namespace); ok {
		return apivalidation.ValidateObjectMetaAccessor(acc, false, apivalidation.ValidateNamespaceName, field.NewPath("metadata"))
	}
	_, namespaced := obj.(*v1alpha1.TrafficPolicy)
	return apivalidation.ValidateObjectMetaAccessor(acc, namespaced, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
}

func meta(obj runtime.Object) (metav1.Object, error) {
	acc, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return acc, nil
}

// splitYAML cuts a YAML stream at "---" lines, as kubectl does: a line
// starting with "---" followed by nothing but blanks or a comment.
type chunk struct {
	text []byte
	line int // 1-based line of the first line of text
}

func splitYAML(data []byte) []chunk {
	var out []chunk
	start, startLine, line := 0, 1, 1
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if end >= 0 {
			next = i + end + 1
		}
		l := data[i:next]
		if rest, ok := bytes.CutPrefix(l, []byte("---")); ok {
			rest = bytes.TrimSpace(rest)
			if len(rest) == 0 || rest[0] == '#' {
				out = append(out, chunk{text: data[start:i], line: startLine})
				start, startLine = next, line+1
			}
		}
		i = next
		line++
	}
	return append(out, chunk{text: data[start:], line: startLine})
}

// isEmptyYAML reports whether a document holds only blanks and comments.
func isEmptyYAML(text []byte) bool {
	for l := range bytes.Lines(text) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("...")) {
			return false
		}
	}
	return true
}

func skipBlank(data []byte, off int64) int64 {
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
		off++
	}
	return off
}

// lineAt returns the 1-based line of a byte offset.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// finish checks for duplicates across the whole load and returns the
// result or the errors.
func (st *state) finish() (*Result, error) {
	type key struct {
		gk       schema.GroupKind
		ns, name string
	}
	seen := map[key]int{}
	kept := st.res.Documents[:0]
	for _, d := range st.res.Documents {
		acc, err := meta(d.Object)
		if err != nil {
			kept = append(kept, d)
			continue
		}
		k := key{d.Object.GetObjectKind().GroupVersionKind().GroupKind(), acc.GetNamespace(), acc.GetName()}
		if k.gk.Empty() {
			k.gk = schema.GroupKind{Kind: kindOf(d.Object)}
		}
		i, dup := seen[k]
		if !dup {
			seen[k] = len(kept)
			kept = append(kept, d)
			continue
		}
		first := kept[i]
		if reflect.DeepEqual(first.Object, d.Object) {
			st.res.Skipped = append(st.res.Skipped, d)
			st.warn(d.Source, "identical to %s; ignored", first.Source)
			continue
		}
		st.fail(d.Source, "", fmt.Errorf("%w: %s %s is also defined, differently, at %s", ErrDuplicate, k.gk.Kind, nsName(k.ns, k.name), first.Source))
	}
	st.res.Documents = kept
	if len(st.errs) > 0 {
		return nil, st.errs
	}
	return &st.res, nil
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
