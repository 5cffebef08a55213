package agentclient

import (
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
)

// DefaultSocket is where the agent serves its API by default.
const DefaultSocket = "/var/run/portcullis/agent.sock"

// The API's paths.
const (
	PathEndpoints = "/v1/endpoints"
	PathMonitor   = "/v1/monitor"
	PathTrace     = "/v1/trace"
)

// Endpoint is one local endpoint of the agent, in its lifecycle state
// (waiting-for-identity, regenerating, ready, disconnecting, lockdown).
type Endpoint struct {
	ID        uint32 `json:"id"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	IP        string `json:"ip"`
	Identity  uint32 `json:"identity"`
	// Labels are the identity's labels as "key=value" (reserved and CIDR
	// labels as "source:key"), sorted.
	Labels []string `json:"labels,omitempty"`
	State  string   `json:"state"`
	// IngressEnforced and EgressEnforced say whether the direction is
	// default-deny in the datapath; Audit whether denials are only reported.
	IngressEnforced bool `json:"ingressEnforced"`
	EgressEnforced  bool `json:"egressEnforced"`
	Audit           bool `json:"audit,omitempty"`
	// IfIndex is the host-side interface the programs are attached to.
	IfIndex int `json:"ifindex,omitempty"`
	// Message says why the endpoint is not ready.
	Message string `json:"message,omitempty"`
}

// TypeLost is the Type of a monitor stream line that is a notice: the
// follower fell behind and Lost events were not sent to it.
const TypeLost = "lost"

// MonitorLine is one line of the monitor stream (NDJSON): a flow event, or
// a notice of Type TypeLost.
type MonitorLine struct {
	monitor.Event
	Lost uint64 `json:"lost,omitempty"`
}

// TracePeer is one side of a live trace. Exactly one field is set.
type TracePeer struct {
	// Pod is "namespace/name" of a pod the agent knows.
	Pod string `json:"pod,omitempty"`
	// Labels select a pod the agent knows: every label must be the pod's
	// (io.kubernetes.pod.namespace names its namespace). Local pods are
	// preferred, then the first by namespace/name.
	Labels policy.Labels `json:"labels,omitempty"`
	IP     string        `json:"ip,omitempty"`
	Entity string        `json:"entity,omitempty"`
}

// TraceRequest is a flow (and an optional L7 request) to trace against the
// agent's live policy repository.
type TraceRequest struct {
	Src   TracePeer        `json:"src"`
	Dst   TracePeer        `json:"dst"`
	Proto uint8            `json:"proto"`
	Port  uint16           `json:"port"`
	HTTP  *l7.HTTPRequest  `json:"http,omitempty"`
	Kafka *l7.KafkaRequest `json:"kafka,omitempty"`
	DNS   string           `json:"dns,omitempty"`
	SNI   string           `json:"sni,omitempty"`
}

// ResolvedPeer says what a trace peer turned out to be.
type ResolvedPeer struct {
	// Kind is "pod", "ip" or "entity"; Value the pod's namespace/name and
	// address, the address, or the entity.
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// TraceResponse is a live trace. In Result, each side's Decision.L7 is
// reduced to its parser (the compiled rules do not travel).
type TraceResponse struct {
	Node string `json:"node"`
	// Mode and Audit are the agent's enforcement mode and global audit.
	Mode   string              `json:"mode"`
	Audit  bool                `json:"audit"`
	Src    ResolvedPeer        `json:"src"`
	Dst    ResolvedPeer        `json:"dst"`
	Result *policy.TraceResult `json:"result"`
	// EgressParser and IngressParser are the L7 parsers of the sides'
	// redirects (l7.Parser numbers), when their Decision.L7 was set.
	EgressParser  *l7.Parser `json:"egressParser,omitempty"`
	IngressParser *l7.Parser `json:"ingressParser,omitempty"`
}

// Error is the body of a failed request.
type Error struct {
	Error string `json:"error"`
}
