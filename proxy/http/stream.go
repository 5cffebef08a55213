package http

import (
	"bufio"
	"io"
	"net"
	"net/http/httputil"
	"time"
)

// writerOnly hides a writer's ReadFrom so that io.CopyBuffer uses the
// pooled buffer instead of allocating one. It keeps the writer's error,
// so that a copy can tell which side failed.
type writerOnly struct {
	io.Writer
	err error
}

func (w *writerOnly) Write(p []byte) (int, error) {
	n, err := w.Writer.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// readError is a copy that failed on its reading side (the client's, for
// a request body).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// limit returns the connection's reused LimitedReader on r.
func (h *h1conn) limit(r io.Reader, n int64) io.Reader {
	h.lr = io.LimitedReader{R: r, N: n}
	return &h.lr
}

// copyBody copies n bytes from r to w with a pooled buffer. A body that
// is already buffered is copied straight from the reader's buffer.
func (h *h1conn) copyBody(w io.Writer, r io.Reader, n int64) error {
	if lr, ok := r.(*io.LimitedReader); ok {
		if br, ok := lr.R.(*bufio.Reader); ok && lr.N > 0 && int64(br.Buffered()) >= lr.N {
			b, _ := br.Peek(int(lr.N))
			if _, err := w.Write(b); err != nil {
				return err
			}
			br.Discard(len(b))
			return nil
		}
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	h.wo.Writer, h.wo.err = w, nil
	m, err := io.CopyBuffer(&h.wo, r, *bp)
	werr := h.wo.err
	h.wo.Writer, h.wo.err = nil, nil
	if err == nil && m < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && werr == nil {
		err = &readError{err}
	}
	return err
}

// copyChunked decodes a chunked body from br and writes it chunked to w,
// followed by its trailer section.
func (h *h1conn) copyChunked(w io.Writer, br *bufio.Reader) error {
	cw := httputil.NewChunkedWriter(&writerOnly{Writer: w})
	if err := h.copyBody(cw, httputil.NewChunkedReader(br), 0); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	return copyTrailer(w, br, h.s.o.MaxHeaderBytes, h.s.o.MaxHeaderCount)
}

// copyTrailer reads a trailer section from br and writes its fields, and
// the final empty line, to w.
func copyTrailer(w io.Writer, br *bufio.Reader, maxBytes, maxFields int) error {
	var buf [512]byte
	tr, err := readHead(br, buf[:0], maxBytes, maxFields, false)
	if err != nil {
		return &readError{err}
	}
	rest := tr
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLineB(rest)
		if len(line) == 0 {
			break
		}
		i := indexColon(line)
		if i <= 0 || !isToken(string(line[:i])) || !validValue(string(line[i+1:])) {
			return errBadResponse
		}
		name := line[:i]
		if asciiFold(name, "Content-Length") || asciiFold(name, "Transfer-Encoding") || asciiFold(name, "Host") {
			continue
		}
		w.Write(line)
		w.Write(crlf)
	}
	_, err = w.Write(crlf)
	return err
}

var crlf = []byte("\r\n")

func indexColon(b []byte) int {
	for i, c := range b {
		if c == ':' {
			return i
		}
	}
	return -1
}

// copyResponseBody relays the response body to the client.
func (h *h1conn) copyResponseBody(u *upConn, resp *response, bodyless, chunkOut bool) error {
	switch {
	case bodyless:
		return nil
	case resp.chunked && chunkOut:
		return h.copyChunked(h.bw, u.br)
	case resp.chunked:
		if err := h.copyBody(h.bw, httputil.NewChunkedReader(u.br), 0); err != nil {
			return err
		}
		var discard [512]byte
		_, err := readHead(u.br, discard[:0], h.s.o.MaxHeaderBytes, h.s.o.MaxHeaderCount, false)
		return err
	case resp.contentLength >= 0:
		return h.copyBody(h.bw, h.limit(u.br, resp.contentLength), resp.contentLength)
	default:
		return h.copyBody(h.bw, u.br, 0)
	}
}

// splice passes the bytes of an upgraded connection both ways until both
// directions end.
func (h *h1conn) splice(u *upConn, resp *response) {
	h.writeResponseHead(resp, false, false)
	if h.bw.Flush() != nil {
		u.close()
		return
	}
	h.dc.mode = modeNone
	h.dc.Conn.SetDeadline(time.Time{})
	u.dc.mode = modeNone
	u.c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(u.c, h.br)
		closeWrite(u.c)
	}()
	io.Copy(h.dc.Conn, u.br)
	closeWrite(h.dc.Conn)
	<-done
	u.close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
