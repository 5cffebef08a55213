package kafka_test

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/kafka"
)

// benchValue is the 1 KiB value of every benchmark record: random, and
// records go uncompressed, so the bytes measured are the bytes moved.
var benchValue = func() []byte {
	b := make([]byte, 1024)
	_, _ = rand.Read(b)
	return b
}()

// benchTargets name the two ways to the broker each benchmark measures
// in one run: straight to kfake, and through the proxy as `portcullis
// proxy` serves Kafka (the advertise rewrite on, the policy judging each
// request).
var benchTargets = []string{"direct", "proxy"}

// benchTarget starts a kfake broker (its own, so that records of earlier
// runs do not pile up) and, for "proxy", the proxy in front of it; it
// returns the broker's address and the one the client uses.
func benchTarget(b testing.TB, target string) (broker, addr string) {
	b.Helper()
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "allowed"),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, netip.AddrPortFrom(serverIP, 0).String())
		}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	broker = cl.ListenAddrs()[0]
	if target == "direct" {
		return broker, broker
	}
	upstream := netip.MustParseAddrPort(broker)
	store := &proxy.Store{}
	store.Set(snapshot(b, kafkaPolicy, upstream.Port()))
	return broker, serve(b, kafka.Options{Resolver: store}, true, upstream)
}

// benchClient is a franz-go client from the client endpoint's address,
// with franz-go's default batching.
func benchClient(b testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	b.Helper()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0))}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.Dialer(d.DialContext), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchCompression(kgo.NoCompression())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return cl
}

// produceAll produces n 1 KiB records asynchronously (franz-go batches
// them) and waits for every acknowledgement.
func produceAll(b testing.TB, cl *kgo.Client, n int) {
	b.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	wg.Add(n)
	for range n {
		cl.Produce(context.Background(), &kgo.Record{Topic: "allowed", Value: benchValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

// BenchmarkProduce: produce throughput of 1 KiB records, one op a record.
func BenchmarkProduce(b *testing.B) {
	for _, tg := range benchTargets {
		b.Run(tg, func(b *testing.B) {
			_, addr := benchTarget(b, tg)
			cl := benchClient(b, addr)
			produceAll(b, cl, 100) // metadata and connections
			b.SetBytes(int64(len(benchValue)))
			b.ResetTimer()
			produceAll(b, cl, b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkConsume: fetch throughput of 1 KiB records, one op a record:
// b.N records are produced straight to the broker first (not timed),
// then read from the start.
func BenchmarkConsume(b *testing.B) {
	for _, tg := range benchTargets {
		b.Run(tg, func(b *testing.B) {
			broker, addr := benchTarget(b, tg)
			produceAll(b, benchClient(b, broker), b.N)
			cl := benchClient(b, addr, kgo.ConsumeTopics("allowed"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			b.SetBytes(int64(len(benchValue)))
			b.ResetTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			for n := 0; n < b.N; {
				fs := cl.PollFetches(ctx)
				if err := fs.Err(); err != nil {
					b.Fatal(err)
				}
				n += fs.NumRecords()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// TestProduceLatency measures produce latency (one 1 KiB record a
// request, acks=all) at a fixed rate, direct and through the proxy in one
// run, and logs p50 and p99. It runs with -run TestProduceLatency -v
// (skipped in -short).
func TestProduceLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("a benchmark")
	}
	const rate, count = 500, 2500 // requests per second, requests
	for _, tg := range benchTargets {
		_, addr := benchTarget(t, tg)
		cl := benchClient(t, addr)
		produceAll(t, cl, 100)
		lat := make([]time.Duration, 0, count)
		tick := time.NewTicker(time.Second / rate)
		for range count {
			<-tick.C
			start := time.Now()
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "allowed", Value: benchValue}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		tick.Stop()
		slices.Sort(lat)
		t.Logf("%-6s %d req/s, %d requests: p50 %v p99 %v", tg, rate, count,
			lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	}
}
