package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TransparentPortLo and TransparentPortHi bound the source ports of
// upstream legs that keep the client's address: below the kernel's
// default ephemeral range (32768-60999), from which pods pick their own
// ports, so a leg never takes a tuple a pod's connection already has.
const (
	TransparentPortLo = 10000
	TransparentPortHi = 32767
)

// DefaultDialTimeout bounds an upstream connect when Dialer.Timeout is 0.
const DefaultDialTimeout = 5 * time.Second

// DialDestination connects to dst with a plain net.Dialer, ignoring src:
// the upstream dialer of the protocol servers when none is configured.
func DialDestination(ctx context.Context, _, dst netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", dst.String())
}

// Dialer opens the proxy's upstream connections.
//
// Every upstream socket carries SO_MARK Mark: the datapath passes packets
// with the proxy-upstream mark into the destination pod without a second
// policy check (the proxy has judged the request under both sides' policy)
// and lets the replies back.
//
// When Transparent says so, the socket is bound with IP_TRANSPARENT to the
// client's own address (and a port from TransparentPortLo-Hi), so the upstream sees
// the real client. Otherwise, or when that bind fails, the kernel picks the
// node's address for the route, and Fallback is told why.
type Dialer struct {
	// Mark is the SO_MARK of upstream sockets; 0 sets none.
	Mark int
	// Timeout bounds the connect; 0 means DefaultDialTimeout.
	Timeout time.Duration
	// Transparent reports whether the upstream leg of src→dst keeps src's
	// address. Nil means never. The agent answers true when the client is
	// a local endpoint and the server a local one (its replies pass the
	// datapath's from_pod, which hands them to the proxy's socket) or a
	// pod on another node with uplinks attached (from_uplink does the
	// same); replies arriving from elsewhere would be routed to the client
	// pod instead.
	Transparent func(src, dst netip.AddrPort) bool
	// Fallback, if set, is called when a transparent bind failed and the
	// node's address was used instead.
	Fallback func(src, dst netip.AddrPort, err error)
}

// DialContext connects to dst on behalf of the client src. The returned
// connection resets instead of entering TIME_WAIT when the proxy closes it
// first.
func (d *Dialer) DialContext(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if d.Transparent != nil && src.Addr().Unmap().Is4() == dst.Addr().Is4() && d.Transparent(src, dst) {
		c, err := d.dialTransparent(ctx, dst, src.Addr().Unmap())
		if err == nil {
			return newNoTimeWaitConn(c), nil
		}
		if !isBindError(err) {
			return nil, err
		}
		if d.Fallback != nil {
			d.Fallback(src, dst, err)
		}
	}
	c, err := d.dial(ctx, dst, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	return newNoTimeWaitConn(c), nil
}

// bindError marks a failure to set up the transparent bind (as opposed to
// a failure to reach the upstream).
type bindError struct{ err error }

func (e *bindError) Error() string { return e.err.Error() }
func (e *bindError) Unwrap() error { return e.err }

func isBindError(err error) bool {
	if _, ok := errors.AsType[*bindError](err); ok {
		return true
	}
	// bind(2) itself fails inside the dial; the net package reports it as
	// an *net.OpError with Op "dial" and the errno.
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		switch errno {
		case unix.EADDRNOTAVAIL, unix.EPERM, unix.EACCES, unix.EADDRINUSE:
			return true
		}
	}
	return false
}

// transparentBindAttempts bounds the ports tried for one transparent leg.
const transparentBindAttempts = 32

// dialTransparent dials from the client's address with a source port of
// its own choosing in [TransparentPortLo, TransparentPortHi]. The kernel
// would pick the port among the node's sockets only; it cannot see the
// client pod's own sockets, so from the pod's ephemeral range it could
// pick a port the pod is using towards the same destination, and two
// flows would share one tuple (the upstream leg then gets the other's
// packets: resets and 502s under load). The per-socket
// IP_LOCAL_PORT_RANGE cannot help: it only narrows the namespace's range.
func (d *Dialer) dialTransparent(ctx context.Context, dst netip.AddrPort, from netip.Addr) (net.Conn, error) {
	var err error
	for range transparentBindAttempts {
		port := uint16(TransparentPortLo + rand.IntN(TransparentPortHi-TransparentPortLo+1))
		var c net.Conn
		c, err = d.dial(ctx, dst, netip.AddrPortFrom(from, port))
		if err == nil {
			return c, nil
		}
		if errno, ok := errors.AsType[syscall.Errno](err); !ok || errno != unix.EADDRINUSE {
			return nil, err
		}
	}
	return nil, &bindError{fmt.Errorf("no free source port for %s in %d-%d after %d attempts: %w", from, TransparentPortLo, TransparentPortHi, transparentBindAttempts, err)}
}

func (d *Dialer) dial(ctx context.Context, dst netip.AddrPort, bindTo netip.AddrPort) (net.Conn, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = DefaultDialTimeout
	}
	nd := net.Dialer{Timeout: timeout}
	transparent := bindTo.IsValid()
	if transparent {
		nd.LocalAddr = net.TCPAddrFromAddrPort(bindTo)
	}
	nd.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if d.Mark != 0 {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, d.Mark); err != nil {
					serr = fmt.Errorf("SO_MARK %#x: %w", d.Mark, err)
					return
				}
			}
			if transparent {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
					serr = &bindError{fmt.Errorf("IP_TRANSPARENT: %w", err)}
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	network := "tcp4"
	if dst.Addr().Is6() {
		network = "tcp6"
	}
	c, err := nd.DialContext(ctx, network, dst.String())
	if err != nil {
		if transparent {
			return nil, fmt.Errorf("dialing %s from %s (transparent): %w", dst, bindTo, err)
		}
		return nil, fmt.Errorf("dialing %s: %w", dst, err)
	}
	return c, nil
}
