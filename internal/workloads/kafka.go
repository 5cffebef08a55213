package workloads

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka client commands (Command.Method of RoleKafkaClient).
const (
	// KafkaProduce produces Command.Value to Command.Topic on the
	// client's long-lived connections.
	KafkaProduce = "produce"
	// KafkaConsume reads Command.Topic from its start on new connections,
	// without a group; Result.Body has the values, one a line.
	KafkaConsume = "consume"
	// KafkaGroupConsume reads Command.Topic as a member of Command.Group
	// (join, sync, heartbeat) and commits what it read.
	KafkaGroupConsume = "group-consume"
	// KafkaRecords (RoleKafkaBroker) reads Command.Topic straight from
	// the broker, inside its pod: what reached the broker.
	KafkaRecords = "records"
)

// kafkaWait bounds a client's consume: long enough for a group to form;
// brokerWait bounds the broker's read of its own topic.
const (
	kafkaWait  = 8 * time.Second
	brokerWait = time.Second
)

// NewKafkaBroker starts a one-broker kfake cluster listening on addr
// (IP:PORT: it advertises that address to clients) with topics of one
// partition each.
func NewKafkaBroker(addr string, topics ...string) (*kfake.Cluster, error) {
	return kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }))
}

// runKafkaBroker serves the broker until stdin closes, answering
// KafkaRecords commands.
func runKafkaBroker(out *childOut, commands <-chan Command, args []string) error {
	if len(args) < 1 {
		return errors.New("want the address and the topics")
	}
	cl, err := NewKafkaBroker(args[0], args[1:]...)
	if err != nil {
		return err
	}
	defer cl.Close()
	addr := cl.ListenAddrs()[0]
	out.write(line{Ready: addr})
	for c := range commands {
		if c.Method != KafkaRecords {
			out.write(line{Result: &Result{Error: fmt.Sprintf("unknown broker command %q", c.Method)}})
			continue
		}
		vals, err := kafkaRead(addr, c.Topic, "", brokerWait)
		out.write(line{Result: kafkaResult(strings.Join(vals, "\n"), err, nil)})
	}
	return nil
}

// runKafkaClient is RoleKafkaClient: one franz-go client to the broker at
// args[0] for produces, new ones for consumes.
func runKafkaClient(out *childOut, commands <-chan Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one argument (the broker), got %q", args)
	}
	broker := args[0]
	var conns atomic.Int64
	// Cilium's produce role is Produce, Metadata and ApiVersions: an
	// idempotent producer's InitProducerID would need a rule of its own.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DisableIdempotentWrite(), kgo.RequestRetries(1),
		kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			conns.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, host)
		}))
	if err != nil {
		return err
	}
	defer cl.Close()
	out.write(line{Ready: broker})
	for c := range commands {
		switch c.Method {
		case KafkaProduce:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: c.Topic, Value: []byte(c.Value)}).FirstErr()
			cancel()
			out.write(line{Result: kafkaResult("", err, &conns)})
		case KafkaConsume, KafkaGroupConsume:
			vals, err := kafkaRead(broker, c.Topic, c.Group, kafkaWait)
			out.write(line{Result: kafkaResult(strings.Join(vals, "\n"), err, &conns)})
		default:
			out.write(line{Result: &Result{Error: fmt.Sprintf("unknown Kafka command %q", c.Method)}})
		}
	}
	return nil
}

// kafkaRead reads topic from its start until a poll brings nothing new,
// an error, or wait has passed; with group, as a member of group,
// committing what it read before it leaves.
func kafkaRead(broker, topic, group string, wait time.Duration) ([]string, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if group != "" {
		opts = append(opts, kgo.ConsumerGroup(group), kgo.DisableAutoCommit(), kgo.HeartbeatInterval(200*time.Millisecond))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var vals []string
	for {
		// After the first records, a short wait for more.
		pctx, pcancel := ctx, context.CancelFunc(func() {})
		if len(vals) > 0 {
			pctx, pcancel = context.WithTimeout(ctx, 500*time.Millisecond)
		}
		fs := cl.PollFetches(pctx)
		pcancel()
		if err := fs.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return vals, err
		}
		n := len(vals)
		fs.EachRecord(func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
		if len(vals) == n && (len(vals) > 0 || ctx.Err() != nil) {
			break
		}
	}
	if group != "" && len(vals) > 0 {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		if err := cl.CommitUncommittedOffsets(cctx); err != nil {
			return vals, fmt.Errorf("committing: %w", err)
		}
	}
	return vals, nil
}

// kafkaResult is a Kafka command's Result: Code is the Kafka error's name
// (TOPIC_AUTHORIZATION_FAILED, ...) or "OK", Error the whole error.
func kafkaResult(body string, err error, conns *atomic.Int64) *Result {
	r := &Result{Body: body, Code: "OK"}
	if conns != nil {
		r.Conns = conns.Load()
	}
	if err != nil {
		r.Code, r.Error = "ERROR", err.Error()
		if ke, ok := errors.AsType[*kerr.Error](err); ok {
			r.Code = ke.Message
		}
	}
	return r
}
