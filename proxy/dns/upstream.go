package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Upstream sockets: each server gets a few connected UDP sockets shared
// by its queries, answers matched to queries by ID. A socket per query
// (socket, connect, close, and the poller's registration) took a quarter
// of the proxy's CPU under dnsperf. Queries spread at random over the
// sockets, so an off-path spoofer must guess the ID (16 bits, random) and
// one of the source ports.
const (
	socketsPerServer = 4
	// maxServers bounds the servers with shared sockets; queries to
	// others get a socket each.
	maxServers = 64
)

type upstreamSocket struct {
	c       *net.UDPConn
	mu      sync.Mutex
	pending map[uint16]chan []byte
	dead    bool
}

type udpUpstreams struct {
	mark    int
	mu      sync.Mutex
	servers map[netip.AddrPort]*[socketsPerServer]*upstreamSocket
	closed  bool
}

func newUDPUpstreams(mark int) *udpUpstreams {
	return &udpUpstreams{mark: mark, servers: map[netip.AddrPort]*[socketsPerServer]*upstreamSocket{}}
}

// socket returns a live socket towards server, opening it if need be;
// nil when the server has none and may not get one (too many servers).
func (u *udpUpstreams) socket(server netip.AddrPort) (*upstreamSocket, error) {
	i := rand.IntN(socketsPerServer)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, net.ErrClosed
	}
	set := u.servers[server]
	if set == nil {
		if len(u.servers) >= maxServers {
			return nil, nil
		}
		set = &[socketsPerServer]*upstreamSocket{}
		u.servers[server] = set
	}
	if s := set[i]; s != nil && !s.isDead() {
		return s, nil
	}
	d := net.Dialer{Control: markControl(u.mark)}
	c, err := d.DialContext(context.Background(), "udp4", server.String())
	if err != nil {
		return nil, err
	}
	s := &upstreamSocket{c: c.(*net.UDPConn), pending: map[uint16]chan []byte{}}
	set[i] = s
	go s.read()
	return s, nil
}

func (s *upstreamSocket) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

// read hands each answer to the query waiting for its ID; answers nobody
// waits for (late, or spoofed) are dropped.
func (s *upstreamSocket) read() {
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, err := s.c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.mu.Lock()
				s.dead = true
				for id, ch := range s.pending {
					close(ch)
					delete(s.pending, id)
				}
				s.mu.Unlock()
				return
			}
			// ECONNREFUSED from an ICMP error and the like: the queries
			// concerned time out.
			continue
		}
		if n < 2 {
			continue
		}
		id := messageID(buf[:n])
		s.mu.Lock()
		ch := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if ch != nil {
			ch <- append([]byte(nil), buf[:n]...)
		}
	}
}

// exchange sends msg (whose ID is id) and waits for the answer to it. If
// another query on the socket has that ID, msg gets a free one, and the
// answer is given id back.
func (s *upstreamSocket) exchange(ctx context.Context, msg []byte, id uint16, timeout time.Duration) ([]byte, error) {
	ch := make(chan []byte, 1)
	wire := id
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return nil, net.ErrClosed
	}
	for tries := 0; s.pending[wire] != nil; tries++ {
		if tries == 64 {
			s.mu.Unlock()
			return nil, errors.New("no free query ID towards the server")
		}
		wire = uint16(rand.Uint32())
	}
	s.pending[wire] = ch
	s.mu.Unlock()
	setID(msg, wire)
	forget := func() {
		s.mu.Lock()
		if s.pending[wire] == ch {
			delete(s.pending, wire)
		}
		s.mu.Unlock()
	}
	if _, err := s.c.Write(msg); err != nil {
		forget()
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b, ok := <-ch:
		if !ok {
			return nil, net.ErrClosed
		}
		setID(b, id)
		return b, nil
	case <-t.C:
		forget()
		return nil, fmt.Errorf("no answer within %s", timeout)
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

func (u *udpUpstreams) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for k, set := range u.servers {
		for _, s := range set {
			if s != nil {
				_ = s.c.Close()
			}
		}
		delete(u.servers, k)
	}
}
