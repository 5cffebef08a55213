package http_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// h2Upstream is an h2c (and HTTP/1.1) server on the server endpoint
// running handler, counting the connections it accepts.
type h2Upstream struct {
	addr  netip.AddrPort
	conns atomic.Int64
}

func startH2Upstream(t *testing.T, handler http.HandlerFunc) *h2Upstream {
	t.Helper()
	ln := listenServer(t)
	u := &h2Upstream{addr: addrOf(ln)}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: handler, Protocols: &p, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			u.conns.Add(1)
		}
	}}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return u
}

// TestH2UpstreamDialsCoalesced: many streams at once from one client open
// a few upstream connections, not one each (the requests wait for the
// dial in progress and share its connection).
func TestH2UpstreamDialsCoalesced(t *testing.T) {
	up := startH2Upstream(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.Write([]byte("ok"))
	})
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.h2client()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Get("http://server/public/x")
			if err != nil || res.StatusCode != 200 {
				failed.Add(1)
				return
			}
			res.Body.Close()
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if n := up.conns.Load(); n > 3 {
		t.Fatalf("100 concurrent streams opened %d upstream connections", n)
	}
}

// TestH2StreamBufferBounded: a client that announces a zero window and
// opens streams on a large allowed response makes the proxy hold the
// upstream back by flow control: each stream buffers at most about its
// 64 KiB window (x/net's transport default was 4 MiB).
func TestH2StreamBufferBounded(t *testing.T) {
	var written atomic.Int64
	chunk := []byte(strings.Repeat("x", 16<<10))
	up := startH2Upstream(t, func(w http.ResponseWriter, r *http.Request) {
		for range 512 { // 8 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
			w.(http.Flusher).Flush()
		}
	})
	e := newEnv(t, up.addr, webPolicy, nil)
	a := newH2Attacker(t, e)
	if err := a.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	const streams = 10
	for range streams {
		if _, err := a.open(headerBlock("GET", "/public/big"), true, true); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is read but what the proxy sends; its window updates never
	// come. Wait for the upstream to stop making progress.
	go func() {
		for {
			if _, err := a.fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	last := int64(-1)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		n := written.Load()
		if n == last && n > 0 {
			break
		}
		last = n
	}
	if per := written.Load() / streams; per > 256<<10 {
		t.Fatalf("the upstream wrote %d KiB a stream to a client that reads nothing", per>>10)
	}
}

// TestH2StreamIdleTimeout: a stream whose upstream sends nothing is ended
// after StreamIdleTimeout with 504, not held for ever.
func TestH2StreamIdleTimeout(t *testing.T) {
	up := startH2Upstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) { o.StreamIdleTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	res, err := e.h2client().Do(newReq(t, "GET", "http://server/public/hang", nil).WithContext(ctx))
	if err != nil {
		t.Fatalf("%v after %s", err, time.Since(start))
	}
	res.Body.Close()
	if res.StatusCode != 504 || time.Since(start) > 2*time.Second {
		t.Fatalf("got %d after %s, want 504 after about 300ms", res.StatusCode, time.Since(start))
	}
}

// TestH2MemoryBounded: five clients with a zero window, each with 100
// streams on an 8 MiB allowed response, hold the process (proxy and
// upstream together) under 100 MiB of heap above its idle size.
func TestH2MemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	var written atomic.Int64
	chunk := []byte(strings.Repeat("x", 16<<10))
	up := startH2Upstream(t, func(w http.ResponseWriter, r *http.Request) {
		for range 512 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
			w.(http.Flusher).Flush()
		}
	})
	e := newEnv(t, up.addr, webPolicy, nil)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 5 {
		a := newH2Attacker(t, e)
		a.c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := a.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if _, err := a.open(headerBlock("GET", "/public/big"), true, true); err != nil {
				t.Fatal(err)
			}
		}
		go func() {
			for {
				if _, err := a.fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
	}
	last := int64(-1)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		n := written.Load()
		if n == last && n > 0 {
			break
		}
		last = n
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("500 stalled streams: heap in use grew by %d MiB; the upstream wrote %d MiB", grown>>20, written.Load()>>20)
	if grown > 100<<20 {
		t.Fatalf("heap in use grew by %d MiB", grown>>20)
	}
}
