// Package proxytest holds what the protocol servers' tests share: serving
// a listener with a proxy.ConnServer the way the proxy core does, with
// every connection's flow ending at one upstream.
package proxytest

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/proxy"
)

// Serve accepts on ln until the test ends and serves each connection with
// s as the flow from its remote address to upstream. At cleanup it closes
// ln, cancels the connections' context, calls closeServer (if not nil)
// and waits for every connection to be done.
func Serve(t testing.TB, ln net.Listener, upstream netip.AddrPort, s proxy.ConnServer, closeServer func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.ServeConn(ctx, c, src, upstream)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		if closeServer != nil {
			_ = closeServer()
		}
		wg.Wait()
	})
}

// Recorder collects a server's events (its Options.Record).
type Recorder struct {
	mu     sync.Mutex
	events []monitor.Event
}

// Record adds an event.
func (r *Recorder) Record(e monitor.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of the events so far.
func (r *Recorder) Events() []monitor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]monitor.Event(nil), r.events...)
}

// Reset forgets the events so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.events = nil
	r.mu.Unlock()
}

// Wait returns the events once there are n of them (an event may be
// recorded just after the client saw the response), failing the test if
// there are not exactly n within 5 s.
func (r *Recorder) Wait(t testing.TB, n int) []monitor.Event {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		got := r.Events()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("got %d events, want %d: %+v", len(got), n, got)
			}
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}
