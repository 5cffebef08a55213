package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/proxy"
)

// maxUDPMessage is the largest DNS message over UDP (EDNS0 allows up to
// 65535 bytes).
const maxUDPMessage = 65535

// ListenUDP opens the UDP socket the datapath assigns redirected DNS
// packets to: addr is normally 0.0.0.0:PORT, the proxy port (the
// datapath's socket lookup finds a socket bound to the wildcard address
// only). IP_TRANSPARENT lets it receive packets for any destination and
// IP_RECVORIGDSTADDR gives each packet's original destination. It needs
// CAP_NET_ADMIN.
func ListenUDP(ctx context.Context, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1); serr != nil {
				serr = fmt.Errorf("IP_TRANSPARENT: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); serr != nil {
				serr = fmt.Errorf("IP_RECVORIGDSTADDR: %w", serr)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("DNS proxy UDP socket on %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), nil
}

// ServeUDP reads queries from c (a socket from ListenUDP) until c or the
// server is closed, judging each in its own goroutine, and sends each
// answer from the address the client asked (the packet's original
// destination), so the client's resolver accepts it. It returns nil after
// Close.
func (s *Server) ServeUDP(c *net.UDPConn) error {
	if !s.track(c) {
		_ = c.Close()
		return nil
	}
	defer s.untrack(c)
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	sem := make(chan struct{}, s.o.MaxInFlight)
	buf := make([]byte, maxUDPMessage)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				if s.ctx.Err() != nil {
					return nil
				}
				return err
			}
			// A transient error (an ICMP error queued on the socket, ...):
			// keep serving.
			continue
		}
		src := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		dst, ok := origDst(oob[:oobn])
		if !ok {
			dst = local
		}
		select {
		case sem <- struct{}{}:
		default:
			cp := &proxy.ConnPolicy{Source: proxy.Peer{Addr: src}, Destination: proxy.Peer{Addr: dst}}
			e := cp.Event(monitor.VerdictDropped, fmt.Sprintf("too many queries in flight (limit %d): dropped", s.o.MaxInFlight), "dns", nil)
			e.Protocol = "UDP"
			s.record(e)
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-sem }()
			if resp := s.handle(s.ctx, pkt, src, dst, "UDP", s.exchangeUDP); resp != nil {
				if err := s.sendUDP(c, local, dst, src, resp); err != nil {
					cp := &proxy.ConnPolicy{Source: proxy.Peer{Addr: src}, Destination: proxy.Peer{Addr: dst}}
					e := cp.Event(monitor.VerdictError, "sending the answer: "+err.Error(), "dns", nil)
					e.Protocol = "UDP"
					s.record(e)
				}
			}
		}()
	}
}

// origDst reads IP_ORIGDSTADDR from a packet's control messages.
func origDst(oob []byte) (netip.AddrPort, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_IP || m.Header.Type != unix.IP_ORIGDSTADDR || len(m.Data) < unix.SizeofSockaddrInet4 {
			continue
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&m.Data[0]))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// sendUDP sends an answer to the client from the address it asked. A
// packet to the listener's own port is answered through the listener;
// any other destination through a socket bound (transparently) to it.
func (s *Server) sendUDP(c *net.UDPConn, local, from, to netip.AddrPort, b []byte) error {
	if from.Port() == local.Port() && (local.Addr().IsUnspecified() || from.Addr() == local.Addr()) {
		var oob []byte
		if local.Addr().IsUnspecified() {
			oob = pktInfo(from.Addr())
		}
		_, _, err := c.WriteMsgUDPAddrPort(b, oob, to)
		return err
	}
	return s.replies.send(from, to, b)
}

// pktInfo is an IP_PKTINFO control message choosing the source address.
func pktInfo(src netip.Addr) []byte {
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	pi.Spec_dst = src.As4()
	return b
}

// exchangeUDP sends a query to server over one of the server's shared
// sockets (upstream.go) and waits for the answer to it, until the timeout.
func (s *Server) exchangeUDP(ctx context.Context, server netip.AddrPort, msg []byte, id uint16) ([]byte, error) {
	us, err := s.upstreams.socket(server)
	if err != nil {
		return nil, err
	}
	if us != nil {
		return us.exchange(ctx, msg, id, s.o.Timeout)
	}
	return s.exchangeOwnSocket(ctx, server, msg, id)
}

// exchangeOwnSocket sends a query from a socket of its own and waits for
// the answer with the query's ID; packets with another ID are ignored.
func (s *Server) exchangeOwnSocket(ctx context.Context, server netip.AddrPort, msg []byte, id uint16) ([]byte, error) {
	d := net.Dialer{Control: markControl(s.o.Mark)}
	c, err := d.DialContext(ctx, "udp4", server.String())
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(s.o.Timeout)
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil, errors.New("port unreachable")
			}
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return nil, fmt.Errorf("no answer within %s", s.o.Timeout)
			}
			return nil, err
		}
		if n >= 2 && messageID(buf[:n]) == id {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// udpBufs are the buffers answers are read into: a UDP message may take
// 64 KiB, and one per query would keep the garbage collector busy.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, maxUDPMessage); return &b }}

// markControl sets SO_MARK on a socket (nothing for mark 0).
func markControl(mark int) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		if mark == 0 {
			return nil
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark); err != nil {
				serr = fmt.Errorf("SO_MARK %#x: %w", mark, err)
			}
		}); err != nil {
			return err
		}
		return serr
	}
}

// maxReplySockets bounds the cached answer sockets (one per address
// clients ask: the cluster's DNS servers); beyond it an answer gets a
// socket of its own.
const maxReplySockets = 256

// replySockets are unconnected UDP sockets bound, with IP_TRANSPARENT, to
// the addresses clients sent queries to, for answering from them. The
// node never delivers packets to them: those addresses are not the
// node's, and the datapath assigns redirected queries to the listener.
//
// They carry no mark: the answer must pass the client's to_pod like any
// reply of the client's flow, which restores a Service's address when
// the query went to a ClusterIP (the datapath translated it to the
// backend before the redirect, so the proxy sees and answers from the
// backend's address).
type replySockets struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*net.UDPConn
}

func newReplySockets() *replySockets {
	return &replySockets{m: map[netip.AddrPort]*net.UDPConn{}}
}

func (r *replySockets) send(from, to netip.AddrPort, b []byte) error {
	r.mu.Lock()
	c := r.m[from]
	r.mu.Unlock()
	if c == nil {
		var err error
		if c, err = r.open(from); err != nil {
			return err
		}
		r.mu.Lock()
		if have := r.m[from]; have != nil {
			_ = c.Close()
			c = have
		} else if len(r.m) < maxReplySockets {
			r.m[from] = c
		} else {
			r.mu.Unlock()
			defer func() { _ = c.Close() }()
			_, err := c.WriteToUDPAddrPort(b, to)
			return err
		}
		r.mu.Unlock()
	}
	_, err := c.WriteToUDPAddrPort(b, to)
	return err
}

func (r *replySockets) open(from netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			for _, o := range []struct {
				level, opt int
				name       string
			}{{unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"}, {unix.SOL_SOCKET, unix.SO_REUSEADDR, "SO_REUSEADDR"}} {
				if err := unix.SetsockoptInt(int(fd), o.level, o.opt, 1); err != nil {
					serr = fmt.Errorf("%s: %w", o.name, err)
					return
				}
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", from.String())
	if err != nil {
		return nil, fmt.Errorf("answer socket on %s: %w", from, err)
	}
	return pc.(*net.UDPConn), nil
}

func (r *replySockets) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.m {
		_ = c.Close()
		delete(r.m, k)
	}
}
