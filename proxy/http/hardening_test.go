package http_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rapidReset opens and at once resets n streams on one h2c connection to
// the proxy, as fast as it can (the CVE-2023-44487 shape), then commits a
// connection error and goes on sending: the proxy ends the connection
// while its frame reader still has frames to read.
// It runs on goroutines of its own, so it returns what went wrong.
func rapidReset(e *env, n int) error {
	c, err := e.dial(context.Background(), "", "")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		return err
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "server"}, {":path", "/public/x"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range n {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			return nil // the proxy cut the connection: that is allowed
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			return nil
		}
		if i == n/2 {
			fr.AllowIllegalWrites = true
			if err := fr.WriteData(0, false, []byte("x")); err != nil {
				return nil
			}
		}
	}
	return nil
}

// TestH2RapidResetNoCrash: connections that open and reset streams as fast
// as they can, and vanish, must cost those connections only. The proxy's
// HTTP/2 read buffer is read by x/net's frame-reader goroutine, which
// ServeConn does not wait for: recycling it when ServeConn returned made
// that goroutine read a buffer with no connection (a nil-pointer panic
// outside any recover, which killed the process) or another connection's
// bytes.
func TestH2RapidResetNoCrash(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := rapidReset(e, 400); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// The proxy still serves, over HTTP/2 and HTTP/1.1.
	for _, c := range []*http.Client{e.h2client(), e.client()} {
		if r := do(t, c, newReq(t, "GET", "http://server/public/after", nil)); r.status != 200 {
			t.Fatalf("after the resets: %+v", r)
		}
	}
}
