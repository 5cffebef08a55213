package kafka_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/kafka"
)

// midRequestConns is how many stalled clients TestMemoryMidRequest holds.
const midRequestConns = 1000

// maxBytesPerStalledConn bounds the proxy's memory per client that sent
// part of a request and stalled: the client's read buffer, the two write
// buffers (pooled: none while waiting), the bytes received so far and
// two goroutines; measured: about 37 KiB.
const maxBytesPerStalledConn = 48 << 10

// TestMemoryMidRequest holds 1,000 connections that each announce a
// 1 MiB request, send 100 bytes of it and stall: the proxy's heap and
// stacks grow with what the clients sent, not with what they announced.
func TestMemoryMidRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 4,000 sockets")
	}
	// The upstream accepts and holds every connection: a stalled client
	// never gets as far as a request to forward.
	up, err := net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	upstream := netip.MustParseAddrPort(up.Addr().String())
	store := &proxy.Store{}
	store.Set(snapshot(t, kafkaPolicy, upstream.Port()))
	// The held connections close after the proxy's (cleanups run last
	// registered first).
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	addr := serve(t, kafka.Options{Resolver: store}, false, upstream)

	before := proxyMemory()
	partial := binary.BigEndian.AppendUint32(nil, 1<<20)
	partial = append(partial, make([]byte, 100)...)
	clients := make([]net.Conn, 0, midRequestConns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0))}
	for range midRequestConns {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("client %d: %v", len(clients), err)
		}
		clients = append(clients, c)
		if _, err := c.Write(partial); err != nil {
			t.Fatal(err)
		}
	}
	// Every connection has its upstream once the proxy has served it this
	// far; then give it a moment to read what the clients sent.
	for deadline := time.Now().Add(30 * time.Second); ; {
		mu.Lock()
		n := len(held)
		mu.Unlock()
		if n == midRequestConns {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections reached the upstream", n, midRequestConns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	after := proxyMemory()
	per := (after - before) / midRequestConns
	t.Logf("%d connections mid-request: heap+stacks %+.1f MiB, %.1f KiB per connection (client and upstream sockets of the test included)",
		midRequestConns, float64(after-before)/(1<<20), float64(per)/(1<<10))
	if per > maxBytesPerStalledConn {
		t.Errorf("%d bytes per stalled connection, want at most %d", per, maxBytesPerStalledConn)
	}
	for _, c := range clients {
		// Still open: the proxy waits for the rest of the request.
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a stalled client got an answer")
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("a stalled client's connection ended: %v", err)
		}
	}
}

// proxyMemory is the process's live heap and goroutine stacks after a GC.
func proxyMemory() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}
