package tls_test

import (
	"context"
	ctls "crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"portcullis.dev/portcullis/monitor"
)

// startGRPCUpstream serves the gRPC health service over TLS on serverIP
// with a certificate of c for name.
func startGRPCUpstream(t *testing.T, c *ca, name string) netip.AddrPort {
	t.Helper()
	crt, key := c.issue(t, "grpc "+name, name)
	cert, err := ctls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(serverIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// TestInterceptGRPC: grpc-go over intercepted TLS: an allowed method
// reaches the upstream, a denied one is PermissionDenied naming the
// policy; with an upstream the trust does not cover, UNAVAILABLE with the
// reason in the event.
func TestInterceptGRPC(t *testing.T) {
	internal, upCA := newCA(t, "internal CA"), newCA(t, "upstream CA")
	up := startGRPCUpstream(t, upCA, "grpc.example.com")
	e := newEnv(t, up, portRule(`
terminatingTLS: {secret: {name: front}}
originatingTLS: {secret: {name: back}}
rules:
  http:
  - {method: POST, path: /grpc.health.v1.Health/Check}
`))
	crt, key := internal.issue(t, "intercepted", "grpc.example.com")
	e.secrets.Put("default", "front", map[string][]byte{"tls.crt": crt, "tls.key": key})
	e.secrets.Put("default", "back", map[string][]byte{"ca.crt": upCA.PEM})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(internal.PEM)
	client := func() healthpb.HealthClient {
		cc, err := grpc.NewClient("passthrough:///"+e.addr.String(),
			grpc.WithTransportCredentials(credentials.NewTLS(&ctls.Config{ServerName: "grpc.example.com", RootCAs: roots})),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.dial(ctx, "", "") }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
	hc := client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v %v", r, err)
	}
	_, err := hc.List(ctx, &healthpb.HealthListRequest{})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "TrafficPolicy default/tls") {
		t.Fatalf("List: %v, want PermissionDenied naming the policy", err)
	}
	evs := e.rec.Wait(t, 2)
	if evs[0].Verdict != monitor.VerdictForwarded || evs[0].L7.Protocol != "grpc" || evs[0].L7.ServerName != "grpc.example.com" || evs[1].Verdict != monitor.VerdictDenied {
		t.Errorf("events %+v %+v", evs[0].L7, evs[1].L7)
	}

	e.rec.Reset()
	e.secrets.Put("default", "back", map[string][]byte{"ca.crt": newCA(t, "other CA").PEM})
	// A new client connection: one keeps the trust it started with.
	_, err = client().Check(ctx, &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable {
		t.Fatalf("Check with an untrusted upstream: %v, want Unavailable", err)
	}
	ev := e.rec.Wait(t, 1)[0]
	if ev.Verdict != monitor.VerdictError || !strings.Contains(ev.Reason, "certificate signed by unknown authority") {
		t.Errorf("event %s %q", ev.Verdict, ev.Reason)
	}
}
