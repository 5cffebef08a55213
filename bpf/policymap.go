package bpf

import (
	"math/bits"

	"portcullis.dev/portcullis/policy"
)

// PortPrefix is a block of ports: the ports whose leading Bits bits equal
// Port's (Port's other bits are zero).
type PortPrefix struct {
	Port uint16
	Bits uint8
}

// PortPrefixes returns the fewest prefixes that cover [lo, hi] exactly, in
// ascending order; nil if lo > hi.
func PortPrefixes(lo, hi uint16) []PortPrefix {
	var out []PortPrefix
	l, h := uint32(lo), uint32(hi)
	for l <= h {
		// The largest aligned block starting at l that stays within h.
		size := uint32(1) << 16
		if l != 0 {
			size = l & -l
		}
		for l+size-1 > h {
			size >>= 1
		}
		out = append(out, PortPrefix{Port: uint16(l), Bits: uint8(16 - bits.TrailingZeros32(size))})
		l += size
	}
	return out
}

type policyKey = datapathPolicyKey
type policyValue = datapathPolicyValue

// htons converts a host-order port to the uint16 whose little-endian
// memory holds it in network order (the generated types' be16 fields).
func htons(p uint16) uint16 { return p<<8 | p>>8 }

// policyEntries expands an endpoint's derived policy into policy map keys
// and values. ruleID and proxyPort are never nil here.
func policyEntries(epID uint32, ep *policy.EndpointPolicy, ruleID func(policy.RuleRef) uint32, proxyPort func(*policy.Decision) uint16) map[policyKey]policyValue {
	out := map[policyKey]policyValue{}
	if ep == nil {
		return out
	}
	for d, st := range ep.State {
		if st == nil {
			continue
		}
		for _, fe := range st.Flat() {
			v := policyValue{Verdict: uint8(fe.Decision.Verdict), RuleId: ruleID(fe.Decision.Rule)}
			if fe.Decision.Verdict == policy.Redirect {
				v.ProxyPort = htons(proxyPort(&fe.Decision))
			}
			k := policyKey{EpId: epID, Identity: uint32(fe.Identity), Dir: uint8(d), Proto: fe.Proto}
			if fe.Proto == policy.ProtoAny {
				k.Prefixlen = policyPrefixEntrySet
				out[k] = v
				continue
			}
			for _, pp := range PortPrefixes(fe.Lo, fe.Hi) {
				k.Prefixlen = policyPrefixProto + uint32(pp.Bits)
				k.Port = htons(pp.Port)
				out[k] = v
			}
		}
	}
	return out
}
