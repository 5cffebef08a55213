package kafka

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// denial is how the proxy refuses requests of one API key.
type denial struct {
	// code is the error Kafka's own authorizer returns; nil: topic
	// requests fail on their topics, the others on the cluster.
	code func(r *request, deniedTopics bool) int16
	// answer fills resp (the response of q's key and version) with code
	// on everything q names; nil: the proxy has no answer and closes the
	// connection.
	answer func(q kmsg.Request, resp kmsg.Response, code int16)
}

// The error code functions of the denials table.
var (
	groupCode = func(*request, bool) int16 { return errGroupAuthorizationFailed }
	txnCode   = func(*request, bool) int16 { return errTxnIDAuthorizationFailed }
	// groupThenTopicsCode: for a group's offsets Kafka checks the group
	// first, the topics next.
	groupThenTopicsCode = func(_ *request, deniedTopics bool) int16 {
		if deniedTopics {
			return errTopicAuthorizationFailed
		}
		return errGroupAuthorizationFailed
	}
)

// denials are the answers to denied requests, by API key.
var denials = map[int16]denial{
	0: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.ProduceResponse).Topics = each(q.(*kmsg.ProduceRequest).Topics, func(t kmsg.ProduceRequestTopic) kmsg.ProduceResponseTopic {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			rt.Partitions = each(t.Partitions, func(p kmsg.ProduceRequestTopicPartition) kmsg.ProduceResponseTopicPartition {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				return rp
			})
			return rt
		})
	}},
	1: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.FetchResponse).Topics = each(q.(*kmsg.FetchRequest).Topics, func(t kmsg.FetchRequestTopic) kmsg.FetchResponseTopic {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			rt.Partitions = each(t.Partitions, func(p kmsg.FetchRequestTopicPartition) kmsg.FetchResponseTopicPartition {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				return rp
			})
			return rt
		})
	}},
	2: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.ListOffsetsResponse).Topics = each(q.(*kmsg.ListOffsetsRequest).Topics, func(t kmsg.ListOffsetsRequestTopic) kmsg.ListOffsetsResponseTopic {
			rt := kmsg.NewListOffsetsResponseTopic()
			rt.Topic = t.Topic
			rt.Partitions = each(t.Partitions, func(p kmsg.ListOffsetsRequestTopicPartition) kmsg.ListOffsetsResponseTopicPartition {
				rp := kmsg.NewListOffsetsResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				return rp
			})
			return rt
		})
	}},
	3: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		m, p := q.(*kmsg.MetadataRequest), resp.(*kmsg.MetadataResponse)
		p.ControllerID = -1
		if len(m.Topics) == 0 {
			p.ErrorCode = code
		}
		p.Topics = each(m.Topics, func(t kmsg.MetadataRequestTopic) kmsg.MetadataResponseTopic {
			rt := kmsg.NewMetadataResponseTopic()
			rt.Topic, rt.TopicID, rt.ErrorCode = t.Topic, t.TopicID, code
			return rt
		})
	}},
	8: {code: groupThenTopicsCode, answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.OffsetCommitResponse).Topics = each(q.(*kmsg.OffsetCommitRequest).Topics, func(t kmsg.OffsetCommitRequestTopic) kmsg.OffsetCommitResponseTopic {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			rt.Partitions = each(t.Partitions, func(p kmsg.OffsetCommitRequestTopicPartition) kmsg.OffsetCommitResponseTopicPartition {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				return rp
			})
			return rt
		})
	}},
	9: {code: groupThenTopicsCode, answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		f, p := q.(*kmsg.OffsetFetchRequest), resp.(*kmsg.OffsetFetchResponse)
		p.ErrorCode = code
		p.Topics = each(f.Topics, func(t kmsg.OffsetFetchRequestTopic) kmsg.OffsetFetchResponseTopic {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			rt.Partitions = each(t.Partitions, func(part int32) kmsg.OffsetFetchResponseTopicPartition {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.ErrorCode, rp.Offset = part, code, -1
				return rp
			})
			return rt
		})
		p.Groups = each(f.Groups, func(g kmsg.OffsetFetchRequestGroup) kmsg.OffsetFetchResponseGroup {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, code
			rg.Topics = each(g.Topics, func(t kmsg.OffsetFetchRequestGroupTopic) kmsg.OffsetFetchResponseGroupTopic {
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic, rt.TopicID = t.Topic, t.TopicID
				rt.Partitions = each(t.Partitions, func(part int32) kmsg.OffsetFetchResponseGroupTopicPartition {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition, rp.ErrorCode, rp.Offset = part, code, -1
					return rp
				})
				return rt
			})
			return rg
		})
	}},
	10: {
		code: func(r *request, _ bool) int16 {
			if fc, ok := r.msg.(*kmsg.FindCoordinatorRequest); ok && fc.CoordinatorType == 1 {
				return errTxnIDAuthorizationFailed
			}
			return errGroupAuthorizationFailed
		},
		answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
			p := resp.(*kmsg.FindCoordinatorResponse)
			p.ErrorCode, p.NodeID, p.Port = code, -1, -1
			p.Coordinators = each(q.(*kmsg.FindCoordinatorRequest).CoordinatorKeys, func(k string) kmsg.FindCoordinatorResponseCoordinator {
				c := kmsg.NewFindCoordinatorResponseCoordinator()
				c.Key, c.ErrorCode, c.NodeID, c.Port = k, code, -1, -1
				return c
			})
		},
	},
	11: {code: groupCode, answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		p := resp.(*kmsg.JoinGroupResponse)
		p.ErrorCode, p.Generation = code, -1
	}},
	12: {code: groupCode, answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.HeartbeatResponse).ErrorCode = code
	}},
	13: {code: groupCode, answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.LeaveGroupResponse).ErrorCode = code
	}},
	14: {code: groupCode, answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.SyncGroupResponse).ErrorCode = code
	}},
	15: {code: groupCode, answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.DescribeGroupsResponse).Groups = each(q.(*kmsg.DescribeGroupsRequest).Groups, func(g string) kmsg.DescribeGroupsResponseGroup {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code
			return rg
		})
	}},
	16: {answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.ListGroupsResponse).ErrorCode = code
	}},
	18: {answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.ApiVersionsResponse).ErrorCode = code
	}},
	19: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.CreateTopicsResponse).Topics = each(q.(*kmsg.CreateTopicsRequest).Topics, func(t kmsg.CreateTopicsRequestTopic) kmsg.CreateTopicsResponseTopic {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = t.Topic, code
			return rt
		})
	}},
	20: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		d, p := q.(*kmsg.DeleteTopicsRequest), resp.(*kmsg.DeleteTopicsResponse)
		p.Topics = each(d.TopicNames, func(n string) kmsg.DeleteTopicsResponseTopic {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = kmsg.StringPtr(n), code
			return rt
		})
		p.Topics = append(p.Topics, each(d.Topics, func(t kmsg.DeleteTopicsRequestTopic) kmsg.DeleteTopicsResponseTopic {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.TopicID, rt.ErrorCode = t.Topic, t.TopicID, code
			return rt
		})...)
	}},
	22: {
		code: func(r *request, _ bool) int16 {
			if ip, ok := r.msg.(*kmsg.InitProducerIDRequest); ok && ip.TransactionalID != nil {
				return errTxnIDAuthorizationFailed
			}
			return errClusterAuthorizationFailed
		},
		answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
			p := resp.(*kmsg.InitProducerIDResponse)
			p.ErrorCode, p.ProducerID, p.ProducerEpoch = code, -1, -1
		},
	},
	24: {code: txnCode},
	25: {code: txnCode},
	26: {code: txnCode},
	28: {code: txnCode},
	32: {answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.DescribeConfigsResponse).Resources = each(q.(*kmsg.DescribeConfigsRequest).Resources, func(r kmsg.DescribeConfigsRequestResource) kmsg.DescribeConfigsResponseResource {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName, rr.ErrorCode = r.ResourceType, r.ResourceName, code
			if r.ResourceType != kmsg.ConfigResourceTypeTopic {
				rr.ErrorCode = errClusterAuthorizationFailed
			}
			return rr
		})
	}},
	42: {code: groupCode, answer: func(q kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.DeleteGroupsResponse).Groups = each(q.(*kmsg.DeleteGroupsRequest).Groups, func(g string) kmsg.DeleteGroupsResponseGroup {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code
			return rg
		})
	}},
	47: {code: groupThenTopicsCode},
	60: {answer: func(_ kmsg.Request, resp kmsg.Response, code int16) {
		resp.(*kmsg.DescribeClusterResponse).ErrorCode = code
	}},
}

// each answers every element of a request's list.
func each[Q, R any](qs []Q, answer func(Q) R) []R {
	var rs []R
	for _, q := range qs {
		rs = append(rs, answer(q))
	}
	return rs
}

// errorCodeFor is the error Kafka's own authorizer returns for a denied
// request (see denial.code).
func errorCodeFor(r *request, deniedTopics bool) int16 {
	if c := denials[r.key].code; c != nil {
		return c(r, deniedTopics)
	}
	if r.topics != nil {
		return errTopicAuthorizationFailed
	}
	return errClusterAuthorizationFailed
}

// denialResponse builds the response of r's key and version carrying code
// on everything the request names, or nil for an API the proxy cannot
// answer (the connection is then closed).
func denialResponse(r *request, code int16) kmsg.Response {
	answer := denials[r.key].answer
	if answer == nil {
		return nil
	}
	resp := r.msg.ResponseKind()
	resp.SetVersion(r.version)
	answer(r.msg, resp, code)
	return resp
}

// appendResponse frames resp as the answer to correlationID: size,
// correlation id, the tagged fields of a flexible response header (none
// for ApiVersions, whose response header stays v0 so that any client can
// read it) and the body.
func appendResponse(dst []byte, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() && resp.Key() != keyApiVersions {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// withBody returns r's frame with its header and a new body.
func withBody(r *request, body kmsg.Request) []byte {
	dst := append([]byte(nil), r.frame[:r.bodyOffset]...)
	dst = body.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}
