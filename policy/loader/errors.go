package loader

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Sentinel causes of an Error; test with errors.Is.
var (
	// ErrSyntax is a YAML or JSON syntax error (including a duplicate key).
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownField is a field that the kind does not have.
	ErrUnknownField = errors.New("unknown field")
	// ErrUnsupportedField is a Cilium field that Portcullis does not
	// implement.
	ErrUnsupportedField = errors.New("not supported by Portcullis")
	// ErrWrongType is a value of the wrong JSON type, such as a number
	// where a string is due.
	ErrWrongType = errors.New("wrong type")
	// ErrUnknownKind is a kind the loader does not read.
	ErrUnknownKind = errors.New("unknown kind")
	// ErrDuplicate is a second, different object with the same kind,
	// namespace and name.
	ErrDuplicate = errors.New("duplicate object")
	// ErrNotObject is a document that is not a mapping.
	ErrNotObject = errors.New("document is not an object")
)

// Source says where a document came from.
type Source struct {
	// File is the path as given or found in a directory, or "<stdin>".
	File string
	// Doc is the 1-based number of the document in the file; 0 when the
	// problem concerns the whole file.
	Doc int
	// Item is the 1-based position in the items of a List document; 0
	// when the document is not a List item.
	Item int
	// Line is the 1-based line of the file where the document starts; 0
	// if unknown.
	Line int
	// Kind is the kind as written, e.g. CiliumNetworkPolicy for a policy
	// converted to TrafficPolicy.
	Kind string
	// Namespace is metadata.namespace after defaulting; empty for
	// cluster-scoped kinds.
	Namespace string
	// Name is metadata.name.
	Name string
}

// String renders the source as `FILE: document N, item M (Kind ns/name)`,
// leaving out what is unknown.
func (s Source) String() string {
	var b strings.Builder
	b.WriteString(s.File)
	if s.Doc > 0 {
		b.WriteString(": document ")
		b.WriteString(strconv.Itoa(s.Doc))
		if s.Item > 0 {
			b.WriteString(", item ")
			b.WriteString(strconv.Itoa(s.Item))
		}
	}
	if s.Kind != "" || s.Name != "" {
		b.WriteString(" (")
		b.WriteString(s.Kind)
		if s.Name != "" {
			if s.Kind != "" {
				b.WriteByte(' ')
			}
			if s.Namespace != "" {
				b.WriteString(s.Namespace)
				b.WriteByte('/')
			}
			b.WriteString(s.Name)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// Error is one problem with one document (or file).
type Error struct {
	// Source locates the document; Kind, Namespace and Name are set when
	// known.
	Source Source
	// Line is the 1-based line in the file the problem was found at, for
	// syntax errors; 0 if unknown.
	Line int
	// Field is the path of the offending field, such as
	// spec.ingress[0].toPorts[0].ports[0].port; empty if none.
	Field string
	// Err is the cause: one of the ErrX sentinels (possibly wrapped), a
	// *field.Error from validation, or an I/O error.
	Err error
}

// Error renders `FILE: document N (Kind ns/name): [line L: ][FIELD: ]CAUSE`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source.String())
	b.WriteString(": ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	var fe *field.Error
	switch {
	case errors.As(e.Err, &fe) && (fe.Field == "" || fe.Field == "<nil>"):
		// An error about the whole object (a nil field.Path).
		b.WriteString(fe.ErrorBody())
	case errors.As(e.Err, &fe):
		// field.Error renders its own path.
		b.WriteString(fe.Error())
	case e.Field != "":
		b.WriteString(e.Field)
		b.WriteString(": ")
		b.WriteString(errString(e.Err))
	default:
		b.WriteString(errString(e.Err))
	}
	return b.String()
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found by one load, in file and document order.
// It is returned as the error of a failed load and is never empty then.
type Errors []*Error

// Error renders one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.Is and errors.As look at
// each of them.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Warning is something the loader did not take but that is not an error,
// such as a skipped Deployment.
type Warning struct {
	Source  Source
	Message string
}

// String renders the warning like an Error.
func (w Warning) String() string { return w.Source.String() + ": " + w.Message }

// fieldErr is a problem at a field path inside one document.
type fieldErr struct {
	path string
	err  error
}

func fieldErrs(list field.ErrorList) []fieldErr {
	out := make([]fieldErr, 0, len(list))
	for _, fe := range list {
		path := fe.Field
		if path == "<nil>" { // field.Error of a nil *field.Path
			path = ""
		}
		out = append(out, fieldErr{path: path, err: fe})
	}
	return out
}
