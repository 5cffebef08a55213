package kafka_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestPipelinedOrder: requests sent back to back get their responses in
// request order, although the proxy answers a denial at once and the
// broker holds the fetch before it: a fetch that waits 300 ms on an
// empty topic, a denied produce, a metadata request. The connection
// stays usable after the denial.
func TestPipelinedOrder(t *testing.T) {
	e := newEnv(t)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes, fetch.SessionEpoch = 300, 1, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "allowed"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.PartitionMaxBytes = 0, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	fetch.SetVersion(11)

	produce := kmsg.NewPtrProduceRequest()
	produce.Acks, produce.TimeoutMillis = -1, 1000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "denied"
	produce.Topics = append(produce.Topics, pt)
	produce.SetVersion(9)

	metadata := kmsg.NewPtrMetadataRequest()
	metadata.SetVersion(9)

	rf := kmsg.NewRequestFormatter(kmsg.FormatterClientID("pipeline"))
	var batch []byte
	for i, r := range []kmsg.Request{fetch, produce, metadata} {
		// AppendRequest writes the size at dst[0:]: one frame at a time.
		batch = append(batch, rf.AppendRequest(nil, r, int32(i+1))...)
	}
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientIP, 0)), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	read := func() (int32, []byte) {
		t.Helper()
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("reading a response: %v", err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		return int32(binary.BigEndian.Uint32(hdr[4:])), body
	}
	for want := int32(1); want <= 3; want++ {
		corr, body := read()
		if corr != want {
			t.Fatalf("response %d has correlation id %d: out of request order", want, corr)
		}
		if want == 2 {
			if time.Since(start) < 250*time.Millisecond {
				t.Errorf("the denial came %v after the requests, before the fetch's response was due", time.Since(start))
			}
			resp := kmsg.NewPtrProduceResponse()
			resp.SetVersion(9)
			if err := resp.ReadFrom(body[1:]); err != nil { // the flexible header's empty tags
				t.Fatal(err)
			}
			if len(resp.Topics) != 1 || resp.Topics[0].Topic != "denied" {
				t.Fatalf("denial %+v", resp)
			}
		}
	}
}
