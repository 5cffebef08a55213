package loader

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// checkStrict compares a decoded JSON value (as produced by
// k8s.io/apimachinery/pkg/util/json: maps, slices, strings, bools, int64,
// float64, nil) with the Go type it is to be decoded into, and returns
// every unknown field and every value of the wrong type, each with its
// path. encoding/json would stop at the first type error and report paths
// without list indexes; this reports them all, with indexes.
func checkStrict(path *field.Path, v any, t reflect.Type) []fieldErr {
	if v == nil {
		return nil // null decodes to the zero value
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// Types with their own decoding (IntOrString, Time, FieldsV1):
		// let them judge.
		b, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(b, reflect.New(t).Interface())
		}
		if err != nil {
			return []fieldErr{{path.String(), fmt.Errorf("%w: %s", ErrWrongType, trimJSONErr(err))}}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkStrict(path, v, t.Elem())
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return wrongType(path, v, "object")
		}
		fields := structFields(t)
		var errs []fieldErr
		for _, k := range sortedKeys(m) {
			f, ok := fields[k]
			if !ok {
				errs = append(errs, fieldErr{path.Child(k).String(), unknownField(k, fields)})
				continue
			}
			errs = append(errs, checkStrict(path.Child(k), m[k], f)...)
		}
		return errs
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return wrongType(path, v, "object")
		}
		var errs []fieldErr
		for _, k := range sortedKeys(m) {
			errs = append(errs, checkStrict(path.Key(k), m[k], t.Elem())...)
		}
		return errs
	case reflect.Slice, reflect.Array:
		l, ok := v.([]any)
		if !ok {
			return wrongType(path, v, "list")
		}
		var errs []fieldErr
		for i, e := range l {
			errs = append(errs, checkStrict(path.Index(i), e, t.Elem())...)
		}
		return errs
	case reflect.String:
		if _, ok := v.(string); !ok {
			return wrongType(path, v, "string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return wrongType(path, v, "boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			return wrongType(path, v, "integer")
		}
		if reflect.Zero(t).OverflowInt(n) {
			return []fieldErr{{path.String(), fmt.Errorf("%w: %d is out of range for a %d-bit integer", ErrWrongType, n, t.Bits())}}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		if !ok || n < 0 {
			return wrongType(path, v, "non-negative integer")
		}
		if reflect.Zero(t).OverflowUint(uint64(n)) {
			return []fieldErr{{path.String(), fmt.Errorf("%w: %d is out of range for a %d-bit integer", ErrWrongType, n, t.Bits())}}
		}
	case reflect.Float32, reflect.Float64:
		switch n := v.(type) {
		case int64:
		case float64:
			if t.Kind() == reflect.Float32 && math.Abs(n) > math.MaxFloat32 {
				return wrongType(path, v, "32-bit number")
			}
		default:
			return wrongType(path, v, "number")
		}
	case reflect.Interface:
		// anything goes
	default:
		return []fieldErr{{path.String(), fmt.Errorf("%w: cannot decode into %s", ErrWrongType, t)}}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func wrongType(path *field.Path, v any, want string) []fieldErr {
	return []fieldErr{{path.String(), fmt.Errorf("%w: got %s, want %s", ErrWrongType, describe(v), want)}}
}

// describe names a decoded JSON value for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("number %d", v)
	case float64:
		return fmt.Sprintf("number %g", v)
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case map[string]any:
		return "object"
	case []any:
		return "list"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func trimJSONErr(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

// unknownField is ErrUnknownField with a hint when a known field is close.
func unknownField(k string, fields map[string]reflect.Type) error {
	best, bestD := "", 3
	for name := range fields {
		if d := editDistance(strings.ToLower(k), strings.ToLower(name)); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best != "" && bestD <= 2 {
		return fmt.Errorf("%w (did you mean %q?)", ErrUnknownField, best)
	}
	return ErrUnknownField
}

// editDistance is the Levenshtein distance, for short names only.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// structFields maps the JSON names of a struct's fields, inlined
// (embedded) structs included, to their types, as encoding/json sees them.
func structFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addStructFields(t, m)
	fieldCache.Store(t, m)
	return m
}

func addStructFields(t reflect.Type, m map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addStructFields(ft, m)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := m[name]; !dup {
			m[name] = f.Type
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
