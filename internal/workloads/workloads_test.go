package workloads

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestDeathstar(t *testing.T) {
	var seen []string
	h := Deathstar(func(r *http.Request) { seen = append(seen, r.Method+" "+r.URL.Path) })
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"POST", "/v1/request-landing", 200, "Ship landed\n"},
		{"PUT", "/v1/exhaust-port", 503, "Panic: deathstar exploded\n"},
		{"GET", "/v1/", 200, `{"name":"Death Star"`},
		{"GET", "/v1/request-landing", 405, ""},
		{"GET", "/v2/", 404, ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.status || !strings.HasPrefix(w.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, w.Code, w.Body.String(), tc.status, tc.body)
		}
	}
	if len(seen) != 5 {
		t.Errorf("seen %q, want 5 requests", seen)
	}
}

// TestDeathstarH2C: an HTTP/2 client with prior knowledge (no TLS, no
// upgrade), as curl --http2-prior-knowledge, over an in-memory pipe.
func TestDeathstarH2C(t *testing.T) {
	var proto string
	h := Deathstar(func(r *http.Request) { proto = r.Proto })
	ln := bufconn.Listen(1 << 16)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	hc := &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return ln.DialContext(ctx)
		},
	}}
	resp, err := hc.Post("http://deathstar/v1/request-landing", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "Ship landed\n" || resp.Proto != "HTTP/2.0" || proto != "HTTP/2.0" {
		t.Errorf("got %s %d %q (server saw %s), want HTTP/2.0 200 Ship landed", resp.Proto, resp.StatusCode, body, proto)
	}
}

func TestDoorManager(t *testing.T) {
	ln := bufconn.Listen(1 << 16)
	var seen []string
	srv := NewDoorManager(func(m, _ string) { seen = append(seen, m) })
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///doormanager",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	want := map[string]string{
		"GetName":            "Spaceport door #1",
		"GetLocation":        "Cloud City, platform 327 (lat 10.3, long 20.4)",
		"GetStatus":          "CLOSED",
		"RequestMaintenance": "true",
		"SetAccessCode":      "true",
	}
	for _, m := range DoorManagerMethods {
		got, err := CallDoorManager(context.Background(), cc, m)
		if err != nil || got != want[m] {
			t.Errorf("%s: %q, %v; want %q", m, got, err, want[m])
		}
	}
	if len(seen) != len(DoorManagerMethods) || seen[0] != "/cloudcity.DoorManager/GetName" {
		t.Errorf("server saw %q", seen)
	}
	// A method the service does not have: the client refuses to build
	// it, and the server answers Unimplemented.
	if _, err := CallDoorManager(context.Background(), cc, "OpenAllDoors"); err == nil {
		t.Error("CallDoorManager(OpenAllDoors): no error")
	}
	err = cc.Invoke(context.Background(), "/cloudcity.DoorManager/OpenAllDoors", wrapperspb.UInt32(1), &wrapperspb.BoolValue{})
	if code := status.Code(err); code != codes.Unimplemented {
		t.Errorf("OpenAllDoors: %v, want Unimplemented", err)
	}
}

// TestKafkaRead: the Kafka workloads' read, on a kfake broker on the
// loopback: plain, and as a group whose commit a second read resumes
// from.
func TestKafkaRead(t *testing.T) {
	cl, err := NewKafkaBroker("127.0.0.1:0", "announce")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	addr := cl.ListenAddrs()[0]
	pc, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.ProduceSync(context.Background(), &kgo.Record{Topic: "announce", Value: []byte("a")}, &kgo.Record{Topic: "announce", Value: []byte("b")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if vals, err := kafkaRead(addr, "announce", "", brokerWait); err != nil || strings.Join(vals, ",") != "a,b" {
		t.Errorf("read: %q, %v; want a,b", vals, err)
	}
	if vals, err := kafkaRead(addr, "announce", "g", kafkaWait); err != nil || strings.Join(vals, ",") != "a,b" {
		t.Errorf("group read: %q, %v; want a,b", vals, err)
	}
	if vals, err := kafkaRead(addr, "announce", "g", 2*time.Second); err != nil || len(vals) != 0 {
		t.Errorf("group read after the commit: %q, %v; want nothing", vals, err)
	}
}
