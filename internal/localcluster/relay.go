package localcluster

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"sync"

	"github.com/vishvananda/netns"

	"portcullis.dev/portcullis/internal/netnstest"
)

// relay accepts TCP connections on the loopback of a pod's network
// namespace and joins each to an address of the root namespace. It lets a
// process in a pod (CoreDNS) reach the apiserver, which listens on the
// machine's loopback only.
type relay struct {
	addr netip.AddrPort
	ln   net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startRelay listens on 127.0.0.1 in namespace nsName and relays to
// target, a host:port or an https URL's host.
func startRelay(nsName, target string) (*relay, error) {
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		target = u.Host
	}
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", nsName, err)
	}
	defer ns.Close()
	ln, err := listenIn(ns, "tcp", "127.0.0.1:6443")
	if err != nil {
		return nil, fmt.Errorf("listening in netns %s: %w", nsName, err)
	}
	r := &relay{addr: netip.MustParseAddrPort(ln.Addr().String()), ln: ln, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve(target)
	return r, nil
}

// listenIn opens a listener inside ns; the socket stays in ns after the
// thread that made it is gone.
func listenIn(ns netns.NsHandle, network, addr string) (ln net.Listener, err error) {
	err = netnstest.Run(ns, func() error {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

func (r *relay) serve(target string) {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				return
			}
			if !r.track(in, out) {
				return
			}
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
			<-done
			_ = in.Close()
			_ = out.Close()
			<-done
			r.untrack(in, out)
		}()
	}
}

// track records a joined pair so that close can end it; false if the
// relay is closing (both are closed then).
func (r *relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

// close stops accepting, ends every relayed connection and waits.
func (r *relay) close() {
	_ = r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}
