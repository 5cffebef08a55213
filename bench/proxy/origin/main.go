// Command origin is the upstream server of the proxy benchmarks: HTTP/1.1
// and h2c (prior knowledge) on one port, gRPC on another. Every HTTP
// request gets 200 and a short body whatever its path (the proxy or
// haproxy in front decides what is allowed); the gRPC service
// bench.Echo/Echo (package echo) returns its BytesValue argument.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"

	"portcullis.dev/portcullis/bench/proxy/echo"
)

var body = []byte("ok\n")

func main() {
	httpAddr := flag.String("http", "127.0.0.1:28080", "HTTP/1.1 and h2c listen address")
	grpcAddr := flag.String("grpc", "127.0.0.1:28051", "gRPC listen address (empty: none)")
	flag.Parse()

	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	hs := &http.Server{
		Handler: h2c.NewHandler(h, &http2.Server{MaxConcurrentStreams: 1000}),
		// The idle-connection benchmark holds connections for a while.
		IdleTimeout: 5 * time.Minute,
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(hs.Serve(ln)) }()

	if *grpcAddr != "" {
		gl, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			log.Fatal(err)
		}
		gs := grpc.NewServer()
		gs.RegisterService(&echo.ServiceDesc, echo.Impl{})
		go func() { log.Fatal(gs.Serve(gl)) }()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
