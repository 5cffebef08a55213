package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/proxy"
)

// ServeConn serves one DNS-over-TCP client connection from src to dst
// (the transparent listener's, dispatched by proxy.Proxy): each
// length-prefixed query is judged and answered in turn, allowed ones
// through one TCP connection to the server, opened at the first allowed
// query. It closes c when the client does, after IdleTimeout without a
// query, on a malformed message, or when the server is closed.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, src, dst netip.AddrPort) {
	if !s.track(c) {
		_ = c.Close()
		return
	}
	defer s.untrack(c)
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	closeOnDone := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer closeOnDone()

	up := &tcpUpstream{s: s, src: src}
	defer up.close()
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.o.IdleTimeout))
		msg, err := readTCPMessage(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
					s.connEvent(src, dst, "reading a query: "+err.Error()+": connection closed")
				}
			}
			return
		}
		resp := s.handle(ctx, msg, src, dst, "TCP", up.exchange)
		if resp == nil {
			// A stream that carried garbage (or a query that could not be
			// judged) has no reliable next message boundary: close it.
			return
		}
		if err := writeTCPMessage(c, resp); err != nil {
			s.connEvent(src, dst, "sending the answer: "+err.Error()+": connection closed")
			return
		}
	}
}

func (s *Server) connEvent(src, dst netip.AddrPort, reason string) {
	cp := &proxy.ConnPolicy{Source: proxy.Peer{Addr: src}, Destination: proxy.Peer{Addr: dst}}
	s.record(cp.Event(monitor.VerdictError, reason, "dns", nil))
}

// readTCPMessage reads one length-prefixed DNS message.
func readTCPMessage(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n == 0 {
		return nil, errors.New("zero-length message")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("a %d-byte message: %w", n, err)
	}
	return b, nil
}

func writeTCPMessage(w io.Writer, b []byte) error {
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	_, err := w.Write(out)
	return err
}

// tcpUpstream is the server-side connection of one client connection.
type tcpUpstream struct {
	s      *Server
	src    netip.AddrPort
	server netip.AddrPort
	c      net.Conn
	r      *bufio.Reader
}

// exchange sends one query and reads its answer. Any failure closes the
// connection (the next query opens a new one): after a timeout or a
// mismatched answer the stream's state is unknown.
func (u *tcpUpstream) exchange(ctx context.Context, server netip.AddrPort, msg []byte, id uint16) ([]byte, error) {
	if u.c != nil && u.server != server {
		u.close()
	}
	if u.c == nil {
		dctx, cancel := context.WithTimeout(ctx, u.s.o.Timeout)
		c, err := u.dial(dctx, server)
		cancel()
		if err != nil {
			return nil, err
		}
		u.c, u.r, u.server = c, bufio.NewReader(c), server
	}
	_ = u.c.SetDeadline(time.Now().Add(u.s.o.Timeout))
	stop := context.AfterFunc(ctx, func() { _ = u.c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeTCPMessage(u.c, msg); err != nil {
		u.close()
		return nil, err
	}
	b, err := readTCPMessage(u.r)
	if err != nil {
		u.close()
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil, fmt.Errorf("no answer within %s", u.s.o.Timeout)
		}
		return nil, err
	}
	if len(b) < 2 || messageID(b) != id {
		u.close()
		return nil, errors.New("an answer with another ID")
	}
	return b, nil
}

func (u *tcpUpstream) dial(ctx context.Context, server netip.AddrPort) (net.Conn, error) {
	if u.s.o.Dial != nil {
		return u.s.o.Dial(ctx, u.src, server)
	}
	d := net.Dialer{Control: markControl(u.s.o.Mark)}
	return d.DialContext(ctx, "tcp", server.String())
}

func (u *tcpUpstream) close() {
	if u.c != nil {
		_ = u.c.Close()
		u.c, u.r = nil, nil
	}
}
