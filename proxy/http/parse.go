package http

// HTTP/1.1 message heads are read by hand on top of bufio rather than by
// net/http's server, because a proxy must see what net/http hides: its
// server accepts Content-Length together with Transfer-Encoding by
// dropping Content-Length (a request-smuggling vector when the upstream
// parses differently), folds obsolete line folding, and has no limit on
// the number of fields. Reading the head ourselves also lets the proxy
// keep the fields in their order and forward them without building a
// net/http Request per request. Bodies use net/http/httputil's chunked
// reader and writer.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	nethttp "net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// httpError is a request the proxy refuses before deciding it: the status
// to answer and why. The connection is closed afterwards.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return strconv.Itoa(e.status) + " " + e.msg }

func badRequest(msg string) error { return &httpError{status: 400, msg: msg} }

var (
	errHeadTooLarge  = &httpError{status: 431, msg: "header section too large"}
	errTooManyFields = &httpError{status: 431, msg: "too many header fields"}
)

// readHead appends the lines of a header section to buf, up to and
// including the empty line, and returns buf. A request may be preceded by
// empty lines (RFC 9112 §2.2), which skipLeading drops. Limits: maxBytes in
// all and maxLines lines. io.EOF before any byte means the peer closed
// cleanly.
func readHead(br *bufio.Reader, buf []byte, maxBytes, maxLines int, skipLeading bool) ([]byte, error) {
	lines := 0
	lineStart := len(buf)
	start := len(buf)
	skipped := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)-start+len(frag) > maxBytes {
			return buf, errHeadTooLarge
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) > start {
				return buf, badRequest("unexpected end of header section")
			}
			return buf, err
		}
		line := buf[lineStart:]
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			if skipLeading && lines == 0 && skipped < 4 {
				skipped++
				buf = buf[:lineStart]
				continue
			}
			return buf, nil
		}
		lines++
		if lines > maxLines+1 { // +1: the request or status line
			return buf, errTooManyFields
		}
		lineStart = len(buf)
	}
}

// nextLine splits s at its first "\n", dropping a "\r" before it.
func nextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// field is one header field of a request, name in canonical form.
type field struct{ name, value string }

// request is one parsed HTTP/1.1 request head. Its strings point into one
// string holding the whole head, and its slices and map are reused across
// the requests of a connection.
type request struct {
	method, target string
	// minor is the HTTP/1.x minor version.
	minor int
	// path is the target in origin form; host the Host header, or the
	// authority of an absolute-form target.
	path, host string
	absolute   bool
	fields     []field
	header     nethttp.Header
	vals       []string
	// contentLength is -1 without a Content-Length.
	contentLength int64
	chunked       bool
	// close: the client asked to close after this request.
	close          bool
	expectContinue bool
	// upgrade is the Upgrade header of a request whose Connection names
	// upgrade.
	upgrade string
	// dropped names fields the Connection header lists (hop-by-hop).
	dropped []string
}

func (r *request) reset() {
	*r = request{fields: r.fields[:0], header: r.header, vals: r.vals[:0], dropped: r.dropped[:0], contentLength: -1}
	if r.header == nil {
		r.header = nethttp.Header{}
	} else {
		clear(r.header)
	}
}

// hasBody reports whether a body follows the head.
func (r *request) hasBody() bool { return r.chunked || r.contentLength > 0 }

func isTokenChar(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// validValue reports whether v is a field value without controls other
// than HTAB (a bare CR or a NUL in a value is refused, not passed on).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseRequest parses a request head (as read by readHead) into r.
// Anything ambiguous is refused: a proxy that guesses differently from the
// upstream lets requests be smuggled past the policy.
func parseRequest(head string, r *request, maxFields int) error {
	r.reset()
	line, rest := nextLine(head)
	m, after, ok := strings.Cut(line, " ")
	if !ok {
		return badRequest("malformed request line")
	}
	target, proto, ok := strings.Cut(after, " ")
	if !ok || strings.IndexByte(proto, ' ') >= 0 {
		return badRequest("malformed request line")
	}
	if !isToken(m) {
		return badRequest("invalid method")
	}
	r.method, r.target = m, target
	switch proto {
	case "HTTP/1.1":
		r.minor = 1
	case "HTTP/1.0":
		r.minor = 0
		r.close = true
	default:
		if strings.HasPrefix(proto, "HTTP/") {
			return &httpError{status: 505, msg: "HTTP version not supported"}
		}
		return badRequest("malformed request line")
	}
	if target == "" {
		return badRequest("empty request target")
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return badRequest("invalid request target")
		}
	}
	if m == "CONNECT" {
		return &httpError{status: 501, msg: "CONNECT is not supported"}
	}
	switch {
	case target[0] == '/':
		r.path = target
	case target == "*" && m == "OPTIONS":
		r.path = target
	case len(target) > 7 && strings.EqualFold(target[:7], "http://"):
		auth := target[7:]
		i := strings.IndexAny(auth, "/?#")
		p := "/"
		if i >= 0 {
			auth, p = auth[:i], auth[i:]
			if p[0] == '?' {
				p = "/" + p
			}
		}
		if auth == "" || strings.IndexByte(auth, '@') >= 0 || p[0] == '#' {
			return badRequest("invalid absolute-form target")
		}
		r.path, r.host, r.absolute = p, auth, true
	default:
		return badRequest("invalid request target")
	}

	hosts := 0
	var te string
	tes := 0
	connUpgrade := false
	keepAlive, closeTok := false, false
	for rest != "" {
		line, rest = nextLine(rest)
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return badRequest("obsolete line folding")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return badRequest("malformed header field")
		}
		value = trimOWS(value)
		if !validValue(value) {
			return badRequest("invalid header field value")
		}
		if len(r.fields) >= maxFields {
			return errTooManyFields
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		r.fields = append(r.fields, field{name, value})
		if vs, ok := r.header[name]; ok {
			r.header[name] = append(vs, value)
		} else {
			n := len(r.vals)
			r.vals = append(r.vals, value)
			r.header[name] = r.vals[n : n+1 : n+1]
		}
		switch name {
		case "Host":
			hosts++
			if !r.absolute {
				r.host = value
			}
		case "Content-Length":
			for v := range strings.SplitSeq(value, ",") {
				v = trimOWS(v)
				n, ok := parseLength(v)
				if !ok {
					return badRequest("invalid Content-Length")
				}
				if r.contentLength >= 0 && n != r.contentLength {
					return badRequest("conflicting Content-Length fields")
				}
				r.contentLength = n
			}
		case "Transfer-Encoding":
			te = value
			tes++
		case "Connection":
			for tok := range strings.SplitSeq(value, ",") {
				tok = trimOWS(tok)
				switch {
				case tok == "":
				case strings.EqualFold(tok, "close"):
					r.close, closeTok = true, true
				case strings.EqualFold(tok, "keep-alive"):
					keepAlive = true
				case strings.EqualFold(tok, "upgrade"):
					connUpgrade = true
				case !isToken(tok):
					return badRequest("invalid Connection field")
				default:
					r.dropped = append(r.dropped, tok)
				}
			}
		case "Expect":
			if !strings.EqualFold(value, "100-continue") {
				return &httpError{status: 417, msg: "unsupported expectation"}
			}
			r.expectContinue = r.minor == 1
		case "Upgrade":
			r.upgrade = value
		}
	}
	if r.minor == 0 && keepAlive && !closeTok {
		r.close = false
	}
	if !connUpgrade || upgradesToH2C(r.upgrade) {
		// An HTTP/1.1 upgrade to h2c would turn the rest of the
		// connection into HTTP/2 spliced past the proxy's verdicts: the
		// request goes on as a plain one, as Envoy does.
		r.upgrade = ""
	}
	if tes > 0 {
		switch {
		case r.minor == 0:
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		case tes > 1 || !strings.EqualFold(te, "chunked"):
			return badRequest("unsupported Transfer-Encoding")
		case r.contentLength >= 0:
			return badRequest("both Content-Length and Transfer-Encoding")
		}
		r.chunked = true
	}
	if hosts > 1 {
		return badRequest("several Host fields")
	}
	if hosts == 0 && r.minor == 1 && !r.absolute {
		return badRequest("missing Host field")
	}
	if r.upgrade != "" && r.hasBody() {
		return badRequest("an Upgrade request with a body")
	}
	return nil
}

func upgradesToH2C(v string) bool {
	for tok := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(trimOWS(tok), "h2c") {
			return true
		}
	}
	return false
}

// parseLength parses a Content-Length value: digits only, at most 18.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hopByHopFields are the fields meaningful for one connection only, never
// forwarded as is, in both directions: the ones RFC 9110 §7.6.1 names
// (Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding,
// Upgrade) and HTTP2-Settings, which RFC 9113 §3.2.1 makes
// connection-specific (it only accompanies an h2c upgrade of one hop).
// Transfer-Encoding is also among them because the proxy reframes bodies
// itself; the fields a Connection field names are dropped on top of these.
// The names are canonical (textproto.CanonicalMIMEHeaderKey), the form
// request field names are parsed into.
var hopByHopFields = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Http2-Settings"}

// hopByHop reports whether a canonical request field name is one of
// hopByHopFields.
func hopByHop(name string) bool {
	for _, h := range hopByHopFields {
		if name == h {
			return true
		}
	}
	return false
}

// hopByHopB reports whether a response field name, in any case, is one of
// hopByHopFields.
func hopByHopB(name []byte) bool {
	for _, h := range hopByHopFields {
		if asciiFold(name, h) {
			return true
		}
	}
	return false
}

// response is one parsed HTTP/1.1 response head from an upstream, as byte
// slices of the reused head buffer.
type response struct {
	status int
	minor  int
	// statusLine is the status line without the version ("200 OK").
	statusLine []byte
	fields     [][2][]byte
	// contentLength is -1 without a Content-Length.
	contentLength int64
	chunked       bool
	close         bool
	dropped       [][]byte
}

var errBadResponse = errors.New("malformed response from upstream")

func (r *response) parse(head []byte, maxFields int) error {
	*r = response{fields: r.fields[:0], dropped: r.dropped[:0], contentLength: -1}
	line, rest := nextLineB(head)
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return errBadResponse
	}
	switch line[7] {
	case '0':
		r.minor = 0
		r.close = true
	case '1':
		r.minor = 1
	default:
		return errBadResponse
	}
	st := line[9:12]
	if st[0] < '1' || st[0] > '9' || st[1] < '0' || st[1] > '9' || st[2] < '0' || st[2] > '9' {
		return errBadResponse
	}
	r.status = int(st[0]-'0')*100 + int(st[1]-'0')*10 + int(st[2]-'0')
	if len(line) > 12 && (line[12] != ' ' || !validValue(string(line[13:]))) {
		return errBadResponse // a bare CR in the reason could end the line for a client
	}
	r.statusLine = line[9:]
	keepAlive := false
	tes := 0
	var te []byte
	for len(rest) > 0 {
		line, rest = nextLineB(rest)
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || line[0] == ' ' || line[0] == '\t' || !isToken(string(line[:i])) {
			return errBadResponse
		}
		name, value := line[:i], bytes.Trim(line[i+1:], " \t")
		if !validValue(string(value)) {
			return errBadResponse
		}
		if len(r.fields) >= maxFields {
			return errBadResponse
		}
		r.fields = append(r.fields, [2][]byte{name, value})
		switch {
		case asciiFold(name, "Content-Length"):
			for v := range bytes.SplitSeq(value, []byte(",")) {
				n, ok := parseLength(string(bytes.Trim(v, " \t")))
				if !ok || (r.contentLength >= 0 && n != r.contentLength) {
					return errBadResponse
				}
				r.contentLength = n
			}
		case asciiFold(name, "Transfer-Encoding"):
			te = value
			tes++
		case asciiFold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case len(tok) == 0:
				case asciiFold(tok, "close"):
					r.close = true
				case asciiFold(tok, "keep-alive"):
					keepAlive = true
				default:
					r.dropped = append(r.dropped, tok)
				}
			}
		}
	}
	if r.minor == 0 && keepAlive {
		r.close = false
	}
	if tes > 0 {
		if tes > 1 || !asciiFold(te, "chunked") {
			return errBadResponse
		}
		r.chunked = true
		r.contentLength = -1
	}
	return nil
}

// bodyless reports whether a response to method has no body whatever its
// fields say (RFC 9112 §6.3).
func (r *response) bodyless(method string) bool {
	return method == "HEAD" || r.status < 200 || r.status == 204 || r.status == 304
}

func nextLineB(s []byte) (line, rest []byte) {
	i := bytes.IndexByte(s, '\n')
	if i < 0 {
		return s, nil
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func asciiFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
