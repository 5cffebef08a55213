package bpf

import "portcullis.dev/portcullis/policy"

// The kernel ABI on the Go side. Every value comes from the enums of
// datapath.c, generated into datapath_bpfel.go by bpf2go -type; nothing
// here is written twice. The conversions to the fields' widths (uint8 for
// the event's verdict and reason) fail to compile if a value outgrows them.

// Marks shared with the proxy and the routing setup. They are ints, as
// SO_MARK takes them.
const (
	// MarkMask is the part of skb->mark that Portcullis owns.
	MarkMask = int(datapathMarkMARK_MASK)
	// MarkToProxy is set on packets assigned to a proxy socket; the ip rule
	// that SetupProxyRouting adds routes them to the local table.
	MarkToProxy = int(datapathMarkMARK_TO_PROXY)
	// MarkFromProxy is the SO_MARK of the proxy's upstream sockets: their
	// packets are neither redirected nor policy-checked again.
	MarkFromProxy = int(datapathMarkMARK_FROM_PROXY)
)

// EndpointFlags are an endpoint's switches in the endpoints map.
type EndpointFlags uint32

// The endpoint flags.
const (
	// FlagEnforceIngress looks up the ingress policy; without it every
	// flow into the endpoint is allowed.
	FlagEnforceIngress = EndpointFlags(datapathEndpointFlagsEP_ENFORCE_INGRESS)
	// FlagEnforceEgress looks up the egress policy.
	FlagEnforceEgress = EndpointFlags(datapathEndpointFlagsEP_ENFORCE_EGRESS)
	// FlagAudit passes denied flows and reports them as AUDITED.
	FlagAudit = EndpointFlags(datapathEndpointFlagsEP_AUDIT)
	// FlagLockdown drops every IP packet from and to the endpoint.
	FlagLockdown = EndpointFlags(datapathEndpointFlagsEP_LOCKDOWN)
)

// EventVerdict is what the datapath did.
type EventVerdict uint8

// The event verdicts.
const (
	EventDrop     = EventVerdict(datapathEventVerdictEV_DROP)
	EventRedirect = EventVerdict(datapathEventVerdictEV_REDIRECT)
	EventAudit    = EventVerdict(datapathEventVerdictEV_AUDIT)
	// EventAllow is a new flow that passed, reported once when its
	// conntrack entry is created (not per packet).
	EventAllow = EventVerdict(datapathEventVerdictEV_ALLOW)
)

// EventReason says why.
type EventReason uint8

// The event reasons.
const (
	// ReasonPolicy: a policy entry decided (RuleID names the rule; for an
	// allowed flow, the destination's ingress entry if that direction is
	// enforced, else the source's egress entry).
	ReasonPolicy = EventReason(datapathEventReasonREASON_POLICY)
	// ReasonNoEntry: the direction is enforced but no policy is written.
	ReasonNoEntry = EventReason(datapathEventReasonREASON_NO_ENTRY)
	// ReasonLockdown: the endpoint is in lockdown.
	ReasonLockdown = EventReason(datapathEventReasonREASON_LOCKDOWN)
	// ReasonUnknownSource: a packet from a pod with another source address.
	ReasonUnknownSource = EventReason(datapathEventReasonREASON_UNKNOWN_SOURCE)
	// ReasonNoProxy: a redirect found no proxy socket.
	ReasonNoProxy = EventReason(datapathEventReasonREASON_NO_PROXY)
	// ReasonRedirectUnsupported: an ingress redirect for a source that is
	// not a local pod (not implemented yet; dropped).
	ReasonRedirectUnsupported = EventReason(datapathEventReasonREASON_REDIRECT_UNSUPPORTED)
	// ReasonUnknownDestination: a packet into a veth whose pod is not recorded.
	ReasonUnknownDestination = EventReason(datapathEventReasonREASON_UNKNOWN_DESTINATION)
	// ReasonNotIPv4: IPv6 and other non-IPv4 packets (not implemented).
	ReasonNotIPv4 = EventReason(datapathEventReasonREASON_NOT_IPV4)
	// ReasonNotEnforced: an allowed flow that no enforced direction looked
	// up (neither the source's egress nor the destination's ingress).
	ReasonNotEnforced = EventReason(datapathEventReasonREASON_NOT_ENFORCED)
	// ReasonNoBackend: a connection to a Service port with no ready
	// backend, refused (TCP reset, ICMP port unreachable for UDP).
	ReasonNoBackend = EventReason(datapathEventReasonREASON_NO_BACKEND)
	// ReasonBackendGone: an established TCP connection whose backend left
	// its Service, reset.
	ReasonBackendGone = EventReason(datapathEventReasonREASON_BACKEND_GONE)
)

// Policy map key layout (struct policy_key in datapath.c): after the LPM
// prefix length come ep_id (32 bits), identity (32), dir (8) — always
// matched whole — then proto (8) and the port (16, network order). An entry
// for every protocol stops before proto; a port range becomes the prefixes
// that cover it exactly.
const (
	policyPrefixEntrySet = uint32(datapathPolicyPrefixPOLICY_PREFIX_ENTRY_SET)
	policyPrefixProto    = uint32(datapathPolicyPrefixPOLICY_PREFIX_PROTO)
	policyPrefixFull     = uint32(datapathPolicyPrefixPOLICY_PREFIX_FULL)
)

// The engine's numbers that the map entries and events carry unconverted
// (policyEntries writes a policy.Verdict and policy.Direction as they are;
// Event.Direction reads dir back; the datapath reports unknown addresses
// as IdentityWorld). Each index below is a constant that must be 0, so a
// renumbering on either side fails to compile, as stringer's checks do.
func _() {
	var x [1]struct{}
	_ = x[policy.Ingress-policy.Direction(datapathDirectionDIR_INGRESS)]
	_ = x[policy.Egress-policy.Direction(datapathDirectionDIR_EGRESS)]
	_ = x[policy.Allow-policy.Verdict(datapathVerdictVERDICT_ALLOW)]
	_ = x[policy.Deny-policy.Verdict(datapathVerdictVERDICT_DENY)]
	_ = x[policy.Redirect-policy.Verdict(datapathVerdictVERDICT_REDIRECT)]
	_ = x[policy.IdentityWorld-policy.NumericIdentity(datapathReservedIdentityIDENTITY_WORLD)]
}
