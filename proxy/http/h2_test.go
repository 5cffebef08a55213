package http_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"portcullis.dev/portcullis/monitor"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
)

// h2client is an HTTP/2 client with prior knowledge (h2c) through the
// proxy.
func (e *env) h2client() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return e.dial(ctx, network, addr)
		},
	}}
}

func TestH2AllowDeny(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.h2client()
	tests := []struct {
		method, path string
		header       http.Header
		status       int
		body         string
	}{
		{"GET", "/public/a?x=1", nil, 200, "hello GET /public/a?x=1 via HTTP/2.0"},
		{"GET", "/private", nil, 403, "Access denied\r\n"},
		{"POST", "/upload", nil, 200, "got 0  te=[] trailer=\"\""},
		{"GET", "/actions", http.Header{"X-Replaced": {"old"}, "X-Deleted": {"bad"}, "X-Logged": {"x"}}, 200, `added=["yes"] replaced=["new"] deleted=[] logged=["x"]`},
		{"GET", "/public/b", nil, 200, "hello GET /public/b via HTTP/2.0"},
	}
	for _, tc := range tests {
		req := newReq(t, tc.method, "http://app.example"+tc.path, nil)
		for k, v := range tc.header {
			req.Header[k] = v
		}
		res := do(t, c, req)
		if res.status != tc.status || res.body != tc.body {
			t.Errorf("%s %s: got %d %q, want %d %q", tc.method, tc.path, res.status, res.body, tc.status, tc.body)
		}
		if tc.status == 403 && (res.header.Get("Content-Type") != "text/plain" || res.header.Get("Content-Length") != "15") {
			t.Errorf("%s %s: denial header %v", tc.method, tc.path, res.header)
		}
	}
	evs := e.rec.Wait(t, len(tests))
	for i, tc := range tests {
		want := monitor.VerdictForwarded
		if tc.status == 403 {
			want = monitor.VerdictDenied
		}
		if ev := evs[i]; ev.Verdict != want || ev.L7.Protocol != "h2" || ev.L7.Path != tc.path || ev.L7.Status != tc.status || ev.Source.Pod != "client" {
			t.Errorf("event %d: %+v %+v", i, ev, ev.L7)
		}
	}
}

// The policy of each stream is resolved when it starts.
func TestH2PolicyChange(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	c := e.h2client()
	if res := do(t, c, newReq(t, "GET", "http://h/public/x", nil)); res.status != 200 {
		t.Fatalf("before: %d", res.status)
	}
	e.store.Set(snapshot(t, otherPolicy, up.addr.Port()))
	if res := do(t, c, newReq(t, "GET", "http://h/public/x", nil)); res.status != 403 || !res.reused {
		t.Fatalf("after: %d reused=%v, want 403 on the same connection", res.status, res.reused)
	}
}

// A malformed HTTP/2 connection gets a GOAWAY.
func TestH2MalformedGoAway(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	rc := e.raw(t)
	rc.send(t, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	fr := http2.NewFramer(rc.c, rc.br)
	fr.AllowIllegalWrites = true
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// DATA on stream 0 is a connection error.
	if err := fr.WriteData(0, false, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", ga.ErrCode)
			}
			return
		}
	}
}

// doorManager is a gRPC service registered by hand (no protoc), with
// well-known types as messages.
var doorManager = grpc.ServiceDesc{
	ServiceName: "doormanager.DoorManager",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetName", Handler: unary(func(in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String("door " + in.GetValue()), nil
		})},
		{MethodName: "SetAccessCode", Handler: unary(func(in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String("set"), nil
		})},
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		// Watch sends three events and a trailer.
		Handler: func(_ any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			for i := range 3 {
				if err := ss.SendMsg(wrapperspb.String(fmt.Sprintf("%s event %d", in.GetValue(), i))); err != nil {
					return err
				}
			}
			ss.SetTrailer(metadata.Pairs("x-events", "3"))
			return nil
		},
	}, {
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		// Chat echoes each message as it comes.
		Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := ss.SendMsg(wrapperspb.String("echo " + in.GetValue())); err != nil {
					return err
				}
			}
		},
	}},
}

func unary(f func(*wrapperspb.StringValue) (*wrapperspb.StringValue, error)) grpc.MethodHandler {
	return func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return f(in)
	}
}

func (e *env) grpcClient(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///proxy",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.dial(ctx, "", "") }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func call(cc *grpc.ClientConn, method, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, "/doormanager.DoorManager/"+method, wrapperspb.String(arg), out)
	return out.GetValue(), err
}

func TestGRPC(t *testing.T) {
	ln := listenServer(t)
	gs := grpc.NewServer()
	gs.RegisterService(&doorManager, struct{}{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	e := newEnv(t, addrOf(ln), webPolicy, nil)
	cc := e.grpcClient(t)

	if got, err := call(cc, "GetName", "A1"); err != nil || got != "door A1" {
		t.Fatalf("GetName: %q %v", got, err)
	}
	_, err := call(cc, "SetAccessCode", "1234")
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "TrafficPolicy default/web") {
		t.Fatalf("SetAccessCode: %v, want PermissionDenied naming the policy", err)
	}
	// The connection stays usable.
	if got, err := call(cc, "GetName", "B2"); err != nil || got != "door B2" {
		t.Fatalf("GetName after a denial: %q %v", got, err)
	}
	evs := e.rec.Wait(t, 3)
	for i, want := range []struct {
		verdict string
		grpc    int
	}{{monitor.VerdictForwarded, 0}, {monitor.VerdictDenied, 7}, {monitor.VerdictForwarded, 0}} {
		ev := evs[i]
		if ev.Verdict != want.verdict || ev.L7.Protocol != "grpc" || ev.L7.GRPCStatus == nil || *ev.L7.GRPCStatus != want.grpc || ev.L7.Method != "POST" {
			t.Errorf("event %d: %+v %+v", i, ev, ev.L7)
		}
	}
}

func TestGRPCUpstreamDown(t *testing.T) {
	e := newEnv(t, closedPort(t), webPolicy, nil)
	_, err := call(e.grpcClient(t), "GetName", "A1")
	if st := status.Convert(err); st.Code() != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	if ev := e.rec.Wait(t, 1)[0]; ev.Verdict != monitor.VerdictError || *ev.L7.GRPCStatus != 14 {
		t.Fatalf("event %+v %+v", ev, ev.L7)
	}
}

// A server stream passes through message by message, with its trailers.
func TestGRPCStream(t *testing.T) {
	ln := listenServer(t)
	gs := grpc.NewServer()
	gs.RegisterService(&doorManager, struct{}{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	e := newEnv(t, addrOf(ln), webPolicy, nil)
	cc := e.grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/doormanager.DoorManager/Watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(wrapperspb.String("door1")); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	var got []string
	for {
		m := new(wrapperspb.StringValue)
		if err := st.RecvMsg(m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetValue())
	}
	if strings.Join(got, ",") != "door1 event 0,door1 event 1,door1 event 2" || st.Trailer().Get("x-events")[0] != "3" {
		t.Fatalf("got %q trailer %v", got, st.Trailer())
	}
}

func TestH2HeaderCount(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, func(o *proxyhttp.Options) { o.MaxHeaderCount = 5 })
	req := newReq(t, "GET", "http://h/public/x", nil)
	for i := range 6 {
		req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	if res := do(t, e.h2client(), req); res.status != 431 {
		t.Fatalf("got %d, want 431", res.status)
	}
	if up.requests.Load() != 0 {
		t.Fatal("the request reached the upstream")
	}
}

// A bidirectional stream is relayed message by message both ways: each
// echo comes back before the next message is sent.
func TestGRPCBidiStream(t *testing.T) {
	ln := listenServer(t)
	gs := grpc.NewServer()
	gs.RegisterService(&doorManager, struct{}{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	e := newEnv(t, addrOf(ln), webPolicy, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.grpcClient(t).NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/doormanager.DoorManager/Chat")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := fmt.Sprint("m", i)
		if err := st.SendMsg(wrapperspb.String(msg)); err != nil {
			t.Fatal(err)
		}
		got := new(wrapperspb.StringValue)
		if err := st.RecvMsg(got); err != nil || got.GetValue() != "echo "+msg {
			t.Fatalf("got %q %v", got.GetValue(), err)
		}
	}
	st.CloseSend()
	if err := st.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

// The upstream sees the client's fields: the proxy's HTTP/2 client adds no
// User-Agent of its own.
func TestH2NothingAdded(t *testing.T) {
	up := startUpstream(t)
	e := newEnv(t, up.addr, webPolicy, nil)
	req := newReq(t, "GET", "http://h/public/x", nil)
	req.Header["User-Agent"] = []string{""} // the client sends none
	if res := do(t, e.h2client(), req); res.status != 200 || res.header.Get("X-Seen-User-Agent") != "[]" {
		t.Fatalf("got %d, upstream saw User-Agent %s", res.status, res.header.Get("X-Seen-User-Agent"))
	}
	req = newReq(t, "GET", "http://h/public/x", nil)
	req.Header.Set("User-Agent", "client/1")
	if res := do(t, e.h2client(), req); res.header.Get("X-Seen-User-Agent") != "[client/1]" {
		t.Fatalf("upstream saw User-Agent %s", res.header.Get("X-Seen-User-Agent"))
	}
}
