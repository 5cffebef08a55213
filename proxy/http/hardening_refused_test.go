package http_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// TestRefusalsCounted: the proxy's own refusals each produce an event and
// count in portcullis_proxy_refused_total{reason}: a header-timeout cut,
// a 431 on HTTP/1.1 and the 431 x/net's HTTP/2 server answers by itself,
// an HTTP/2 abuse GOAWAY, and a client's malformed chunk (400, not a 502
// blamed on the upstream).
func TestRefusalsCounted(t *testing.T) {
	up := startUpstream(t)
	m, err := proxy.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var e *env
	e = newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) {
		o.ReadHeaderTimeout = 300 * time.Millisecond
		o.MaxHeaderBytes = 4096
		o.Record = func(ev monitor.Event) { m.Observe(ev); e.rec.Record(ev) }
	})
	count := func(reason string) float64 {
		var d dto.Metric
		if err := m.Refused.WithLabelValues(reason).Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetCounter().GetValue()
	}
	waitCount := func(reason string) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); count(reason) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("portcullis_proxy_refused_total{reason=%q} = 0", reason)
			}
		}
	}

	// A silent connection cut at the header deadline.
	c, err := e.dial(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitCount("header-timeout")

	// Too many fields on HTTP/1.1.
	rc := e.raw(t)
	rc.send(t, "GET /public/a HTTP/1.1\r\nHost: h\r\n"+strings.Repeat("X-A: b\r\n", 101)+"\r\n")
	if res, _ := rc.response(t, "GET"); res.StatusCode != 431 {
		t.Fatalf("got %d, want 431", res.StatusCode)
	}
	waitCount("header-too-large")

	// A header list too large for x/net's server, which answers 431 itself.
	before := count("header-too-large")
	a := newH2Attacker(t, e)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "server"}, {":path", "/public/a"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// Over the limit within one frame: x/net answers 431 (a list far
	// over it, or over it in a later CONTINUATION, is a connection error).
	for i := range 5 {
		enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-f%d", i), Value: strings.Repeat("v", 1000)})
	}
	if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for status := ""; status == ""; {
		f, err := a.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY %v %q", g.ErrCode, g.DebugData())
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			if status = h.PseudoValue("status"); status != "431" {
				t.Fatalf("got %s, want 431", status)
			}
		}
	}
	for deadline := time.Now().Add(3 * time.Second); count("header-too-large") == before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("x/net's 431 was not counted")
		}
	}

	// An HTTP/2 abuse GOAWAY.
	a = newH2Attacker(t, e)
	go func() {
		for range 1000 {
			if a.fr.WritePing(false, [8]byte{}) != nil {
				return
			}
		}
	}()
	if code, err := a.goAway(); err != nil || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v %v", code, err)
	}
	waitCount("h2-abuse")

	// A malformed chunk from the client is its error: 400.
	rc = e.raw(t)
	rc.send(t, "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	if res, body := rc.response(t, "POST"); res.StatusCode != 400 {
		t.Fatalf("malformed chunk: got %d %q, want 400", res.StatusCode, body)
	}
	waitCount("bad-request")
}
