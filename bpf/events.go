package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"portcullis.dev/portcullis/policy"
)

func (v EventVerdict) String() string {
	switch v {
	case EventDrop:
		return "DROPPED"
	case EventRedirect:
		return "REDIRECTED"
	case EventAudit:
		return "AUDITED"
	case EventAllow:
		return "FORWARDED"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

func (r EventReason) String() string {
	switch r {
	case ReasonPolicy:
		return "policy"
	case ReasonNoEntry:
		return "no-policy-entry"
	case ReasonLockdown:
		return "lockdown"
	case ReasonUnknownSource:
		return "unknown-source"
	case ReasonNoProxy:
		return "no-proxy"
	case ReasonRedirectUnsupported:
		return "redirect-unsupported"
	case ReasonUnknownDestination:
		return "unknown-destination"
	case ReasonNotIPv4:
		return "not-ipv4"
	case ReasonNotEnforced:
		return "not-enforced"
	case ReasonNoBackend:
		return "no-service-backend"
	case ReasonBackendGone:
		return "service-backend-gone"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event is one verdict event of the datapath.
type Event struct {
	// Time is CLOCK_MONOTONIC (bpf_ktime_get_ns).
	Time time.Duration
	// EndpointID and Direction name the policy that decided: the pod's
	// egress, or the destination pod's ingress.
	EndpointID uint32
	Direction  policy.Direction
	Verdict    EventVerdict
	Reason     EventReason
	Src, Dst   netip.AddrPort
	// Proto is the IP protocol; for ICMP, Dst's port is the type.
	Proto                    uint8
	SrcIdentity, DstIdentity policy.NumericIdentity
	RuleID                   uint32
	// ProxyPort is set for redirects.
	ProxyPort uint16
	// Service is the Service address and port the client sent to, for a
	// flow the datapath translated (Dst is then the backend); zero
	// otherwise.
	Service netip.AddrPort
}

// EventReader reads verdict events from the ring buffer. Only one reader
// should be open at a time: events are consumed.
type EventReader struct {
	r *ringbuf.Reader
}

// Events opens a reader on the events ring buffer.
func (d *Datapath) Events() (*EventReader, error) {
	r, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer: %w", err)
	}
	return &EventReader{r: r}, nil
}

// SetDeadline makes Read return os.ErrDeadlineExceeded after t.
func (e *EventReader) SetDeadline(t time.Time) { e.r.SetDeadline(t) }

// Read blocks for the next event; after Close it returns ringbuf.ErrClosed.
func (e *EventReader) Read() (Event, error) {
	rec, err := e.r.Read()
	if err != nil {
		return Event{}, err
	}
	var raw datapathEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.LittleEndian, &raw); err != nil {
		return Event{}, fmt.Errorf("decoding event: %w", err)
	}
	return Event{
		Time:        time.Duration(raw.Ts),
		EndpointID:  raw.EpId,
		Direction:   policy.Direction(raw.Dir),
		Verdict:     EventVerdict(raw.Verdict),
		Reason:      EventReason(raw.Reason),
		Src:         netip.AddrPortFrom(u32Addr(raw.Saddr), htons(raw.Sport)),
		Dst:         netip.AddrPortFrom(u32Addr(raw.Daddr), htons(raw.Dport)),
		Proto:       raw.Proto,
		SrcIdentity: policy.NumericIdentity(raw.SrcIdentity),
		DstIdentity: policy.NumericIdentity(raw.DstIdentity),
		RuleID:      raw.RuleId,
		ProxyPort:   htons(raw.ProxyPort),
		Service:     serviceAddr(raw.SvcAddr, raw.SvcPort),
	}, nil
}

func serviceAddr(addr uint32, port uint16) netip.AddrPort {
	if addr == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(u32Addr(addr), htons(port))
}

// Close stops the reader; a blocked Read returns.
func (e *EventReader) Close() error { return e.r.Close() }

func (e Event) String() string {
	return fmt.Sprintf("%s %s ep=%d %s %s(%d) -> %s(%d) proto=%d rule=%d reason=%s",
		e.Verdict, e.Direction, e.EndpointID, "", e.Src, e.SrcIdentity, e.Dst, e.DstIdentity, e.Proto, e.RuleID, e.Reason)
}
