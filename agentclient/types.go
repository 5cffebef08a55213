package agentclient

import "time"

// DefaultSocket is where the agent serves its API by default.
const DefaultSocket = "/var/run/portcullis/agent.sock"

// The API's paths.
const (
	PathEndpoints = "/v1/endpoints"
	PathMonitor   = "/v1/monitor"
	PathTrace     = "/v1/trace"
	PathServices  = "/v1/services"
	PathFQDNCache = "/v1/fqdn/cache"
)

// The wire types below are the API's contract, pinned by golden files in
// testdata: they are the package's own, never the engine's, so that a
// refactor of the engine cannot change what travels. The server converts
// from the engine's types explicitly (controllers/agent/api.go).

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
// a notice of Type TypeLost. `portcullis monitor -o json` prints it as it
// came.
type MonitorLine struct {
	Event
	Lost uint64 `json:"lost,omitempty"`
}

// Event is one flow event: an L3/L4 verdict of the datapath (Type
// "policy-verdict") or one request judged by a proxy (Type "l7").
type Event struct {
	Time time.Time `json:"time"`
	Node string    `json:"node,omitempty"`
	Type string    `json:"type"`
	// Verdict is FORWARDED, DROPPED, REDIRECTED, AUDITED, DENIED or ERROR.
	Verdict string `json:"verdict"`
	// Reason says why, e.g. "policy", "no-policy-entry", "lockdown".
	Reason string `json:"reason,omitempty"`
	// Direction is "ingress" or "egress": the policy direction that
	// produced the verdict.
	Direction string `json:"direction,omitempty"`
	// Protocol is "TCP", "UDP", "ICMP" or a protocol number.
	Protocol    string       `json:"protocol"`
	Source      FlowEndpoint `json:"source"`
	Destination FlowEndpoint `json:"destination"`
	// Policy names the policy (and rule) that decided; for a default-deny
	// drop, the policies selecting the endpoint and "(default deny)".
	Policy string `json:"policy,omitempty"`
	// Service is the Service the source called, for a flow the datapath
	// translated to the destination backend: "namespace/name
	// clusterIP:port" (the address alone if the agent has no name for it).
	Service string  `json:"service,omitempty"`
	L7      *FlowL7 `json:"l7,omitempty"`
}

// FlowEndpoint is one side of a flow event.
type FlowEndpoint struct {
	IP   string `json:"ip"`
	Port uint16 `json:"port,omitempty"`
	// Identity is the node-local numeric security identity (0 unknown).
	Identity uint32 `json:"identity"`
	// Namespace and Pod are set for pods the agent knows.
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// Labels are the identity's labels as "key=value", sorted; reserved
	// identities have "reserved:world" and the like.
	Labels []string `json:"labels,omitempty"`
}

// FlowL7 is the part of an event that only proxies fill.
type FlowL7 struct {
	// Protocol is "http/1.1", "h2", "grpc", "kafka" or "dns".
	Protocol string `json:"protocol"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	Host     string `json:"host,omitempty"`
	// Status is the HTTP status sent to the client; GRPCStatus the
	// grpc-status when the request was gRPC.
	Status     int  `json:"status,omitempty"`
	GRPCStatus *int `json:"grpcStatus,omitempty"`
	// Latency is from the request's first byte to the response's headers,
	// in nanoseconds.
	Latency time.Duration `json:"latency,omitempty"`
	// Kafka is set for a Kafka request.
	Kafka *FlowKafka `json:"kafka,omitempty"`
	// DNS describes a DNS query and its answer.
	DNS *FlowDNS `json:"dns,omitempty"`
}

// FlowKafka is what an event shows of one Kafka request.
type FlowKafka struct {
	// APIKey is the request's API key name ("produce", "fetch", ...).
	APIKey     string   `json:"apiKey"`
	APIVersion int16    `json:"apiVersion"`
	ClientID   string   `json:"clientID,omitempty"`
	Topics     []string `json:"topics,omitempty"`
	// ErrorCode is the Kafka error code the proxy answered a denial with.
	ErrorCode int16 `json:"errorCode,omitempty"`
}

// FlowDNS is what an event shows of one DNS query.
type FlowDNS struct {
	Query string `json:"query"`
	Type  string `json:"type"`
	// RCode is the response code sent to the client; empty when none was.
	RCode string `json:"rcode,omitempty"`
	// Answers are the answer's A and AAAA addresses.
	Answers []string `json:"answers,omitempty"`
	// Observed are the names whose addresses went to toFQDNs selectors.
	Observed []string `json:"observed,omitempty"`
	// Hold is how long the answer was held for the datapath, in
	// nanoseconds.
	Hold time.Duration `json:"hold,omitempty"`
}

// Label is one identity label: Source is "k8s", "reserved", "cidr" or
// "unspec".
type Label struct {
	Source string `json:"source"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
}

// TracePeer is one side of a live trace. Exactly one field is set.
type TracePeer struct {
	// Pod is "namespace/name" of a pod the agent knows.
	Pod string `json:"pod,omitempty"`
	// Labels select a pod the agent knows: every label must be the pod's
	// (io.kubernetes.pod.namespace names its namespace). Local pods are
	// preferred, then the first by namespace/name.
	Labels []Label `json:"labels,omitempty"`
	IP     string  `json:"ip,omitempty"`
	Entity string  `json:"entity,omitempty"`
	// Service is "namespace/name" of a Service (destination only): the
	// flow is traced to the backend the datapath translates the Service's
	// port to (the first ready one), at its target port.
	Service string `json:"service,omitempty"`
}

// HTTPRequest is an HTTP request to trace.
type HTTPRequest struct {
	Method string `json:"method"`
	// Path is the request target in origin form, query included.
	Path string `json:"path"`
	Host string `json:"host,omitempty"`
	// Header holds the request headers by name.
	Header map[string][]string `json:"header,omitempty"`
	// ServerName is the TLS server name the request came with.
	ServerName string `json:"serverName,omitempty"`
}

// KafkaRequest is a Kafka request to trace.
type KafkaRequest struct {
	APIKey     int16    `json:"apiKey"`
	APIVersion int16    `json:"apiVersion"`
	ClientID   string   `json:"clientID,omitempty"`
	Topics     []string `json:"topics,omitempty"`
	// ServerName is the TLS server name the request came with.
	ServerName string `json:"serverName,omitempty"`
}

// TraceRequest is a flow (and an optional L7 request) to trace against the
// agent's live policy repository.
type TraceRequest struct {
	Src   TracePeer     `json:"src"`
	Dst   TracePeer     `json:"dst"`
	Proto uint8         `json:"proto"`
	Port  uint16        `json:"port"`
	HTTP  *HTTPRequest  `json:"http,omitempty"`
	Kafka *KafkaRequest `json:"kafka,omitempty"`
	DNS   string        `json:"dns,omitempty"`
	SNI   string        `json:"sni,omitempty"`
}

// ResolvedPeer says what a trace peer turned out to be.
type ResolvedPeer struct {
	// Kind is "pod", "ip", "entity" or "service"; Value the pod's
	// namespace/name and address, the address, the entity, or the Service
	// port and the backend it translates to.
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// TraceResponse is a live trace.
type TraceResponse struct {
	Node string `json:"node"`
	// Mode and Audit are the agent's enforcement mode (default, always or
	// never) and global audit.
	Mode  string       `json:"mode"`
	Audit bool         `json:"audit"`
	Src   ResolvedPeer `json:"src"`
	Dst   ResolvedPeer `json:"dst"`
	// Port is the destination port traced, when a Service's translation
	// changed it (its target port on the backend); 0 otherwise.
	Port   uint16       `json:"port,omitempty"`
	Result *TraceResult `json:"result"`
}

// Service is one port of a Service's ClusterIP as the agent has programmed
// the datapath's translation.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// PortName is the Service port's name ("" for a single unnamed port).
	PortName string `json:"portName,omitempty"`
	// Frontend is the ClusterIP and port, "10.96.0.10:80".
	Frontend string `json:"frontend"`
	// Protocol is TCP or UDP.
	Protocol string `json:"protocol"`
	// Backends are the ready backends a connection may be given; none
	// means connections are refused.
	Backends []ServiceBackend `json:"backends"`
}

// ServiceBackend is one backend of a Service port.
type ServiceBackend struct {
	// Address is the pod address and target port, "10.244.0.5:8080".
	Address string `json:"address"`
	// Pod is "namespace/name" of the pod at that address, if the agent
	// knows it.
	Pod string `json:"pod,omitempty"`
}

// TraceResult is the verdict of a traced flow, side by side.
type TraceResult struct {
	Src *Identity `json:"src"`
	Dst *Identity `json:"dst"`
	// Egress is the source's side, Ingress the destination's.
	Egress  TraceSide `json:"egress"`
	Ingress TraceSide `json:"ingress"`
	// Verdict is ALLOWED, DENIED or AUDITED.
	Verdict string `json:"verdict"`
}

// Identity is a security identity.
type Identity struct {
	ID     uint32  `json:"id"`
	Labels []Label `json:"labels"`
	// Prefixes are the address prefixes of a CIDR identity (and of world).
	Prefixes []string `json:"prefixes,omitempty"`
}

// TraceSide is the verdict of one side: the source's egress or the
// destination's ingress.
type TraceSide struct {
	// Direction is "ingress" or "egress".
	Direction string `json:"direction"`
	// Endpoint describes the local endpoint whose policy applies.
	Endpoint string `json:"endpoint,omitempty"`
	// Applies is false when the side is not a local endpoint.
	Applies bool `json:"applies"`
	// Enforced says whether the direction is default-deny for it.
	Enforced bool `json:"enforced"`
	// SelectedBy are the namespace-tier policies selecting it.
	SelectedBy []PolicyRef `json:"selectedBy,omitempty"`
	Decision   Decision    `json:"decision"`
	// L7 is the request's verdict under a redirect, if a request was given.
	L7    *L7Verdict `json:"l7,omitempty"`
	Audit bool       `json:"audit"`
	// Verdict is ALLOWED, DENIED, AUDITED or SKIPPED.
	Verdict string `json:"verdict"`
}

// Decision is the L4 verdict of one side and why.
type Decision struct {
	// Verdict is "allow", "deny" or "redirect" (to the proxy).
	Verdict string `json:"verdict"`
	// Tier is "none", "admin", "namespace", "baseline" or "default".
	Tier string `json:"tier"`
	// Rule is the rule that decided; absent for a default.
	Rule RuleRef `json:"rule,omitzero"`
	// Rules are every rule that contributed.
	Rules []RuleRef `json:"rules,omitempty"`
	// Parser is the L7 parser of a redirect ("none", "http", "kafka" or
	// "dns"); absent when the decision has no L7 policy. The compiled L7
	// rules do not travel.
	Parser      string `json:"parser,omitempty"`
	DefaultDeny bool   `json:"defaultDeny"`
	Reason      string `json:"reason"`
	// PassedBy is the admin Pass rule that handed the flow to the
	// namespace tier, if any.
	PassedBy *RuleRef `json:"passedBy,omitempty"`
}

// PolicyRef names a policy: its kind, namespace (empty for cluster-wide
// kinds) and name.
type PolicyRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// RuleRef names one rule of a policy by its field path, such as
// "spec.ingress[0]".
type RuleRef struct {
	Policy PolicyRef `json:"policy"`
	Path   string    `json:"path,omitempty"`
}

// L7Verdict is the verdict of an L7 request.
type L7Verdict struct {
	Parser  string `json:"parser"`
	Allowed bool   `json:"allowed"`
	// Rule is the origin of the rule that allowed the request.
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason"`
	// Actions are header actions (headerMatches mismatches) to apply.
	Actions []string `json:"actions,omitempty"`
}

// Error is the body of a failed request.
type Error struct {
	Error string `json:"error"`
}

// FQDNCacheEntry is one address the DNS proxy's answers taught the agent
// for a name, as one endpoint's lookup learned it.
type FQDNCacheEntry struct {
	// Name is the name looked up (lower case, no trailing dot).
	Name string `json:"name"`
	// Endpoint is "namespace/pod" of the endpoint whose lookup taught it.
	Endpoint string `json:"endpoint"`
	IP       string `json:"ip"`
	// Expires is when the address stops being selected; TTL the seconds
	// left then.
	Expires time.Time `json:"expires"`
	TTL     int64     `json:"ttl"`
}
