package http

import (
	"net/netip"
	"strings"
)

// EscapedSlashes says what the proxy does with a path holding an escaped
// slash or backslash (%2F, %5C), which upstreams decode differently (one
// sees a separator, another a character): Envoy's
// path_with_escaped_slashes_action.
type EscapedSlashes int

const (
	// EscapedSlashesReject refuses such a request with 400 (the default).
	EscapedSlashesReject EscapedSlashes = iota
	// EscapedSlashesKeep judges and forwards the escapes as they are.
	EscapedSlashesKeep
)

// normalizePath returns the path (with its query) that the proxy judges
// and forwards: escapes of unreserved characters decoded and other
// escapes' hex upper-cased (unless noNormalize), runs of slashes merged
// (unless noMerge), dot segments removed as RFC 3986 §5.2.4 does (unless
// noNormalize). A backslash, an escaped slash or backslash (unless kept)
// or a malformed escape is an error: the message for a 400.
func normalizePath(target string, o *Options) (string, string) {
	if target == "" || target[0] != '/' {
		return target, "" // "*" of OPTIONS
	}
	p, q, hasQ := strings.Cut(target, "?")
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			return "", "backslash in the path"
		case c != '%':
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", "malformed percent-escape in the path"
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		i += 2
		switch {
		case v == '/' || v == '\\':
			if o.EscapedSlashes != EscapedSlashesKeep {
				return "", "escaped slash or backslash in the path"
			}
			b.WriteByte('%')
			b.WriteByte(upperHex[v>>4])
			b.WriteByte(upperHex[v&15])
		case o.NoNormalizePath:
			b.WriteString(p[i-2 : i+1])
		case isUnreserved(v):
			b.WriteByte(v)
		default:
			b.WriteByte('%')
			b.WriteByte(upperHex[v>>4])
			b.WriteByte(upperHex[v&15])
		}
	}
	out := b.String()
	if !o.NoMergeSlashes {
		out = mergeSlashes(out)
	}
	if !o.NoNormalizePath {
		out = removeDotSegments(out)
	}
	if hasQ {
		out += "?" + q
	}
	return out, ""
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// removeDotSegments is RFC 3986 §5.2.4 on an absolute path.
func removeDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// validHost reports whether a Host field or :authority is an RFC 3986
// host (reg-name, IPv4 address or bracketed IPv6 literal) with an
// optional port; empty is valid (HTTP/1.0 without Host).
func validHost(h string) bool {
	if h == "" {
		return true
	}
	host, port := h, ""
	if h[0] == '[' {
		i := strings.IndexByte(h, ']')
		if i < 0 {
			return false
		}
		a, err := netip.ParseAddr(h[1:i])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		host, port = "", h[i+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if port == "" {
				return false
			}
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if port == "" {
			return false
		}
	}
	if len(port) > 5 {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case isUnreserved(c), strings.IndexByte("!$&'()*+,;=", c) >= 0:
		case c == '%' && i+2 < len(host) && isHex(host[i+1]) && isHex(host[i+2]):
			i += 2
		default:
			return false
		}
	}
	return h[0] == '[' || host != ""
}

// hasUnderscore reports whether a header field name holds an underscore:
// some upstreams take X_User for X-User, so a policy on one could be
// passed by the other (Envoy's edge guidance rejects them too).
func hasUnderscore(name string) bool { return strings.IndexByte(name, '_') >= 0 }

// checkRequest normalizes an HTTP/1.1 request's path in place and refuses
// what the proxy will not interpret (400).
func (s *Server) checkRequest(r *request) error {
	p, msg := normalizePath(r.path, &s.o)
	if msg != "" {
		return badRequest(msg)
	}
	r.path = p
	if !validHost(r.host) {
		return badRequest("invalid Host")
	}
	if !s.o.AllowHeaderUnderscores {
		for _, f := range r.fields {
			if hasUnderscore(f.name) {
				return badRequest("underscore in a header field name")
			}
		}
	}
	return nil
}
