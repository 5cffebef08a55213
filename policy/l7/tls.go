package l7

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ServerNameMatcher matches a TLS server name (SNI) against one
// serverNames entry: an exact name, "*.name" for exactly one more label,
// or "**.name" for one or more more labels. Matching is ASCII
// case-insensitive; a trailing dot is ignored. A "*" anywhere else is
// invalid, as in the CRD.
type ServerNameMatcher struct {
	m NameMatcher
}

// CompileServerName compiles one serverNames entry; fld is its path, e.g.
// spec.egress[0].toPorts[0].serverNames[2].
func CompileServerName(pattern string, fld *field.Path) (*ServerNameMatcher, field.ErrorList) {
	rest := pattern
	for _, p := range []string{"**.", "*."} {
		if r, ok := strings.CutPrefix(pattern, p); ok {
			rest = r
			break
		}
	}
	if strings.TrimSuffix(rest, ".") == "" {
		return nil, field.ErrorList{field.Invalid(fld, pattern, "must name at least one label")}
	}
	if strings.Contains(rest, "*") {
		return nil, field.ErrorList{field.Invalid(fld, pattern, `"*" is only allowed as a leading "*." or "**."`)}
	}
	m, errs := compileMatchPattern(pattern, true, fld)
	if len(errs) > 0 {
		return nil, errs
	}
	return &ServerNameMatcher{m: *m}, nil
}

// Match reports whether the server name sni matches. An empty SNI (a
// client that sent none, or no TLS at all) never matches.
func (s *ServerNameMatcher) Match(sni string) bool {
	return s != nil && s.m.Match(sni)
}

// String returns the pattern, lower-cased and without a trailing dot.
func (s *ServerNameMatcher) String() string {
	if s == nil {
		return "<nil>"
	}
	return asciiLower(strings.TrimSuffix(s.m.src, "."))
}

// ServerNames is a set of server-name patterns, kept sorted and without
// duplicates by [CompileServerNames]. A rule whose ServerNames is empty is
// not restricted by server name; Match on an empty set is false.
type ServerNames []*ServerNameMatcher

// CompileServerNames compiles a serverNames list; fld is the list's path.
// The result is sorted and de-duplicated, so equal sets compare equal by
// String.
func CompileServerNames(names []string, fld *field.Path) (ServerNames, field.ErrorList) {
	var (
		out  ServerNames
		errs field.ErrorList
	)
	for i, n := range names {
		m, e := CompileServerName(n, fld.Index(i))
		errs = append(errs, e...)
		if m != nil {
			out = append(out, m)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	slices.SortFunc(out, func(a, b *ServerNameMatcher) int { return strings.Compare(a.String(), b.String()) })
	out = slices.CompactFunc(out, func(a, b *ServerNameMatcher) bool { return a.String() == b.String() })
	return out, nil
}

// Match reports whether sni matches any pattern of the set.
func (s ServerNames) Match(sni string) bool {
	for _, m := range s {
		if m.Match(sni) {
			return true
		}
	}
	return false
}

// admits reports whether a rule guarded by s applies to a connection with
// server name sni: an empty set admits every connection, TLS or not.
func (s ServerNames) admits(sni string) bool {
	return len(s) == 0 || s.Match(sni)
}

// String returns the set as "[a,b]", in its sorted order.
func (s ServerNames) String() string {
	parts := make([]string, len(s))
	for i, m := range s {
		parts[i] = m.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}
