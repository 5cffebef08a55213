package http_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// trickle writes s one byte every gap until the connection fails.
func trickle(c net.Conn, s string, gap time.Duration) {
	for i := range len(s) {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(gap)
	}
}

// cutAfter reports how long the proxy took to end c (the client reads
// until EOF or a reset, answering nothing), and what it answered.
func cutAfter(t *testing.T, c net.Conn, limit time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the proxy still held the connection after %s (read %q)", limit, b)
	}
	return time.Since(start), string(b)
}

// TestHeadDeadlineFromAccept: sniffing and the first request head have one
// absolute deadline, ReadHeaderTimeout from the accept, whatever the pace
// of the bytes: an HTTP/1.1 head trickled (408), a head begun late and
// finished past the deadline (408: the first byte does not restart the
// timer), an HTTP/2 preface trickled, an HTTP/2 preface followed by a
// trickled SETTINGS frame, and a silent connection (closed at the
// deadline, not after IdleTimeout twice).
func TestHeadDeadlineFromAccept(t *testing.T) {
	up := startUpstream(t)
	const rht = 400 * time.Millisecond
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) {
		o.ReadHeaderTimeout = rht
		o.IdleTimeout = 20 * time.Second
	})
	settings := "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	tests := []struct {
		name  string
		delay time.Duration // before the first byte
		at    string        // sent at once
		send  string        // then trickled
		gap   time.Duration
		want  string // the answer's start; "" for none
	}{
		{"h1 trickle", 0, "", "GET /public/a HTTP/1.1\r\nHost: h\r\nX-Slow: " + strings.Repeat("x", 100) + "\r\n\r\n", 50 * time.Millisecond, "HTTP/1.1 408 "},
		{"h1 late first byte", 300 * time.Millisecond, "", "GET /public/a HTTP/1.1\r\nHost: h\r\n\r\n", 10 * time.Millisecond, "HTTP/1.1 408 "},
		{"h2 preface trickle", 0, "", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 50 * time.Millisecond, ""},
		{"h2 settings trickle", 0, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", settings, 100 * time.Millisecond, ""},
		{"silent", 0, "", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := e.dial(context.Background(), "", "")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				time.Sleep(tt.delay)
				io.WriteString(c, tt.at)
				if tt.gap == 0 {
					io.WriteString(c, tt.send)
					return
				}
				trickle(c, tt.send, tt.gap)
			}()
			took, got := cutAfter(t, c, 3*time.Second)
			if took > rht+time.Second {
				t.Errorf("cut after %s, want about %s", took, rht)
			}
			if !strings.HasPrefix(got, tt.want) || (tt.want == "" && strings.HasPrefix(got, "HTTP/1.1")) {
				t.Errorf("answered %q, want %q", got, tt.want)
			}
		})
	}
	if n := up.requests.Load(); n != 0 {
		t.Fatalf("upstream got %d requests", n)
	}
	for _, ev := range e.rec.Wait(t, len(tests)) {
		if ev.Verdict != monitor.VerdictError || ev.L7.Refused != "header-timeout" {
			t.Errorf("event %+v %+v, want an ERROR header-timeout refusal", ev, ev.L7)
		}
	}
	// A prompt client is served.
	if r := do(t, e.client(), newReq(t, "GET", "http://server/public/after", nil)); r.status != 200 {
		t.Fatalf("after: %+v", r)
	}
}

// slowBody is a request body that yields one byte every gap.
type slowBody struct {
	n   int
	gap time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(b.gap)
	b.n--
	p[0] = 'x'
	return 1, nil
}

// TestBodyDeadline: a request body slower than BodyTimeout plus one
// second per MinBodyRate bytes gets 408 on HTTP/1.1 and HTTP/2, well
// before IdleTimeout, though every byte came within IdleTimeout.
func TestBodyDeadline(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) {
		o.BodyTimeout = 300 * time.Millisecond
		o.MinBodyRate = 100
		o.IdleTimeout = 20 * time.Second
	})
	for name, c := range map[string]*http.Client{"http/1.1": e.client(), "h2": e.h2client()} {
		t.Run(name, func(t *testing.T) {
			req := newReq(t, "POST", "http://server/upload", &slowBody{n: 200, gap: 20 * time.Millisecond})
			req.ContentLength = 200
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			res, err := c.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatalf("%v after %s", err, time.Since(start))
			}
			res.Body.Close()
			if res.StatusCode != 408 {
				t.Fatalf("got %d, want 408", res.StatusCode)
			}
		})
	}
	// A prompt body passes.
	for name, c := range map[string]*http.Client{"http/1.1": e.client(), "h2": e.h2client()} {
		if r := do(t, c, newReq(t, "POST", "http://server/upload", strings.NewReader("hello"))); r.status != 200 {
			t.Fatalf("%s prompt body: %+v", name, r)
		}
	}
}

// TestConnectionSlotsReclaimed: under the core's connection limit, sockets
// that never send a request do not starve a new client: the oldest one
// without a request is reset to make room (with an event), while a
// connection that has sent its request keeps its slot.
func TestConnectionSlotsReclaimed(t *testing.T) {
	up := startUpstream(t)
	store := &proxy.Store{}
	store.Set(snapshot(t, webPolicy, up.addr.Port()))
	rec := &recorder{}
	hs := proxyhttp.New(proxyhttp.Options{Resolver: store, Record: rec.Record, ReadHeaderTimeout: time.Minute})
	const limit = 4
	p, err := proxy.New(proxy.Options{Resolver: store, HTTP: hs, Record: rec.Record, MaxConns: limit,
		Flow: func(c net.Conn) (netip.AddrPort, netip.AddrPort) {
			return netip.AddrPortFrom(clientIP, c.RemoteAddr().(*net.TCPAddr).AddrPort().Port()), up.addr
		}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Close(); hs.Close() })
	e := &env{addr: ln.Addr().String()}

	// One keep-alive client with a request done, then silent sockets up
	// to the limit.
	busy := e.raw(t)
	busy.send(t, "GET /public/a HTTP/1.1\r\nHost: h\r\n\r\n")
	if res, _ := busy.response(t, "GET"); res.StatusCode != 200 {
		t.Fatalf("got %d", res.StatusCode)
	}
	for range limit - 1 {
		c, err := e.dial(context.Background(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	for i := range 3 {
		c := &http.Client{Transport: &http.Transport{DialContext: e.dial, DisableKeepAlives: true}}
		if r := do(t, c, newReq(t, "GET", fmt.Sprintf("http://server/public/new%d", i), nil)); r.status != 200 {
			t.Fatalf("a new client at the limit: %+v", r)
		}
	}
	// The busy client kept its slot.
	busy.send(t, "GET /public/b HTTP/1.1\r\nHost: h\r\n\r\n")
	if res, _ := busy.response(t, "GET"); res.StatusCode != 200 {
		t.Fatalf("the busy client: got %d", res.StatusCode)
	}
	n := 0
	for _, ev := range rec.Events() {
		if ev.L7 != nil && ev.L7.Refused == proxy.RefusedSlotReclaimed {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no slot-reclaimed event in %+v", rec.Events())
	}
}
