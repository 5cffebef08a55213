// Package proxybench holds the Go benchmarks of the L7 proxy's request
// path; bench/proxy/run.sh measures the whole proxy against haproxy.
//
//	go test -run '^$' -bench . -benchmem ./bench/proxy/
package proxybench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"portcullis.dev/portcullis/bench/proxy/echo"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// Loopback addresses of the benchmark's two pods.
var (
	clientIP = netip.MustParseAddr("127.0.0.2")
	originIP = netip.MustParseAddr("127.0.0.3")
)

const (
	pathAllowed = "/api/v2/items/abc-123/details" // the 10th rule only
	pathDenied  = "/api/v2/items/abc-123/secret"  // no rule
)

// store builds the policy snapshot of policy.yaml (the same ten rules as
// run.sh) with its HTTP and gRPC ports moved to httpPort and grpcPort, for
// the pods app=bench-client at clientIP and app=bench-origin at originIP.
func store(b *testing.B, httpPort, grpcPort uint16) *proxy.Store {
	b.Helper()
	y, err := os.ReadFile("policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	y = bytes.ReplaceAll(y, []byte(`port: "28080"`), []byte(fmt.Sprintf("port: %q", strconv.Itoa(int(httpPort)))))
	y = bytes.ReplaceAll(y, []byte(`port: "28051"`), []byte(fmt.Sprintf("port: %q", strconv.Itoa(int(grpcPort)))))
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, false)
	policytest.Apply(b, repo, string(y))
	client, origin := policytest.Pod("bench-client", clientIP), policytest.Pod("bench-origin", originIP)
	repo.UpsertEndpoint(client)
	repo.UpsertEndpoint(origin)
	snap := policytest.Snapshot(repo, client, origin)
	st := new(proxy.Store)
	st.Set(snap)
	return st
}

// BenchmarkDecide is the policy part of a request: resolving the flow
// against the snapshot (done per request) and judging the request against
// the ten rules.
func BenchmarkDecide(b *testing.B) {
	st := store(b, 28080, 28051)
	src := netip.AddrPortFrom(clientIP, 40000)
	dst := netip.AddrPortFrom(originIP, 28080)
	for _, tc := range []struct {
		name, path string
		allowed    bool
	}{{"allowed-by-10th-rule", pathAllowed, true}, {"denied", pathDenied, false}} {
		b.Run(tc.name, func(b *testing.B) {
			req := l7.HTTPRequest{Method: "GET", Path: tc.path, Host: "origin"}
			b.ReportAllocs()
			for b.Loop() {
				cp := st.Resolve(src, dst, 6)
				if d := cp.DecideHTTP(req); d.Allowed != tc.allowed {
					b.Fatalf("allowed %v, want %v", d.Allowed, tc.allowed)
				}
			}
		})
	}
}

// origin is a minimal HTTP/1.1 keep-alive server on loopback: a fixed 200
// for every request, so that the benchmark measures the proxy.
func origin(b *testing.B) netip.AddrPort {
	b.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(originIP.String(), "0"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
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
					if _, err := readHead(br); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// readHead reads a header section and returns its Content-Length.
func readHead(br *bufio.Reader) (int, error) {
	n := 0
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(l) <= 2 {
			return n, nil
		}
		if k, v, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(k), "Content-Length") {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
}

// roundTrip sends req on c and reads the response; it returns the status.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	l, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(l) < 12 {
		return 0, fmt.Errorf("status line %q", l)
	}
	st, err := strconv.Atoi(string(l[9:12]))
	if err != nil {
		return 0, err
	}
	n, err := readHead(br)
	if err != nil {
		return 0, err
	}
	_, err = br.Discard(n)
	return st, err
}

// BenchmarkHTTP1 is one keep-alive HTTP/1.1 request and its response over
// loopback TCP, sequentially on one connection: direct to the origin, and
// through the proxy (proxy/http's Server with the ten-rule policy, served
// the way the agent's listener serves it) allowed by the 10th rule or
// denied with 403. The difference between direct and allowed is the
// proxy's cost per request, system calls included.
func BenchmarkHTTP1(b *testing.B) {
	up := origin(b)
	pl := serveProxy(b, store(b, up.Port(), 1), up)
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
	for _, tc := range []struct {
		name, addr, path string
		status           int
	}{
		{"direct", up.String(), pathAllowed, 200},
		{"proxy-allowed", pl.String(), pathAllowed, 200},
		{"proxy-denied", pl.String(), pathDenied, 403},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := dialer.Dial("tcp", tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req := []byte("GET " + tc.path + " HTTP/1.1\r\nHost: origin\r\nUser-Agent: bench\r\n\r\n")
			// The first request dials the upstream.
			if st, err := roundTrip(c, br, req); err != nil || st != tc.status {
				b.Fatalf("status %d, %v; want %d", st, err, tc.status)
			}
			b.ReportAllocs()
			for b.Loop() {
				if st, err := roundTrip(c, br, req); err != nil || st != tc.status {
					b.Fatalf("status %d, %v; want %d", st, err, tc.status)
				}
			}
		})
	}
}

// serveProxy serves proxy/http's Server with the policy of st on a
// loopback listener, every connection as a flow to up (the way the
// standalone proxy does), and returns the listener's address.
func serveProxy(b *testing.B, st *proxy.Store, up netip.AddrPort) net.Addr {
	b.Helper()
	srv := proxyhttp.New(proxyhttp.Options{Resolver: st})
	b.Cleanup(func() { srv.Close() })
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pl.Close() })
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			src := netip.MustParseAddrPort(c.RemoteAddr().String())
			go srv.ServeConn(context.Background(), c, src, up)
		}
	}()
	return pl.Addr()
}

// BenchmarkGRPCUnary is one unary call (bench.Echo/Echo, allowed by the
// 10th gRPC rule) at a time with grpc-go on both ends, direct and through
// the proxy (h2c on both legs).
func BenchmarkGRPCUnary(b *testing.B) {
	ln, err := net.Listen("tcp", net.JoinHostPort(originIP.String(), "0"))
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	gs.RegisterService(&echo.ServiceDesc, echo.Impl{})
	go func() { _ = gs.Serve(ln) }()
	b.Cleanup(gs.Stop)
	up := netip.MustParseAddrPort(ln.Addr().String())
	pl := serveProxy(b, store(b, 1, up.Port()), up)

	in := wrapperspb.Bytes([]byte("portcullis benchmark payload"))
	for _, tc := range []struct{ name, addr string }{{"direct", up.String()}, {"proxy-allowed", pl.String()}} {
		b.Run(tc.name, func(b *testing.B) {
			// From the client pod's address, as the policy wants.
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP.AsSlice()}}
			cc, err := grpc.NewClient("passthrough:///"+tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					return dialer.DialContext(ctx, "tcp", addr)
				}))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			ctx := context.Background()
			if _, err := echo.Call(ctx, cc, in); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := echo.Call(ctx, cc, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
