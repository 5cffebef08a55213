package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long a closing connection waits for the peer to
// acknowledge what was sent before it is reset.
const drainTimeout = time.Second

// resetConn resets c: SO_LINGER 0, so the close sends a RST and leaves no
// TIME_WAIT socket behind.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// noTimeWaitConn is a TCP connection of the proxy's that must not end in
// TIME_WAIT in the node's namespace: a TIME_WAIT socket holding a pod's
// address and port would capture a later direct flow on the same tuple.
// Close therefore closes normally only when the
// peer closed first (then the peer holds the TIME_WAIT); otherwise it waits
// (at most drainTimeout) until the peer has acknowledged every byte sent
// and resets the connection, which loses nothing the peer has not already
// received.
type noTimeWaitConn struct {
	*net.TCPConn
	mu      sync.Mutex
	peerEOF bool
	once    sync.Once
	// slot is the connection's place under the Proxy's MaxConns (nil for
	// upstream connections).
	slot *slot
}

// newNoTimeWaitConn wraps c if it is a TCP connection.
func newNoTimeWaitConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	return &noTimeWaitConn{TCPConn: tc}
}

func (c *noTimeWaitConn) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	if errors.Is(err, io.EOF) {
		c.mu.Lock()
		c.peerEOF = true
		c.mu.Unlock()
	}
	return n, err
}

// WriteTo keeps the splice path of *net.TCPConn and notes the peer's EOF
// (io.Copy prefers WriteTo over Read).
func (c *noTimeWaitConn) WriteTo(w io.Writer) (int64, error) {
	n, err := c.TCPConn.WriteTo(w)
	if err == nil {
		c.mu.Lock()
		c.peerEOF = true
		c.mu.Unlock()
	}
	return n, err
}

// Close closes the connection as described on the type.
func (c *noTimeWaitConn) Close() error {
	var err error
	c.once.Do(func() {
		c.mu.Lock()
		eof := c.peerEOF
		c.mu.Unlock()
		if !eof {
			c.waitAcked()
			_ = c.SetLinger(0)
		}
		err = c.TCPConn.Close()
	})
	return err
}

// waitAcked polls the send queue (SIOCOUTQ: bytes not yet acknowledged)
// until it is empty or drainTimeout has passed.
func (c *noTimeWaitConn) waitAcked() {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(drainTimeout)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
		var n int
		var ierr error
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil || n == 0 {
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(delay)
	}
}

// Reset closes c with a TCP reset when it is (or wraps) a TCP connection:
// the refusal of a connection that must not look like an orderly end.
func Reset(c net.Conn) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = c.Close()
}

// Relay copies both ways between a and b until both directions are done,
// passing half-closes on, and closes both; ctx ending closes them early.
func Relay(ctx context.Context, a, b net.Conn) { relay(ctx, a, b) }
