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
