// Package netnstest gives tests throwaway network namespaces and a way to
// run code inside one, for the kernel tests of bpf and proxy.
package netnstest

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// New creates an anonymous network namespace, closed on cleanup. It skips
// the test where namespaces cannot be made (not root).
func New(t testing.TB) netns.NsHandle {
	t.Helper()
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- res{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.New()
		if err == nil {
			if serr := netns.Set(orig); serr != nil {
				c <- res{h, serr}
				return // the thread stays locked and is discarded
			}
		}
		runtime.UnlockOSThread()
		c <- res{h, err}
	}()
	r := <-c
	if r.err != nil {
		t.Skipf("cannot create network namespaces: %v", r.err)
	}
	t.Cleanup(func() { _ = r.h.Close() })
	return r.h
}

// Run runs fn on a locked thread inside ns. The thread is discarded
// afterwards rather than returned to the pool.
func Run(ns netns.NsHandle, fn func() error) error {
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := netns.Set(ns); err != nil {
			c <- err
			return
		}
		c <- fn()
	}()
	return <-c
}
