package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/kafka"
	"portcullis.dev/portcullis/proxy/proxytest"
)

// The client dials from clientIP; the broker listens on serverIP.
var (
	clientIP = netip.MustParseAddr("127.0.0.2")
	serverIP = netip.MustParseAddr("127.0.0.3")
)

// kafkaPolicy lets the client produce to and consume from "allowed" only.
const kafkaPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: kafka
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      app: server
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: client
    toPorts:
    - ports:
      - port: "PORT"
        protocol: TCP
      rules:
        kafka:
        - role: produce
          topic: allowed
        - role: consume
          topic: allowed
`

func snapshot(t testing.TB, yaml string, port uint16) *proxy.Snapshot {
	t.Helper()
	repo := policy.NewRepository(policy.Options{})
	repo.UpsertNamespace("default", map[string]string{"kubernetes.io/metadata.name": "default"}, false)
	policytest.Apply(t, repo, strings.ReplaceAll(yaml, "PORT", fmt.Sprint(port)))
	client, server := policytest.Pod("client", clientIP), policytest.Pod("server", serverIP)
	repo.UpsertEndpoint(client)
	repo.UpsertEndpoint(server)
	return policytest.Snapshot(repo, client, server)
}

// env is a kfake broker on serverIP behind the proxy on 127.0.0.1.
type env struct {
	broker string // the broker's own address
	addr   string // the proxy's address
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cl, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(1, "allowed", "denied"),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, netip.AddrPortFrom(serverIP, 0).String())
		}),
	)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(cl.Close)
	e := &env{broker: cl.ListenAddrs()[0]}
	upstream := netip.MustParseAddrPort(e.broker)

	store := &proxy.Store{}
	store.Set(snapshot(t, kafkaPolicy, upstream.Port()))
	e.addr = serve(t, kafka.Options{Resolver: store}, true, upstream)
	return e
}

// serve runs a kafka.Server with o on 127.0.0.1 until the test ends;
// each connection is a flow from the client's address to upstream. With
// advertise, the server rewrites advertised brokers to its own address.
func serve(t testing.TB, o kafka.Options, advertise bool, upstream netip.AddrPort) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if advertise {
		o.Advertise = ln.Addr().String()
	}
	srv, err := kafka.New(o)
	if err != nil {
		t.Fatal(err)
	}
	proxytest.Serve(t, ln, upstream, srv, srv.Close)
	return ln.Addr().String()
}

// proxied is a client that talks to the broker through the proxy from
// the client endpoint's address.
func (e *env) proxied(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0)), Timeout: 5 * time.Second}
	// The produce role is Cilium's (Produce, Metadata, ApiVersions): an
	// idempotent producer's InitProducerID needs a rule of its own.
	opts = append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.Dialer(d.DialContext), kgo.RequestRetries(0), kgo.DisableIdempotentWrite()}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// direct reads every record of topic straight from the broker.
func (e *env) direct(t *testing.T, topic string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var got []string
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
}

func produce(t *testing.T, cl *kgo.Client, topic, value string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr()
}

func TestProduceAllowed(t *testing.T) {
	e := newEnv(t)
	if err := produce(t, e.proxied(t), "allowed", "hello"); err != nil {
		t.Fatalf("produce to an allowed topic: %v", err)
	}
	if got := e.direct(t, "allowed"); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("broker has %q in topic allowed, want [hello]", got)
	}
}

func TestProduceDenied(t *testing.T) {
	e := newEnv(t)
	err := produce(t, e.proxied(t), "denied", "secret")
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("produce to a denied topic: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	if got := e.direct(t, "denied"); len(got) != 0 {
		t.Fatalf("broker has %q in topic denied, want nothing", got)
	}
}

func TestConsume(t *testing.T) {
	e := newEnv(t)
	direct, err := kgo.NewClient(kgo.SeedBrokers(e.broker))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	for _, topic := range []string{"allowed", "denied"} {
		if err := produce(t, direct, topic, "v-"+topic); err != nil {
			t.Fatalf("producing to %s directly: %v", topic, err)
		}
	}

	cl := e.proxied(t, kgo.ConsumeTopics("allowed"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatalf("consuming an allowed topic: %v", err)
	}
	if rs := fs.Records(); len(rs) != 1 || string(rs[0].Value) != "v-allowed" {
		t.Fatalf("consumed %v from allowed, want v-allowed", rs)
	}

	cl = e.proxied(t, kgo.ConsumeTopics("denied"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("consuming a denied topic: no TOPIC_AUTHORIZATION_FAILED before the timeout")
		}
		if len(fs.Records()) > 0 {
			t.Fatalf("consumed %v from a denied topic", fs.Records())
		}
		if err := fs.Err(); err != nil {
			if !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Fatalf("consuming a denied topic: %v, want TOPIC_AUTHORIZATION_FAILED", err)
			}
			return
		}
	}
}
