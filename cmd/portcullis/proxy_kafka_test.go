package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"portcullis.dev/portcullis/monitor"
)

// The Kafka demo's clients, as `portcullis proxy --src` labels.
const (
	empireHQ      = "app=empire-hq"
	empireOutpost = "app=empire-outpost"
	empireBackup  = "app=empire-backup"
	kafkaBrokerLb = "app=kafka"
)

// kafkaTopics are the demo's topics, seeded in every test broker.
var kafkaTopics = []string{"empire-announce", "deathstar-plans"}

// kafkaBroker starts a kfake broker on the loopback with the demo's topics.
func kafkaBroker(t *testing.T) string {
	t.Helper()
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, kafkaTopics...),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl.ListenAddrs()[0]
}

// startKafkaProxy runs `portcullis proxy -o json` under examples/kafka for
// the client src in front of broker, as the broker pod's port 9092.
func startKafkaProxy(t *testing.T, src, broker string, more ...string) *runningProxy {
	t.Helper()
	args := []string{"--policy", kafkaDir, "--listen", "127.0.0.1:0", "--upstream", broker,
		"--src", src, "--dst", kafkaBrokerLb, "--dport", "9092", "-o", "json"}
	return startProxy(t, append(args, more...)...)
}

// events parses the proxy's JSON access lines so far.
func (rp *runningProxy) events(t *testing.T) []monitor.Event {
	t.Helper()
	var out []monitor.Event
	for _, l := range strings.Split(strings.TrimSpace(rp.stdout.String()), "\n") {
		if l == "" {
			continue
		}
		var e monitor.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("access line %q: %v", l, err)
		}
		out = append(out, e)
	}
	return out
}

// waitEvent waits until an access event satisfies match and returns it.
func (rp *runningProxy) waitEvent(t *testing.T, what string, match func(monitor.Event) bool) monitor.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range rp.events(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access event %s; got:\n%s", what, rp.stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kafkaEvent matches a Kafka request event of apiKey with verdict.
func kafkaEvent(apiKey, verdict string) func(monitor.Event) bool {
	return func(e monitor.Event) bool {
		return e.Verdict == verdict && e.L7 != nil && e.L7.Kafka != nil && e.L7.Kafka.APIKey == apiKey
	}
}

// brokerRecords reads every record of topic straight from the broker.
func brokerRecords(t *testing.T, broker, topic string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
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

// produceDirect writes value to topic straight to the broker.
func produceDirect(t *testing.T, broker, topic, value string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr(); err != nil {
		t.Fatalf("producing to %s directly: %v", topic, err)
	}
}

// kcat runs Debian's kcat (librdkafka) against broker with stdin, for at
// most 20 s; the test is skipped when kcat is not installed.
func kcat(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	path, lerr := exec.LookPath("kcat")
	if lerr != nil {
		t.Skip("kcat is not installed (Debian package kcat, in the Makefile's DEBS): the librdkafka client tests need it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// TestProxyKafkaKcatProduce: through the standalone proxy, empire-hq's
// kcat produces to empire-announce; an outpost's kcat produce to it fails
// with librdkafka's "Topic authorization failed" and the broker never
// gets the message.
func TestProxyKafkaKcatProduce(t *testing.T) {
	broker := kafkaBroker(t)
	hq := startKafkaProxy(t, empireHQ, broker)
	if _, stderr, err := kcat(t, "attack at dawn\n", "-b", hq.addr, "-P", "-t", "empire-announce"); err != nil {
		t.Fatalf("empire-hq kcat produce: %v\n%s", err, stderr)
	}
	if got := brokerRecords(t, broker, "empire-announce"); len(got) != 1 || got[0] != "attack at dawn" {
		t.Fatalf("broker has %q in empire-announce, want [attack at dawn]", got)
	}
	hq.waitEvent(t, "FORWARDED produce", kafkaEvent("produce", monitor.VerdictForwarded))

	outpost := startKafkaProxy(t, empireOutpost, broker, "--metrics-addr", "127.0.0.1:0")
	_, stderr, err := kcat(t, "rebel lies\n", "-b", outpost.addr, "-P", "-t", "empire-announce", "-X", "message.timeout.ms=5000")
	if err == nil || !strings.Contains(stderr, "Topic authorization failed") {
		t.Fatalf("outpost kcat produce: err %v, stderr:\n%s\nwant a failure saying Topic authorization failed", err, stderr)
	}
	if got := brokerRecords(t, broker, "empire-announce"); len(got) != 1 {
		t.Fatalf("broker has %q in empire-announce, want only hq's message", got)
	}
	e := outpost.waitEvent(t, "DENIED produce", kafkaEvent("produce", monitor.VerdictDenied))
	if e.L7.Kafka.ErrorCode != 29 || !strings.Contains(e.Reason, "empire-announce") || e.Policy == "" {
		t.Errorf("denial event %+v %+v: want error 29, the topic and the deciding policy", e, *e.L7.Kafka)
	}
	_, metrics := do(t, &http.Client{Timeout: 3 * time.Second}, "GET", outpost.metrics)
	for _, want := range []string{
		`portcullis_proxy_requests_total{protocol="kafka",verdict="DENIED"}`,
		`portcullis_proxy_requests_total{protocol="kafka",verdict="FORWARDED"}`,
		`portcullis_proxy_request_duration_seconds_count{protocol="kafka"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

// TestProxyKafkaKcatConsume: an outpost's kcat reads empire-announce;
// its read of deathstar-plans fails with Topic authorization failed;
// empire-backup reads deathstar-plans.
func TestProxyKafkaKcatConsume(t *testing.T) {
	broker := kafkaBroker(t)
	produceDirect(t, broker, "empire-announce", "parade on friday")
	produceDirect(t, broker, "deathstar-plans", "thermal exhaust port")
	consume := func(rp *runningProxy, topic string) (string, string, error) {
		return kcat(t, "", "-b", rp.addr, "-C", "-t", topic, "-o", "beginning", "-e", "-c", "1")
	}
	outpost := startKafkaProxy(t, empireOutpost, broker)
	if out, stderr, err := consume(outpost, "empire-announce"); err != nil || out != "parade on friday\n" {
		t.Fatalf("outpost kcat consume empire-announce: %q, %v\n%s", out, err, stderr)
	}
	out, stderr, err := consume(outpost, "deathstar-plans")
	if strings.Contains(out, "thermal") || !strings.Contains(stderr, "Topic authorization failed") {
		t.Fatalf("outpost kcat consume deathstar-plans: %q, %v, stderr:\n%s\nwant Topic authorization failed", out, err, stderr)
	}
	backup := startKafkaProxy(t, empireBackup, broker)
	if out, stderr, err := consume(backup, "deathstar-plans"); err != nil || out != "thermal exhaust port\n" {
		t.Fatalf("empire-backup kcat consume deathstar-plans: %q, %v\n%s", out, err, stderr)
	}
}

// TestProxyKafkaConsumerGroup: an outpost consumes empire-announce as a
// consumer group through the proxy with franz-go: it joins, syncs,
// heartbeats and commits its offset, and the broker has the commit.
func TestProxyKafkaConsumerGroup(t *testing.T) {
	broker := kafkaBroker(t)
	produceDirect(t, broker, "empire-announce", "muster at the outpost")
	rp := startKafkaProxy(t, empireOutpost, broker)
	cl, err := kgo.NewClient(kgo.SeedBrokers(rp.addr), kgo.ConsumerGroup("outposts"), kgo.ConsumeTopics("empire-announce"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.HeartbeatInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got []string
	for len(got) == 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil && ctx.Err() == nil {
			t.Fatalf("group consume of empire-announce: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 1 || got[0] != "muster at the outpost" {
		t.Fatalf("group consumed %q, want [muster at the outpost]", got)
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("committing through the proxy: %v", err)
	}
	for _, key := range []string{"findcoordinator", "joingroup", "syncgroup", "heartbeat", "offsetcommit"} {
		rp.waitEvent(t, "FORWARDED "+key, kafkaEvent(key, monitor.VerdictForwarded))
	}

	direct, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = "outposts"
	resp, err := req.RequestWith(ctx, direct)
	if err != nil {
		t.Fatalf("reading the commit from the broker: %v", err)
	}
	var committed int64 = -1
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if tp.Topic == "empire-announce" && p.Partition == 0 {
				committed = p.Offset
			}
		}
	}
	if committed != 1 {
		t.Fatalf("broker's committed offset of outposts on empire-announce/0: %d, want 1 (%+v)", committed, resp)
	}
}

// TestProxyKafkaAcksZeroDenied: a denied Produce with acks=0 expects no
// answer: it is dropped, with a DENIED event, and never reaches the
// broker; the connection stays open for the next request.
func TestProxyKafkaAcksZeroDenied(t *testing.T) {
	broker := kafkaBroker(t)
	rp := startKafkaProxy(t, empireOutpost, broker)
	cl, err := kgo.NewClient(kgo.SeedBrokers(rp.addr), kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite(), kgo.RequestRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "empire-announce", Value: []byte("unacknowledged")}).FirstErr(); err != nil {
		t.Fatalf("acks=0 produce: %v (the client expects no answer)", err)
	}
	e := rp.waitEvent(t, "DENIED produce", kafkaEvent("produce", monitor.VerdictDenied))
	if !strings.Contains(e.Reason, "acks=0: dropped without a response") {
		t.Errorf("reason %q, want the drop said", e.Reason)
	}
	if got := brokerRecords(t, broker, "empire-announce"); len(got) != 0 {
		t.Fatalf("broker has %q, want nothing", got)
	}
	// The same connection still serves the outpost's allowed requests.
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
		t.Fatalf("metadata after the dropped produce: %v", err)
	}
}

// rawKafka sends frame on a new connection to addr and reads until the
// proxy closes it; it returns what came back.
func rawKafka(t *testing.T, addr string, frame []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("connection still open after %x...: %v", frame[:min(len(frame), 16)], err)
	}
	return b
}

// requestFrame frames req (at its version) as client "rogue" sends it.
func requestFrame(req kmsg.Request, version int16) []byte {
	req.SetVersion(version)
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("rogue")).AppendRequest(nil, req, 7)
}

// TestProxyKafkaBadRequests: what the proxy cannot judge closes the
// connection without forwarding anything, with an ERROR event saying
// why: a version above what ApiVersions advertised (the event names the
// API key and version), a size over socket.request.max.bytes, a
// negative size.
func TestProxyKafkaBadRequests(t *testing.T) {
	broker := kafkaBroker(t)
	produce := kmsg.NewPtrProduceRequest()
	produce.Acks = -1
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "empire-announce"
	produce.Topics = append(produce.Topics, pt)
	size := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	for _, tc := range []struct {
		name  string
		args  []string
		frame []byte
		want  string
		key   string
		ver   int16
	}{
		{"version above the clamp", nil, requestFrame(produce, 13), "produce v13 (the proxy decodes v0-v12): connection closed", "produce", 13},
		{"over the default size bound", nil, append(size(100<<20+1), 0, 0), "request size 104857601 outside 0-104857600 bytes", "", 0},
		{"over a configured bound", []string{"--kafka-max-request-bytes", "1024"}, append(size(1025), 0, 0), "request size 1025 outside 0-1024 bytes", "", 0},
		{"negative size", nil, size(0xffffff00), "request size -256 outside", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := startKafkaProxy(t, empireHQ, broker, tc.args...)
			if got := rawKafka(t, rp.addr, tc.frame); len(got) != 0 {
				t.Errorf("got %d bytes back, want the connection closed without an answer", len(got))
			}
			e := rp.waitEvent(t, "ERROR", func(e monitor.Event) bool { return e.Verdict == monitor.VerdictError })
			if !strings.Contains(e.Reason, tc.want) {
				t.Errorf("reason %q, want %q", e.Reason, tc.want)
			}
			if tc.key != "" && (e.L7 == nil || e.L7.Kafka == nil || e.L7.Kafka.APIKey != tc.key || e.L7.Kafka.APIVersion != tc.ver) {
				t.Errorf("event %+v does not name %s v%d", e.L7, tc.key, tc.ver)
			}
		})
	}
	if got := brokerRecords(t, broker, "empire-announce"); len(got) != 0 {
		t.Fatalf("broker has %q, want nothing", got)
	}
}

// TestProxyKafkaAgreesWithTrace runs each request through `portcullis
// policy trace --kafka` and through the standalone proxy (a real request
// to a kfake broker) under examples/kafka: ALLOWED must be FORWARDED and
// DENIED must be DENIED.
func TestProxyKafkaAgreesWithTrace(t *testing.T) {
	broker := kafkaBroker(t)
	produce := func(topics ...string) kmsg.Request {
		r := kmsg.NewPtrProduceRequest()
		r.Acks, r.TimeoutMillis = -1, 1000
		for _, n := range topics {
			t := kmsg.NewProduceRequestTopic()
			t.Topic = n
			r.Topics = append(r.Topics, t)
		}
		return r
	}
	fetch := func(topics ...string) kmsg.Request {
		r := kmsg.NewPtrFetchRequest()
		r.MaxWaitMillis, r.MaxBytes, r.SessionEpoch = 0, 1<<20, -1
		for _, n := range topics {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = n
			r.Topics = append(r.Topics, t)
		}
		return r
	}
	joinGroup := func() kmsg.Request {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Group, r.ProtocolType, r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = "outposts", "consumer", 10000, 1000
		return r
	}
	metadata := func(topics ...string) kmsg.Request {
		r := kmsg.NewPtrMetadataRequest()
		for _, n := range topics {
			t := kmsg.NewMetadataRequestTopic()
			t.Topic = kmsg.StringPtr(n)
			r.Topics = append(r.Topics, t)
		}
		return r
	}
	createTopics := func(topic string) kmsg.Request {
		r := kmsg.NewPtrCreateTopicsRequest()
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic, t.NumPartitions, t.ReplicationFactor = topic, 1, 1
		r.Topics = append(r.Topics, t)
		r.TimeoutMillis = 1000
		return r
	}
	for _, tc := range []struct {
		src, trace string
		req        kmsg.Request
		version    int16
		want       string // the trace's verdict, as examples/kafka says
	}{
		{empireHQ, "produce:empire-announce", produce("empire-announce"), 9, "ALLOWED"},
		{empireHQ, "produce:deathstar-plans", produce("deathstar-plans"), 3, "ALLOWED"},
		{empireHQ, "produce:empire-announce,rebel-base", produce("empire-announce", "rebel-base"), 9, "DENIED"},
		{empireHQ, "fetch:empire-announce", fetch("empire-announce"), 12, "DENIED"},
		{empireHQ, "createtopics:rebel-base", createTopics("rebel-base"), 5, "DENIED"},
		{empireOutpost, "fetch:empire-announce", fetch("empire-announce"), 12, "ALLOWED"},
		{empireOutpost, "fetch:deathstar-plans", fetch("deathstar-plans"), 4, "DENIED"},
		{empireOutpost, "fetch:empire-announce,deathstar-plans", fetch("empire-announce", "deathstar-plans"), 12, "DENIED"},
		{empireOutpost, "produce:empire-announce", produce("empire-announce"), 9, "DENIED"},
		{empireOutpost, "joingroup", joinGroup(), 5, "ALLOWED"},
		{empireOutpost, "metadata", metadata(), 9, "ALLOWED"},
		{empireOutpost, "metadata:deathstar-plans", metadata("deathstar-plans"), 9, "DENIED"},
		{empireBackup, "fetch:deathstar-plans", fetch("deathstar-plans"), 12, "ALLOWED"},
		{empireBackup, "fetch:empire-announce", fetch("empire-announce"), 12, "DENIED"},
	} {
		t.Run(strings.TrimPrefix(tc.src, "app=")+"/"+tc.trace, func(t *testing.T) {
			stdout, stderr, code := run("policy", "trace", "-f", kafkaDir, "--src", tc.src, "--dst", kafkaBrokerLb,
				"--dport", "9092", "--kafka", tc.trace, "--kafka-api-version", fmt.Sprint(tc.version), "-o", "json")
			if code != 0 {
				t.Fatalf("trace: exit %d: %s", code, stderr)
			}
			var tr struct{ Verdict string }
			if err := json.Unmarshal([]byte(stdout), &tr); err != nil {
				t.Fatalf("trace output %q: %v", stdout, err)
			}
			if tr.Verdict != tc.want {
				t.Errorf("trace verdict %s, want %s", tr.Verdict, tc.want)
			}
			want := map[string]string{"ALLOWED": monitor.VerdictForwarded, "DENIED": monitor.VerdictDenied}[tr.Verdict]
			if want == "" {
				t.Fatalf("trace verdict %q", tr.Verdict)
			}
			rp := startKafkaProxy(t, tc.src, broker)
			c, err := net.DialTimeout("tcp", rp.addr, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(requestFrame(tc.req, tc.version)); err != nil {
				t.Fatal(err)
			}
			var hdr [8]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if corr := binary.BigEndian.Uint32(hdr[4:]); corr != 7 {
				t.Errorf("answer to correlation id %d, want 7", corr)
			}
			key := tc.req.Key()
			e := rp.waitEvent(t, "for the request", func(e monitor.Event) bool {
				return e.L7 != nil && e.L7.Kafka != nil && e.L7.Kafka.APIVersion == tc.version && strings.EqualFold(e.L7.Kafka.APIKey, kmsg.NameForKey(key))
			})
			if e.Verdict != want {
				t.Errorf("trace says %s, the proxy %s (%s)", tr.Verdict, e.Verdict, e.Reason)
			}
		})
	}
}

func TestAdvertisedAddr(t *testing.T) {
	for _, tc := range []struct{ listen, bound, want string }{
		{"127.0.0.1:0", "127.0.0.1:41234", "127.0.0.1:41234"},
		{"kafka.example:9092", "10.0.0.1:9092", "kafka.example:9092"},
		{":9092", "[::]:9092", "127.0.0.1:9092"},
		{"0.0.0.0:9092", "0.0.0.0:9092", "127.0.0.1:9092"},
		{"[::]:9092", "[::]:9092", "[::1]:9092"},
	} {
		got, err := advertisedAddr(tc.listen, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.bound)))
		if err != nil || got != tc.want {
			t.Errorf("advertisedAddr(%q, %s) = %q, %v; want %q", tc.listen, tc.bound, got, err, tc.want)
		}
	}
}
