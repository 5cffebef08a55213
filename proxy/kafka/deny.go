package kafka

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// errorCodeFor is the error Kafka's own authorizer returns for a denied
// request of this key: topic requests fail on their topics, group
// requests on the group, transactional ones on the transactional id,
// everything else on the cluster.
func errorCodeFor(r *request, deniedTopics bool) int16 {
	switch r.key {
	case 8, 9, 47:
		// Offsets of a group: the group is checked first, the topics next.
		if deniedTopics {
			return errTopicAuthorizationFailed
		}
		return errGroupAuthorizationFailed
	case 10:
		if fc, ok := r.msg.(*kmsg.FindCoordinatorRequest); ok && fc.CoordinatorType == 1 {
			return errTxnIDAuthorizationFailed
		}
		return errGroupAuthorizationFailed
	case 11, 12, 13, 14, 15, 42:
		return errGroupAuthorizationFailed
	case 22:
		if ip, ok := r.msg.(*kmsg.InitProducerIDRequest); ok && ip.TransactionalID != nil {
			return errTxnIDAuthorizationFailed
		}
		return errClusterAuthorizationFailed
	case 24, 25, 26, 28:
		return errTxnIDAuthorizationFailed
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
	resp := r.msg.ResponseKind()
	resp.SetVersion(r.version)
	switch q := r.msg.(type) {
	case *kmsg.ProduceRequest:
		p := resp.(*kmsg.ProduceResponse)
		for _, t := range q.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, part := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = part.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.FetchRequest:
		p := resp.(*kmsg.FetchResponse)
		for _, t := range q.Topics {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, part := range t.Partitions {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition, rp.ErrorCode = part.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.ListOffsetsRequest:
		p := resp.(*kmsg.ListOffsetsResponse)
		for _, t := range q.Topics {
			rt := kmsg.NewListOffsetsResponseTopic()
			rt.Topic = t.Topic
			for _, part := range t.Partitions {
				rp := kmsg.NewListOffsetsResponseTopicPartition()
				rp.Partition, rp.ErrorCode = part.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.MetadataRequest:
		p := resp.(*kmsg.MetadataResponse)
		p.ControllerID = -1
		if len(q.Topics) == 0 {
			p.ErrorCode = code
		}
		for _, t := range q.Topics {
			rt := kmsg.NewMetadataResponseTopic()
			rt.Topic, rt.TopicID, rt.ErrorCode = t.Topic, t.TopicID, code
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.OffsetCommitRequest:
		p := resp.(*kmsg.OffsetCommitResponse)
		for _, t := range q.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, part := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = part.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.OffsetFetchRequest:
		p := resp.(*kmsg.OffsetFetchResponse)
		p.ErrorCode = code
		for _, t := range q.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, part := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.ErrorCode, rp.Offset = part, code, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			p.Topics = append(p.Topics, rt)
		}
		for _, g := range q.Groups {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, code
			for _, t := range g.Topics {
				rt := kmsg.NewOffsetFetchResponseGroupTopic()
				rt.Topic, rt.TopicID = t.Topic, t.TopicID
				for _, part := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					rp.Partition, rp.ErrorCode, rp.Offset = part, code, -1
					rt.Partitions = append(rt.Partitions, rp)
				}
				rg.Topics = append(rg.Topics, rt)
			}
			p.Groups = append(p.Groups, rg)
		}
	case *kmsg.FindCoordinatorRequest:
		p := resp.(*kmsg.FindCoordinatorResponse)
		p.ErrorCode, p.NodeID, p.Port = code, -1, -1
		for _, k := range q.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key, c.ErrorCode, c.NodeID, c.Port = k, code, -1, -1
			p.Coordinators = append(p.Coordinators, c)
		}
	case *kmsg.JoinGroupRequest:
		p := resp.(*kmsg.JoinGroupResponse)
		p.ErrorCode, p.Generation = code, -1
	case *kmsg.HeartbeatRequest:
		resp.(*kmsg.HeartbeatResponse).ErrorCode = code
	case *kmsg.LeaveGroupRequest:
		resp.(*kmsg.LeaveGroupResponse).ErrorCode = code
	case *kmsg.SyncGroupRequest:
		resp.(*kmsg.SyncGroupResponse).ErrorCode = code
	case *kmsg.DescribeGroupsRequest:
		p := resp.(*kmsg.DescribeGroupsResponse)
		for _, g := range q.Groups {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code
			p.Groups = append(p.Groups, rg)
		}
	case *kmsg.ListGroupsRequest:
		resp.(*kmsg.ListGroupsResponse).ErrorCode = code
	case *kmsg.ApiVersionsRequest:
		resp.(*kmsg.ApiVersionsResponse).ErrorCode = code
	case *kmsg.CreateTopicsRequest:
		p := resp.(*kmsg.CreateTopicsResponse)
		for _, t := range q.Topics {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = t.Topic, code
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.DeleteTopicsRequest:
		p := resp.(*kmsg.DeleteTopicsResponse)
		for _, n := range q.TopicNames {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = kmsg.StringPtr(n), code
			p.Topics = append(p.Topics, rt)
		}
		for _, t := range q.Topics {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.TopicID, rt.ErrorCode = t.Topic, t.TopicID, code
			p.Topics = append(p.Topics, rt)
		}
	case *kmsg.InitProducerIDRequest:
		p := resp.(*kmsg.InitProducerIDResponse)
		p.ErrorCode, p.ProducerID, p.ProducerEpoch = code, -1, -1
	case *kmsg.DescribeConfigsRequest:
		p := resp.(*kmsg.DescribeConfigsResponse)
		for _, r := range q.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName, rr.ErrorCode = r.ResourceType, r.ResourceName, code
			if r.ResourceType != kmsg.ConfigResourceTypeTopic {
				rr.ErrorCode = errClusterAuthorizationFailed
			}
			p.Resources = append(p.Resources, rr)
		}
	case *kmsg.DeleteGroupsRequest:
		p := resp.(*kmsg.DeleteGroupsResponse)
		for _, g := range q.Groups {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code
			p.Groups = append(p.Groups, rg)
		}
	case *kmsg.DescribeClusterRequest:
		resp.(*kmsg.DescribeClusterResponse).ErrorCode = code
	default:
		return nil
	}
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
