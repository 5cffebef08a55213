package http

import (
	"bufio"
	"container/list"
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// poolKey identifies the upstream connections that may be shared: the
// upstream sees the client's address as the source of a transparent
// proxy's connection, so connections are shared only between requests of
// one source address to one destination.
type poolKey struct {
	src netip.Addr
	dst netip.AddrPort
	// up is Decrypted.Key for the connections of intercepted TLS
	// connections ("" in the clear): a connection originated with one
	// server name and trust never carries another's requests.
	up string
}

func keyOf(src, dst netip.AddrPort) poolKey { return poolKey{src: src.Addr().Unmap(), dst: dst} }

// upConn is one HTTP/1.1 upstream connection.
type upConn struct {
	c     net.Conn
	dc    *dconn
	br    *bufio.Reader
	bw    *bufio.Writer
	key   poolKey
	since time.Time
	// reused: the connection served a request before, so it may have been
	// closed by the upstream while idle.
	reused bool
}

// park gives an idle connection's buffers back (it has nothing buffered):
// an idle upstream connection, held by an idle client connection or
// pooled, then costs its socket only.
func (u *upConn) park() {
	if u.br != nil {
		readers.Put(u.br)
		writers.Put(u.bw)
		u.br, u.bw = nil, nil
	}
}

// unpark gives a connection taken for a request its buffers.
func (u *upConn) unpark() {
	if u.br == nil {
		u.br, u.bw = readers.Get(u.dc), writers.Get(u.dc)
	}
}

func (u *upConn) close() {
	u.c.Close()
	u.park()
}

// pool keeps idle HTTP/1.1 upstream connections: at most perKey per key,
// at most maxKeys keys (least recently used key evicted), none idle longer
// than idle.
type pool struct {
	perKey, maxKeys int
	idle            time.Duration

	mu     sync.Mutex
	keys   map[poolKey]*list.Element // of *poolEntry
	lru    list.List                 // front: most recently used
	closed bool
}

type poolEntry struct {
	key   poolKey
	conns []*upConn
}

func newPool(perKey, maxKeys int, idle time.Duration) *pool {
	return &pool{perKey: perKey, maxKeys: maxKeys, idle: idle, keys: map[poolKey]*list.Element{}}
}

// get returns an idle connection for k, or nil.
func (p *pool) get(k poolKey) *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	el := p.keys[k]
	if el == nil {
		return nil
	}
	e := el.Value.(*poolEntry)
	now := time.Now()
	for len(e.conns) > 0 {
		u := e.conns[len(e.conns)-1]
		e.conns[len(e.conns)-1] = nil
		e.conns = e.conns[:len(e.conns)-1]
		if now.Sub(u.since) < p.idle {
			// The key's entry stays (empty) so that putting the
			// connection back allocates nothing; eviction bounds keys.
			return u
		}
		go u.close()
	}
	return nil
}

// put makes u, idle since u.since, available to other client
// connections of its key, or closes it when the pool is full or closed.
func (p *pool) put(u *upConn) {
	u.park()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		u.close()
		return
	}
	el := p.keys[u.key]
	if el == nil {
		if p.lru.Len() >= p.maxKeys {
			old := p.lru.Back()
			oe := old.Value.(*poolEntry)
			p.lru.Remove(old)
			delete(p.keys, oe.key)
			for _, c := range oe.conns {
				go c.close()
			}
		}
		el = p.lru.PushFront(&poolEntry{key: u.key})
		p.keys[u.key] = el
	} else {
		p.lru.MoveToFront(el)
	}
	e := el.Value.(*poolEntry)
	if len(e.conns) >= p.perKey {
		p.mu.Unlock()
		u.close()
		return
	}
	e.conns = append(e.conns, u)
	p.mu.Unlock()
}

func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*upConn
	for _, el := range p.keys {
		all = append(all, el.Value.(*poolEntry).conns...)
	}
	clear(p.keys)
	p.lru.Init()
	p.mu.Unlock()
	for _, u := range all {
		u.close()
	}
}

// h2pool keeps HTTP/2 upstream client connections, which multiplex
// requests: at most perKey per key, at most maxKeys keys.
type h2pool struct {
	t               *http2.Transport
	perKey, maxKeys int

	mu     sync.Mutex
	keys   map[poolKey]*list.Element // of *h2Entry
	lru    list.List
	closed bool
}

type h2Entry struct {
	key   poolKey
	conns []*http2.ClientConn
	// dialing is closed when the dial in progress for the key ends:
	// requests that find no connection with room wait for it rather than
	// dial their own (500 streams at once would otherwise open hundreds
	// of upstream connections).
	dialing chan struct{}
}

func newH2Pool(t *http2.Transport, perKey, maxKeys int) *h2pool {
	return &h2pool{t: t, perKey: perKey, maxKeys: maxKeys, keys: map[poolKey]*list.Element{}}
}

// get returns a client connection for k that can take a request, dialling
// one with dial if needed.
func (p *h2pool) get(ctx context.Context, k poolKey, dial func(context.Context) (net.Conn, error)) (*http2.ClientConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, net.ErrClosed
		}
		e := p.entry(k)
		live := e.conns[:0]
		var found *http2.ClientConn
		for _, cc := range e.conns {
			st := cc.State()
			if st.Closed || st.Closing {
				continue
			}
			live = append(live, cc)
			if found == nil && cc.CanTakeNewRequest() {
				found = cc
			}
		}
		clear(e.conns[len(live):])
		e.conns = live
		if found != nil {
			p.mu.Unlock()
			return found, nil
		}
		if ch := e.dialing; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		e.dialing = ch
		p.mu.Unlock()
		cc, err := p.dial(ctx, dial)
		p.mu.Lock()
		e = p.entry(k)
		if e.dialing == ch {
			e.dialing = nil
		}
		close(ch)
		if err == nil && p.closed {
			cc.Close()
			err = net.ErrClosed
		}
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if len(e.conns) >= p.perKey {
			// Full: the oldest connection finishes its streams and goes.
			go e.conns[0].Shutdown(context.Background())
			e.conns = append(e.conns[:0], e.conns[1:]...)
		}
		e.conns = append(e.conns, cc)
		p.mu.Unlock()
		return cc, nil
	}
}

func (p *h2pool) dial(ctx context.Context, dial func(context.Context) (net.Conn, error)) (*http2.ClientConn, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := p.t.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return cc, nil
}

// entry returns k's entry, made (and the least recently used key evicted
// beyond maxKeys) if needed, as the most recently used. p.mu is held.
func (p *h2pool) entry(k poolKey) *h2Entry {
	if el := p.keys[k]; el != nil {
		p.lru.MoveToFront(el)
		return el.Value.(*h2Entry)
	}
	if p.lru.Len() >= p.maxKeys {
		old := p.lru.Back()
		oe := old.Value.(*h2Entry)
		p.lru.Remove(old)
		delete(p.keys, oe.key)
		for _, o := range oe.conns {
			go o.Shutdown(context.Background())
		}
	}
	e := &h2Entry{key: k}
	p.keys[k] = p.lru.PushFront(e)
	return e
}

func (p *h2pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*http2.ClientConn
	for _, el := range p.keys {
		all = append(all, el.Value.(*h2Entry).conns...)
	}
	clear(p.keys)
	p.lru.Init()
	p.mu.Unlock()
	for _, cc := range all {
		cc.Close()
	}
}
