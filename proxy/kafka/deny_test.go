package kafka

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestDenialResponses: for every API key the proxy answers, and every
// version it decodes, a denial of a request naming a topic, partition
// and group is a response a client decodes, with the request's
// correlation id and the error code on what the request named.
func TestDenialResponses(t *testing.T) {
	for key, d := range denials {
		if d.answer == nil {
			continue
		}
		for v := int16(0); v <= maxDecodable(key); v++ {
			req := named(key)
			req.SetVersion(v)
			name := kmsg.NameForKey(key)
			r := &request{key: key, version: v, correlationID: 42, msg: req}
			resp := denialResponse(r, errTopicAuthorizationFailed)
			frame := appendResponse(nil, 42, resp)
			if got := int(binary.BigEndian.Uint32(frame)); got != len(frame)-4 {
				t.Fatalf("%s v%d: size %d, frame %d", name, v, got, len(frame)-4)
			}
			if got := int32(binary.BigEndian.Uint32(frame[4:])); got != 42 {
				t.Errorf("%s v%d: correlation id %d", name, v, got)
			}
			back := kmsg.ResponseForKey(key)
			back.SetVersion(v)
			body, err := responseBody(frame, back)
			if err != nil {
				t.Fatalf("%s v%d: %v", name, v, err)
			}
			if err := back.ReadFrom(body); err != nil {
				t.Fatalf("%s v%d: the denial does not decode: %v", name, v, err)
			}
			if !bytes.Equal(back.AppendTo(nil), body) {
				t.Errorf("%s v%d: trailing or different bytes in the denial", name, v)
			}
			if !bytes.Contains(body, []byte{0, byte(errTopicAuthorizationFailed)}) {
				t.Errorf("%s v%d: the error code is nowhere in %x", name, v, body)
			}
		}
	}
}

// named is a request of key naming topic t (partition 0), group g and
// the other things its key's requests name, where the proxy's denial
// answers for each.
func named(key int16) kmsg.Request {
	req := kmsg.RequestForKey(key)
	tid := [16]byte{1}
	switch q := req.(type) {
	case *kmsg.ProduceRequest:
		q.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", TopicID: tid, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0}}}}
	case *kmsg.FetchRequest:
		q.Topics = []kmsg.FetchRequestTopic{{Topic: "t", TopicID: tid, Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 0}}}}
	case *kmsg.ListOffsetsRequest:
		q.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "t", Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 0}}}}
	case *kmsg.MetadataRequest:
		q.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("t"), TopicID: tid}}
	case *kmsg.OffsetCommitRequest:
		q.Group = "g"
		q.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0}}}}
	case *kmsg.OffsetFetchRequest:
		q.Group = "g"
		q.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
		q.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0}}}}}
	case *kmsg.FindCoordinatorRequest:
		q.CoordinatorKey, q.CoordinatorKeys = "g", []string{"g"}
	case *kmsg.DescribeGroupsRequest:
		q.Groups = []string{"g"}
	case *kmsg.CreateTopicsRequest:
		q.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "t"}}
	case *kmsg.DeleteTopicsRequest:
		q.TopicNames = []string{"t"}
		q.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: kmsg.StringPtr("t"), TopicID: tid}}
	case *kmsg.DescribeConfigsRequest:
		q.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "t"}}
	case *kmsg.DeleteGroupsRequest:
		q.Groups = []string{"g"}
	}
	return req
}

// TestDenialErrorCodes: each kind of request fails with the error Kafka's
// authorizer gives it.
func TestDenialErrorCodes(t *testing.T) {
	txnID := "txn"
	for _, tc := range []struct {
		name   string
		msg    kmsg.Request
		topics []string
		denied bool
		want   int16
	}{
		{"produce", kmsg.NewPtrProduceRequest(), []string{"t"}, true, errTopicAuthorizationFailed},
		{"metadata for all topics", kmsg.NewPtrMetadataRequest(), nil, false, errClusterAuthorizationFailed},
		{"offset commit, group refused", kmsg.NewPtrOffsetCommitRequest(), []string{"t"}, false, errGroupAuthorizationFailed},
		{"offset commit, topic refused", kmsg.NewPtrOffsetCommitRequest(), []string{"t"}, true, errTopicAuthorizationFailed},
		{"join group", kmsg.NewPtrJoinGroupRequest(), nil, false, errGroupAuthorizationFailed},
		{"find a group coordinator", kmsg.NewPtrFindCoordinatorRequest(), nil, false, errGroupAuthorizationFailed},
		{"find a transaction coordinator", &kmsg.FindCoordinatorRequest{CoordinatorType: 1}, nil, false, errTxnIDAuthorizationFailed},
		{"idempotent producer id", kmsg.NewPtrInitProducerIDRequest(), nil, false, errClusterAuthorizationFailed},
		{"transactional producer id", &kmsg.InitProducerIDRequest{TransactionalID: &txnID}, nil, false, errTxnIDAuthorizationFailed},
		{"add partitions to a transaction", kmsg.NewPtrAddPartitionsToTxnRequest(), []string{"t"}, true, errTxnIDAuthorizationFailed},
		{"create topics", kmsg.NewPtrCreateTopicsRequest(), []string{"t"}, true, errTopicAuthorizationFailed},
		{"describe cluster", kmsg.NewPtrDescribeClusterRequest(), nil, false, errClusterAuthorizationFailed},
	} {
		r := &request{key: tc.msg.Key(), msg: tc.msg, topics: tc.topics}
		if got := errorCodeFor(r, tc.denied); got != tc.want {
			t.Errorf("%s: error %d, want %d", tc.name, got, tc.want)
		}
	}
}
