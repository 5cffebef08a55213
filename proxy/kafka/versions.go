package kafka

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// responseBody returns the body of a response frame (size prefix
// included) of resp's key and version: after the correlation id and, for
// a flexible response other than ApiVersions, the header's tagged fields.
func responseBody(frame []byte, resp kmsg.Response) ([]byte, error) {
	if len(frame) < 8 {
		return nil, fmt.Errorf("%d-byte response", len(frame))
	}
	b := frame[8:]
	if resp.IsFlexible() && resp.Key() != keyApiVersions {
		var err error
		if b, err = skipTags(b); err != nil {
			return nil, fmt.Errorf("response header: %w", err)
		}
	}
	return b, nil
}

// clampAPIVersions rewrites the broker's ApiVersions response (frame,
// size prefix included) to version's encoding with every API's max
// version lowered to what the proxy decodes and the APIs it does not
// serve dropped, so that clients only ever send requests it can judge.
func clampAPIVersions(frame []byte, version int16) ([]byte, error) {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(version)
	b, err := responseBody(frame, resp)
	if err != nil {
		return nil, err
	}
	if len(b) >= 2 && int16(binary.BigEndian.Uint16(b)) == errUnsupportedVersion {
		// The broker answers a version it does not know in v0 (KIP-511).
		resp.SetVersion(0)
	}
	if err := resp.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("decoding the broker's ApiVersions v%d response: %w", resp.GetVersion(), err)
	}
	keys := resp.ApiKeys[:0]
	for _, k := range resp.ApiKeys {
		m := maxDecodable(k.ApiKey)
		if m < k.MinVersion {
			continue
		}
		k.MaxVersion = min(k.MaxVersion, m)
		keys = append(keys, k)
	}
	resp.ApiKeys = keys
	return appendResponse(nil, int32(binary.BigEndian.Uint32(frame[4:])), resp), nil
}

// unsupportedAPIVersions is the answer to an ApiVersions request of a
// version the proxy does not decode: what a broker answers (KIP-511), v0
// with UNSUPPORTED_VERSION and the versions of ApiVersions it knows, so
// the client retries with one of them.
func unsupportedAPIVersions(correlationID int32) []byte {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	resp.ErrorCode = errUnsupportedVersion
	k := kmsg.NewApiVersionsResponseApiKey()
	k.ApiKey, k.MinVersion, k.MaxVersion = keyApiVersions, 0, maxDecodable(keyApiVersions)
	resp.ApiKeys = append(resp.ApiKeys, k)
	return appendResponse(nil, correlationID, resp)
}

// advertiser rewrites the broker addresses of Metadata and
// FindCoordinator responses to the proxy's own address, so that a client
// of a standalone proxy sends every request through it (as Kafka gateways
// such as Kroxylicious do). It serves one broker upstream: every broker
// advertised becomes the proxy.
type advertiser struct {
	host string
	port int32
}

func newAdvertiser(addr string) (*advertiser, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("advertised address %q: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("advertised address %q: bad port", addr)
	}
	return &advertiser{host: host, port: int32(p)}, nil
}

// rewrites reports whether responses of key carry broker addresses.
func (a *advertiser) rewrites(key int16) bool {
	return a != nil && (key == keyMetadata || key == keyFindCoordinator)
}

// rewrite returns frame (a Metadata or FindCoordinator response of
// version) with every broker address replaced by the proxy's.
func (a *advertiser) rewrite(frame []byte, key, version int16) ([]byte, error) {
	resp := kmsg.ResponseForKey(key)
	resp.SetVersion(version)
	b, err := responseBody(frame, resp)
	if err != nil {
		return nil, err
	}
	if err := resp.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("decoding the broker's %T v%d: %w", resp, version, err)
	}
	switch r := resp.(type) {
	case *kmsg.MetadataResponse:
		for i := range r.Brokers {
			r.Brokers[i].Host, r.Brokers[i].Port = a.host, a.port
		}
	case *kmsg.FindCoordinatorResponse:
		if r.NodeID >= 0 {
			r.Host, r.Port = a.host, a.port
		}
		for i := range r.Coordinators {
			if r.Coordinators[i].NodeID >= 0 {
				r.Coordinators[i].Host, r.Coordinators[i].Port = a.host, a.port
			}
		}
	}
	return appendResponse(nil, int32(binary.BigEndian.Uint32(frame[4:])), resp), nil
}
