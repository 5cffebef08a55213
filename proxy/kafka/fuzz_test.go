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

// FuzzResponsePath feeds the response rewrites (the ApiVersions clamp,
// the advertised-address rewrite of Metadata and FindCoordinator)
// arbitrary broker responses: they return an error or a response that
// decodes, never panic.
func FuzzResponsePath(f *testing.F) {
	av := kmsg.NewPtrApiVersionsResponse()
	av.Version = 3
	av.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: 0, MaxVersion: 13}, {ApiKey: 18, MaxVersion: 4}}
	md := kmsg.NewPtrMetadataResponse()
	md.Version = 12
	md.Brokers = []kmsg.MetadataResponseBroker{{NodeID: 1, Host: "broker", Port: 9092}}
	fc := kmsg.NewPtrFindCoordinatorResponse()
	fc.Version = 4
	fc.Coordinators = []kmsg.FindCoordinatorResponseCoordinator{{Key: "g", NodeID: 1, Host: "broker", Port: 9092}}
	for _, r := range []kmsg.Response{av, md, fc} {
		f.Add(r.Key(), r.GetVersion(), appendResponse(nil, 7, r)[4:])
	}
	adv, err := newAdvertiser("127.0.0.1:9092")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key, version int16, body []byte) {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		frame = append(frame, body...)
		var out []byte
		var err error
		switch {
		case key == keyApiVersions && version >= 0 && version <= maxDecodable(keyApiVersions):
			out, err = clampAPIVersions(frame, version)
		case adv.rewrites(key) && version >= 0 && version <= maxDecodable(key):
			out, err = adv.rewrite(frame, key, version)
		default:
			return
		}
		if err != nil {
			return
		}
		resp := kmsg.ResponseForKey(key)
		resp.SetVersion(version)
		b, err := responseBody(out, resp)
		if err == nil && key == keyApiVersions && len(b) >= 2 && int16(binary.BigEndian.Uint16(b)) == errUnsupportedVersion {
			resp.SetVersion(0)
		}
		if err == nil {
			err = resp.ReadFrom(b)
		}
		if err != nil {
			t.Fatalf("rewritten %s v%d does not decode: %v", kmsg.NameForKey(key), version, err)
		}
	})
}
