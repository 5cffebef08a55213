package workloads

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveHTTPS runs RoleHTTPSServer: each request is reported as Seen and
// answered with its protocol, path and the client's server name; gRPC
// requests go to the health service.
func serveHTTPS(out *childOut, addr, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				out.write(line{Seen: &Seen{Method: r.Method, Path: r.URL.Path, Proto: "grpc", Remote: r.RemoteAddr}})
				gs.ServeHTTP(w, r)
				return
			}
			out.write(line{Seen: &Seen{Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto, Remote: r.RemoteAddr, Header: map[string]string{}}})
			fmt.Fprintf(w, "upstream %s %s sni=%s\n", r.Proto, r.URL.Path, r.TLS.ServerName)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
	}
	out.write(line{Ready: ln.Addr().String()})
	return srv.ServeTLS(ln, "", "")
}

// runGRPCTLSClient runs RoleGRPCTLSClient.
func runGRPCTLSClient(out *childOut, commands <-chan Command, addr, serverName, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in " + caFile)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: serverName, RootCAs: roots})))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	out.write(line{Ready: addr})
	for c := range commands {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var reply string
		switch c.Method {
		case "Check":
			var r *healthpb.HealthCheckResponse
			if r, err = hc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
				reply = r.Status.String()
			}
		case "List":
			_, err = hc.List(ctx, &healthpb.HealthListRequest{})
		default:
			err = fmt.Errorf("unknown method %q", c.Method)
		}
		cancel()
		st := status.Convert(err)
		out.write(line{Result: &Result{Code: st.Code().String(), Message: st.Message(), Reply: reply}})
	}
	return nil
}
