package kafka

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"portcullis.dev/portcullis/policy/l7"
)

// Kafka API keys the proxy treats specially.
const (
	keyProduce         int16 = 0
	keyFetch           int16 = 1
	keyMetadata        int16 = 3
	keyFindCoordinator int16 = 10
	keyApiVersions     int16 = 18
)

// Kafka error codes of the proxy's answers.
const (
	errUnsupportedVersion         int16 = 35
	errTopicAuthorizationFailed   int16 = 29
	errGroupAuthorizationFailed   int16 = 30
	errClusterAuthorizationFailed int16 = 31
	errTxnIDAuthorizationFailed   int16 = 53
)

// versionCaps lower kmsg's maximum versions where a newer version names
// topics by ID only: the proxy judges topics by name and does not track
// the cluster's ID→name map, so it keeps clients on the last version with
// names.
var versionCaps = map[int16]int16{
	0:  12, // Produce v13+: topic IDs
	1:  12, // Fetch v13+: topic IDs
	8:  9,  // OffsetCommit v10+: topic IDs
	9:  9,  // OffsetFetch v10+: topic IDs
	28: 5,  // TxnOffsetCommit v6+: topic IDs
}

// maxDecodable is the highest version of key the proxy decodes and
// judges, or -1 when it serves no version of it: the API must be one the
// policy language names (an API it does not name would pass a rule
// without apiKey unjudged), kmsg must decode it and, when its requests
// name topics, the proxy must know where.
func maxDecodable(key int16) int16 {
	if _, known := l7.KafkaAPIKeyByName(l7.KafkaAPIKeyName(key)); !known {
		return -1
	}
	r := kmsg.RequestForKey(key)
	if r == nil {
		return -1
	}
	if l7.KafkaAPIKeyHasTopics(key) {
		if _, ok := topicExtractors[key]; !ok {
			return -1
		}
	}
	m := r.MaxVersion()
	if c, ok := versionCaps[key]; ok && c < m {
		m = c
	}
	return m
}

// request is one decoded client request.
type request struct {
	// frame is the whole request as received, size prefix included.
	frame         []byte
	key, version  int16
	correlationID int32
	clientID      string
	// bodyOffset is where the body starts in frame.
	bodyOffset int
	// msg is the decoded body.
	msg kmsg.Request
	// topics are the topics it names (see l7.KafkaAPIKeyHasTopics).
	topics []string
	// noResponse: a Produce with acks=0, which the broker does not answer.
	noResponse bool
}

// errUndecodable marks a request the proxy cannot decode: it is never
// forwarded and ends the connection.
var errUndecodable = errors.New("undecodable request")

// decodeRequest decodes a request frame (size prefix included). The
// request header is parsed here because kmsg decodes bodies only.
func decodeRequest(frame []byte) (*request, error) {
	b := frame[4:]
	if len(b) < 10 {
		return nil, fmt.Errorf("%w: %d-byte request, shorter than a request header", errUndecodable, len(b))
	}
	r := &request{
		frame:         frame,
		key:           int16(binary.BigEndian.Uint16(b[0:])),
		version:       int16(binary.BigEndian.Uint16(b[2:])),
		correlationID: int32(binary.BigEndian.Uint32(b[4:])),
	}
	n := int16(binary.BigEndian.Uint16(b[8:]))
	b = b[10:]
	if n > 0 {
		if int(n) > len(b) {
			return r, fmt.Errorf("%w: client id longer than the request", errUndecodable)
		}
		r.clientID, b = string(b[:n]), b[n:]
	}
	max := maxDecodable(r.key)
	if max < 0 {
		return r, fmt.Errorf("%w: API key %d (%s) is not served by the proxy", errUndecodable, r.key, l7.KafkaAPIKeyName(r.key))
	}
	if r.version < 0 || r.version > max {
		return r, fmt.Errorf("%w: %s v%d (the proxy decodes v0-v%d)", errUndecodable, l7.KafkaAPIKeyName(r.key), r.version, max)
	}
	r.msg = kmsg.RequestForKey(r.key)
	r.msg.SetVersion(r.version)
	if r.msg.IsFlexible() {
		// Request header v2: tagged fields after the client id.
		var err error
		if b, err = skipTags(b); err != nil {
			return r, fmt.Errorf("%w: %s v%d header: %v", errUndecodable, l7.KafkaAPIKeyName(r.key), r.version, err)
		}
	}
	r.bodyOffset = len(frame) - len(b)
	if err := r.msg.ReadFrom(b); err != nil {
		return r, fmt.Errorf("%w: %s v%d: %v", errUndecodable, l7.KafkaAPIKeyName(r.key), r.version, err)
	}
	if ex, ok := topicExtractors[r.key]; ok {
		r.topics = ex(r.msg)
	}
	if p, ok := r.msg.(*kmsg.ProduceRequest); ok && p.Acks == 0 {
		r.noResponse = true
	}
	return r, nil
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	for range n {
		if _, b, err = uvarint(b); err != nil {
			return nil, err
		}
		var l uint64
		if l, b, err = uvarint(b); err != nil {
			return nil, err
		}
		if l > uint64(len(b)) {
			return nil, errors.New("tagged field longer than the request")
		}
		b = b[l:]
	}
	return b, nil
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("bad varint")
	}
	return v, b[n:], nil
}

// idTopic names a topic given by ID only: no rule's topic can equal it
// (topic names are [a-zA-Z0-9._-]), so only rules for every topic allow it.
func idTopic(id [16]byte) string { return "topic-id:" + hex.EncodeToString(id[:]) }

func topicName(name string, id [16]byte) string {
	if name == "" && id != ([16]byte{}) {
		return idTopic(id)
	}
	return name
}

// topicExtractors give the topics a request names, for every API key of
// l7.KafkaAPIKeyHasTopics the proxy serves. A nil result is a request for
// no topic in particular (Metadata for all topics, OffsetFetch of every
// committed offset).
var topicExtractors = map[int16]func(kmsg.Request) []string{
	0: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.ProduceRequest).Topics {
			ts = append(ts, topicName(t.Topic, t.TopicID))
		}
		return ts
	},
	1: func(m kmsg.Request) (ts []string) {
		r := m.(*kmsg.FetchRequest)
		for _, t := range r.Topics {
			ts = append(ts, topicName(t.Topic, t.TopicID))
		}
		return ts
	},
	2: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.ListOffsetsRequest).Topics {
			ts = append(ts, t.Topic)
		}
		return ts
	},
	3: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.MetadataRequest).Topics {
			if t.Topic != nil && *t.Topic != "" {
				ts = append(ts, *t.Topic)
			} else {
				ts = append(ts, idTopic(t.TopicID))
			}
		}
		return ts
	},
	8: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.OffsetCommitRequest).Topics {
			ts = append(ts, topicName(t.Topic, t.TopicID))
		}
		return ts
	},
	9: func(m kmsg.Request) (ts []string) {
		r := m.(*kmsg.OffsetFetchRequest)
		for _, t := range r.Topics {
			ts = append(ts, t.Topic)
		}
		for _, g := range r.Groups {
			for _, t := range g.Topics {
				ts = append(ts, topicName(t.Topic, t.TopicID))
			}
		}
		return ts
	},
	19: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.CreateTopicsRequest).Topics {
			ts = append(ts, t.Topic)
		}
		return ts
	},
	20: func(m kmsg.Request) (ts []string) {
		r := m.(*kmsg.DeleteTopicsRequest)
		ts = append(ts, r.TopicNames...)
		for _, t := range r.Topics {
			if t.Topic != nil && *t.Topic != "" {
				ts = append(ts, *t.Topic)
			} else {
				ts = append(ts, idTopic(t.TopicID))
			}
		}
		return ts
	},
	21: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.DeleteRecordsRequest).Topics {
			ts = append(ts, t.Topic)
		}
		return ts
	},
	23: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.OffsetForLeaderEpochRequest).Topics {
			ts = append(ts, t.Topic)
		}
		return ts
	},
	24: func(m kmsg.Request) (ts []string) {
		r := m.(*kmsg.AddPartitionsToTxnRequest)
		for _, t := range r.Topics {
			ts = append(ts, t.Topic)
		}
		for _, x := range r.Transactions {
			for _, t := range x.Topics {
				ts = append(ts, t.Topic)
			}
		}
		return ts
	},
	28: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.TxnOffsetCommitRequest).Topics {
			ts = append(ts, topicName(t.Topic, t.TopicID))
		}
		return ts
	},
	32: func(m kmsg.Request) (ts []string) {
		for _, r := range m.(*kmsg.DescribeConfigsRequest).Resources {
			if r.ResourceType == kmsg.ConfigResourceTypeTopic {
				ts = append(ts, r.ResourceName)
			}
		}
		return ts
	},
	33: func(m kmsg.Request) (ts []string) {
		for _, r := range m.(*kmsg.AlterConfigsRequest).Resources {
			if r.ResourceType == kmsg.ConfigResourceTypeTopic {
				ts = append(ts, r.ResourceName)
			}
		}
		return ts
	},
	37: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.CreatePartitionsRequest).Topics {
			ts = append(ts, t.Topic)
		}
		return ts
	},
	44: func(m kmsg.Request) (ts []string) {
		for _, r := range m.(*kmsg.IncrementalAlterConfigsRequest).Resources {
			if r.ResourceType == kmsg.ConfigResourceTypeTopic {
				ts = append(ts, r.ResourceName)
			}
		}
		return ts
	},
	47: func(m kmsg.Request) (ts []string) {
		for _, t := range m.(*kmsg.OffsetDeleteRequest).Topics {
			ts = append(ts, t.Topic)
		}
		return ts
	},
}

// dedupTopics sorts and deduplicates topics for events and decisions.
func dedupTopics(ts []string) []string {
	if len(ts) < 2 {
		return ts
	}
	seen := make(map[string]struct{}, len(ts))
	out := ts[:0:0]
	for _, t := range ts {
		if _, ok := seen[t]; !ok {
			seen[t] = struct{}{}
			out = append(out, t)
		}
	}
	return out
}
