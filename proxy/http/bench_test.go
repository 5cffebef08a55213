package http_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy/policytest"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// benchPolicy has ten HTTP rules; the benchmark's request matches the
// last one, so every rule is tried.
func benchPolicy() string {
	var b strings.Builder
	b.WriteString("http:\n")
	for i := range 10 {
		fmt.Fprintf(&b, "- method: GET\n  path: \"/api/v1/resource%d(/.*)?\"\n", i)
	}
	return policytest.Ingress("bench", "PORT", b.String())
}

// benchUpstream answers every request with a fixed response, without
// allocating, so that the benchmark's allocations are the proxy's.
func benchUpstream(b *testing.B) net.Listener {
	ln := listenServer(b)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if err := skipHead(br); err != nil {
						return
					}
					if _, err := c.Write(benchResponse); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

var benchResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")

var ok200 = []byte("HTTP/1.1 200 ")

// skipHead reads a message head.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			return nil
		}
	}
}

// BenchmarkHTTP1Request measures one allowed request through the proxy on
// a keep-alive client connection, under a 10-rule policy, with a pooled
// upstream connection: the client's and upstream's costs are minimal, so
// time and allocations are essentially the proxy's (verdict included).
func BenchmarkHTTP1Request(b *testing.B) {
	ln := benchUpstream(b)
	// Events are built as the agent would have them, then dropped.
	e := newEnv(b, addrOf(ln), benchPolicy(), func(o *proxyhttp.Options) { o.Record = func(monitor.Event) {} })
	c, err := e.dial(b.Context(), "", "")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /api/v1/resource9/items?id=3 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	body := make([]byte, 2)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		status, err := br.ReadSlice('\n')
		if err != nil || !bytes.HasPrefix(status, ok200) {
			b.Fatalf("status %q %v", status, err)
		}
		if err := skipHead(br); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, body); err != nil {
			b.Fatal(err)
		}
	}
}
