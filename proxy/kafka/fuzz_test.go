package kafka

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzReadRequest feeds decodeRequest arbitrary request bodies: it must
// return an error or a request, never panic.
func FuzzReadRequest(f *testing.F) {
	rf := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
	for _, m := range []kmsg.Request{
		&kmsg.ProduceRequest{Version: 9, Acks: -1, Topics: []kmsg.ProduceRequestTopic{{Topic: "t"}}},
		&kmsg.FetchRequest{Version: 12, Topics: []kmsg.FetchRequestTopic{{Topic: "t"}}},
		&kmsg.MetadataRequest{Version: 12},
		&kmsg.ApiVersionsRequest{Version: 3},
	} {
		f.Add(rf.AppendRequest(nil, m, 7)[4:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		frame = append(frame, body...)
		r, err := decodeRequest(frame)
		if err == nil && r.msg == nil {
			t.Fatal("decoded a request without a body")
		}
	})
}
