package http

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// The pool keeps at most perKey idle connections per key and maxKeys
// keys, closing the least recently used key's connections, and never
// hands out a connection idle for too long.
func TestPoolBounds(t *testing.T) {
	dst := netip.MustParseAddrPort("127.0.0.3:80")
	key := func(i byte) poolKey {
		return keyOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, i}), 1000), dst)
	}
	var peers []net.Conn
	conn := func(k poolKey) *upConn {
		c, p := net.Pipe()
		peers = append(peers, p)
		return &upConn{c: c, key: k, since: time.Now()}
	}
	closed := func(u *upConn) bool {
		u.c.SetReadDeadline(time.Now())
		_, err := u.c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
	p := newPool(2, 2, time.Minute)
	a1, a2, a3 := conn(key(1)), conn(key(1)), conn(key(1))
	p.put(a1)
	p.put(a2)
	p.put(a3) // over perKey: closed
	if !closed(a3) || closed(a1) || closed(a2) {
		t.Fatal("perKey: want only the third connection closed")
	}
	b1 := conn(key(2))
	p.put(b1)
	if got := p.get(key(1)); got != a2 {
		t.Fatalf("get: %v, want the most recently idle connection", got)
	}
	p.put(a2) // key 1 is now the most recently used
	c1 := conn(key(3))
	p.put(c1) // over maxKeys: key 2 (least recently used) goes
	// Evicted connections close asynchronously.
	for deadline := time.Now().Add(5 * time.Second); !closed(b1) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if !closed(b1) || closed(a1) || closed(c1) {
		t.Fatal("maxKeys: want the least recently used key's connection closed")
	}
	if p.get(key(2)) != nil {
		t.Fatal("an evicted key still has connections")
	}
	// Connections idle for too long are not handed out.
	p = newPool(2, 2, time.Nanosecond)
	old := conn(key(1))
	p.put(old)
	time.Sleep(time.Millisecond)
	if p.get(key(1)) != nil {
		t.Fatal("a connection idle for too long was handed out")
	}
	p.closeAll()
	for _, c := range peers {
		c.Close()
	}
}
