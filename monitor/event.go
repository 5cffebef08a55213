// Package monitor is the flow-event model shared by the datapath reader
// (L3/L4 verdicts from the BPF ring buffer) and the proxies (one L7 access
// record per request), and the hub that fans events out to followers such
// as `portcullis monitor`.
package monitor

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"portcullis.dev/portcullis/policy"
)

// Event types.
const (
	// TypePolicyVerdict is an L3/L4 verdict of the kernel datapath.
	TypePolicyVerdict = "policy-verdict"
	// TypeL7 is one request (or response) judged by a proxy.
	TypeL7 = "l7"
)

// Verdicts. The datapath reports FORWARDED (once per new allowed flow),
// DROPPED, REDIRECTED and AUDITED; proxies
// report FORWARDED, DENIED (answered in the protocol's words), AUDITED and
// ERROR (no verdict could be reached: the request was refused).
const (
	VerdictForwarded  = "FORWARDED"
	VerdictDropped    = "DROPPED"
	VerdictRedirected = "REDIRECTED"
	VerdictAudited    = "AUDITED"
	VerdictDenied     = "DENIED"
	VerdictError      = "ERROR"
)

// Endpoint is one side of a flow as a human wants to see it.
type Endpoint struct {
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

// L7 is the part of an event that only proxies fill.
type L7 struct {
	// Protocol is "http/1.1", "h2", "grpc", "kafka" or "dns".
	Protocol string `json:"protocol"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	Host     string `json:"host,omitempty"`
	// Status is the HTTP status sent to the client (403 for a denial);
	// GRPCStatus the grpc-status when the request was gRPC.
	Status     int  `json:"status,omitempty"`
	GRPCStatus *int `json:"grpcStatus,omitempty"`
	// Latency is from the request's first byte to the response's headers.
	Latency time.Duration `json:"latency,omitempty"`
	// Kafka describes a Kafka request.
	Kafka *Kafka `json:"kafka,omitempty"`
	// Refused classifies a request or connection the proxy refused to
	// protect itself, not by policy: "header-timeout", "body-timeout",
	// "header-too-large", "tls-on-plain-port", "connection-limit",
	// "slot-reclaimed", "h2-abuse", "bad-request"; counted in
	// portcullis_proxy_refused_total{reason}.
	Refused string `json:"refused,omitempty"`
	// DNS describes a DNS query and its answer.
	DNS *DNS `json:"dns,omitempty"`
	// ServerName is the TLS server name (SNI) the client sent, on
	// connections judged or intercepted at the TLS layer.
	ServerName string `json:"serverName,omitempty"`
}

// DNS is what an event shows of one DNS query.
type DNS struct {
	// Query is the name asked, as in the question (trailing dot).
	Query string `json:"query"`
	// Type is the question's type ("A", "AAAA", ...).
	Type string `json:"type"`
	// RCode is the response code sent to the client ("NOERROR",
	// "REFUSED", ...); empty when nothing was sent.
	RCode string `json:"rcode,omitempty"`
	// Answers are the addresses of the answer's A and AAAA records (CNAME
	// chains followed), as sent to the client.
	Answers []string `json:"answers,omitempty"`
	// Observed are the names whose addresses went to toFQDNs selectors.
	Observed []string `json:"observed,omitempty"`
	// Hold is how long the answer was held until the datapath allowed
	// its addresses (0 when it was not held).
	Hold time.Duration `json:"hold,omitempty"`
}

// String renders the query for one-line event formats:
// "api.example.com. A NOERROR 10.96.1.1,10.96.1.2".
func (d *DNS) String() string {
	s := d.Query + " " + d.Type
	if d.RCode != "" {
		s += " " + d.RCode
	}
	if len(d.Answers) > 0 {
		s += " " + strings.Join(d.Answers, ",")
	}
	return s
}

// Kafka is what an event shows of one Kafka request.
type Kafka struct {
	// APIKey is the request's API key name ("produce", "fetch", ...).
	APIKey     string `json:"apiKey"`
	APIVersion int16  `json:"apiVersion"`
	ClientID   string `json:"clientID,omitempty"`
	// Topics are the topics the request names.
	Topics []string `json:"topics,omitempty"`
	// ErrorCode is the Kafka error code the proxy answered a denial with.
	ErrorCode int16 `json:"errorCode,omitempty"`
}

// Event is one flow event.
type Event struct {
	Time time.Time `json:"time"`
	Node string    `json:"node,omitempty"`
	// Type is TypePolicyVerdict or TypeL7.
	Type string `json:"type"`
	// Verdict is one of the Verdict constants.
	Verdict string `json:"verdict"`
	// Reason says why, e.g. "policy", "no-policy-entry", "lockdown",
	// "no-proxy"; for L7 denials the rule set that refused.
	Reason string `json:"reason,omitempty"`
	// Direction is "ingress" or "egress": the policy direction (of the
	// endpoint whose policy decided) that produced the verdict.
	Direction string `json:"direction,omitempty"`
	// Protocol is a name ("TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "VRRP",
	// "IGMP") or, for other IP protocols, the number.
	Protocol    string   `json:"protocol"`
	Source      Endpoint `json:"source"`
	Destination Endpoint `json:"destination"`
	// Policy names the policy (and rule) that decided, e.g.
	// "TrafficPolicy default/rule1 spec.ingress[0].toPorts[0]"; for a
	// default-deny drop, the policies selecting the endpoint followed by
	// "(default deny)"; empty when no policy is involved.
	Policy string `json:"policy,omitempty"`
	// Service is the Service the source called, for a flow the datapath
	// translated to the Destination backend: "namespace/name
	// clusterIP:port", or the address alone if the agent has no Service
	// for it.
	Service string `json:"service,omitempty"`
	L7      *L7    `json:"l7,omitempty"`
}

// Labels renders identity labels for an Endpoint: "key=value" for
// Kubernetes labels (the source of pod and namespace labels), and
// "source:key[=value]" for the others (reserved:world, cidr:...), sorted.
// The datapath's events and the proxies' use it alike, so one pod reads
// the same in every line of `portcullis monitor`.
func Labels(ls policy.Labels) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		switch {
		case l.Source == policy.SourceK8s && l.Value == "":
			out = append(out, l.Key)
		case l.Source == policy.SourceK8s:
			out = append(out, l.Key+"="+l.Value)
		default:
			out = append(out, l.String())
		}
	}
	sort.Strings(out)
	return out
}

// String renders the request for one-line event formats:
// "produce v9 client=rdkafka topics=a,b error=29".
func (k *Kafka) String() string {
	s := fmt.Sprintf("%s v%d", k.APIKey, k.APIVersion)
	if k.ClientID != "" {
		s += " client=" + k.ClientID
	}
	if len(k.Topics) > 0 {
		s += " topics=" + strings.Join(k.Topics, ",")
	}
	if k.ErrorCode != 0 {
		s += fmt.Sprintf(" error=%d", k.ErrorCode)
	}
	return s
}
