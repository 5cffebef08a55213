package tls

import (
	"bytes"
	"context"
	ctls "crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// maxHelloBytes bounds what is read to find the end of a ClientHello: a
// handshake message may span records, but no real ClientHello comes near
// this (one with post-quantum key shares is under 2 KiB).
const maxHelloBytes = 64 << 10

// errHelloRead stops crypto/tls once it has parsed the ClientHello.
var errHelloRead = errors.New("client hello read")

// ErrNotTLS: the first bytes of the connection are not a TLS handshake.
var ErrNotTLS = errors.New("not a TLS ClientHello")

// Hello is what the proxy learnt from a client's first flight.
type Hello struct {
	// ServerName is the SNI ("" when the client sent none).
	ServerName string
	// ALPN lists the protocols the client offered.
	ALPN []string
	// Raw are the bytes read from the connection, ClientHello first: they
	// are replayed to the upstream (pass-through) or to the terminating
	// handshake.
	Raw []byte
}

// ReadClientHello reads from r until it holds a whole ClientHello, parses
// it with crypto/tls (which also reassembles a hello that spans records)
// and returns it with every byte consumed. Nothing is written to the
// client. A stream that is not TLS, or not a well-formed ClientHello,
// is ErrNotTLS (wrapped with crypto/tls's reason).
func ReadClientHello(r io.Reader) (*Hello, error) {
	rec := &recorder{r: io.LimitReader(r, maxHelloBytes)}
	var h *Hello
	cfg := &ctls.Config{GetConfigForClient: func(chi *ctls.ClientHelloInfo) (*ctls.Config, error) {
		h = &Hello{ServerName: chi.ServerName, ALPN: append([]string(nil), chi.SupportedProtos...)}
		return nil, errHelloRead
	}}
	err := ctls.Server(rec, cfg).HandshakeContext(context.Background())
	if h == nil {
		if err == nil {
			err = errors.New("handshake ended without a ClientHello")
		}
		if rec.err != nil && !errors.Is(rec.err, io.EOF) {
			// The client's connection failed (a deadline, a reset): that
			// is the error, not what crypto/tls made of it.
			return nil, fmt.Errorf("reading the ClientHello: %w", rec.err)
		}
		return nil, fmt.Errorf("%w: %v", ErrNotTLS, err)
	}
	h.Raw = rec.buf.Bytes()
	return h, nil
}

// recorder is the connection crypto/tls reads the ClientHello from: reads
// come from r and are kept; writes (the alert crypto/tls sends when
// GetConfigForClient stops it) go nowhere.
type recorder struct {
	r   io.Reader
	buf bytes.Buffer
	err error
}

func (c *recorder) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.buf.Write(p[:n])
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *recorder) Write(p []byte) (int, error)      { return len(p), nil }
func (c *recorder) Close() error                     { return nil }
func (c *recorder) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *recorder) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *recorder) SetDeadline(time.Time) error      { return nil }
func (c *recorder) SetReadDeadline(time.Time) error  { return nil }
func (c *recorder) SetWriteDeadline(time.Time) error { return nil }

// replayConn is a client connection whose first bytes, already read, are
// read again first: the terminating handshake sees the ClientHello.
type replayConn struct {
	net.Conn
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite passes a half-close on to the TCP connection.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
