package workloads

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
)

// serveHTTPS runs RoleHTTPSServer: each request is reported as Seen and
// answered with its protocol, path and the client's server name.
func serveHTTPS(out *childOut, addr, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out.write(line{Seen: &Seen{Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto, Remote: r.RemoteAddr, Header: map[string]string{}}})
			fmt.Fprintf(w, "upstream %s %s sni=%s\n", r.Proto, r.URL.Path, r.TLS.ServerName)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
	}
	out.write(line{Ready: ln.Addr().String()})
	return srv.ServeTLS(ln, "", "")
}
