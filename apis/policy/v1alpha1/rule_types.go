package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Rule is one policy rule. Its fields and their meaning are those of
// Cilium's api.Rule (the spec of a CiliumNetworkPolicy), so that a Cilium
// policy's YAML means the same here.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.endpointSelector) && has(self.nodeSelector))",message="endpointSelector and nodeSelector are mutually exclusive"
// +kubebuilder:validation:XValidation:rule="has(self.endpointSelector) || has(self.nodeSelector)",message="a rule needs an endpointSelector (or, in a ClusterTrafficPolicy, a nodeSelector)"
type Rule struct {
	// EndpointSelector selects the pods this rule applies to. In a
	// namespaced TrafficPolicy it only ever selects pods of the policy's
	// own namespace.
	// +optional
	EndpointSelector *EndpointSelector `json:"endpointSelector,omitempty"`

	// NodeSelector selects nodes for a host policy. Only valid in a
	// ClusterTrafficPolicy.
	// +optional
	NodeSelector *EndpointSelector `json:"nodeSelector,omitempty"`

	// Ingress lists the rules that allow traffic into the selected pods.
	// A single empty rule (`[{}]`) turns on default deny without allowing
	// anything.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Ingress []IngressRule `json:"ingress,omitempty"`

	// IngressDeny lists the rules that deny traffic into the selected pods.
	// A deny beats every allow.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	IngressDeny []IngressDenyRule `json:"ingressDeny,omitempty"`

	// Egress lists the rules that allow traffic out of the selected pods.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Egress []EgressRule `json:"egress,omitempty"`

	// EgressDeny lists the rules that deny traffic out of the selected pods.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	EgressDeny []EgressDenyRule `json:"egressDeny,omitempty"`

	// Labels identify the rule; they appear in traces and flow events.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Labels []Label `json:"labels,omitempty"`

	// EnableDefaultDeny says whether selecting a pod in a direction turns on
	// default deny for it. Both default to true. A rule with `false` adds
	// its allows and denies without denying the rest.
	// +optional
	EnableDefaultDeny *DefaultDenyConfig `json:"enableDefaultDeny,omitempty"`

	// Description is free text for humans.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`
}

// DefaultDenyConfig switches default deny per direction. Nil means true.
type DefaultDenyConfig struct {
	// +optional
	Ingress *bool `json:"ingress,omitempty"`
	// +optional
	Egress *bool `json:"egress,omitempty"`
}

// Label is a rule label in Cilium's form.
type Label struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	Key string `json:"key"`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Source string `json:"source,omitempty"`
}

// EndpointSelector is a Kubernetes label selector over identity labels.
// Keys may carry a source prefix as in Cilium (`k8s:app`, `any:app`,
// `reserved:host`); without one, any source matches.
type EndpointSelector struct {
	metav1.LabelSelector `json:",inline"`
}

// IngressRule allows traffic from the peers it names, on the ports it
// names. With no peer field it allows from every peer on its ports; with
// no ports it allows every port from its peers.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.toPorts) && has(self.icmps))",message="toPorts and icmps cannot be combined in one rule"
type IngressRule struct {
	IngressCommonRule `json:",inline"`

	// ToPorts restricts the rule to these destination ports, optionally
	// with L7 rules.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	ToPorts []PortRule `json:"toPorts,omitempty"`

	// ICMPs restricts the rule to these ICMP types.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	ICMPs []ICMPRule `json:"icmps,omitempty"`
}

// IngressDenyRule denies traffic from the peers it names, on the ports it
// names. It carries no L7 rules: a deny is decided in the kernel.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.toPorts) && has(self.icmps))",message="toPorts and icmps cannot be combined in one rule"
type IngressDenyRule struct {
	IngressCommonRule `json:",inline"`

	// +optional
	// +kubebuilder:validation:MaxItems=16
	ToPorts []PortDenyRule `json:"toPorts,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=8
	ICMPs []ICMPRule `json:"icmps,omitempty"`
}

// IngressCommonRule names the peers of an ingress rule. The fields are
// alternatives: a peer matching any of them matches.
type IngressCommonRule struct {
	// FromEndpoints selects peer pods by identity labels. In a namespaced
	// policy a selector that names no namespace (neither
	// `io.kubernetes.pod.namespace` nor a namespace label) means the
	// policy's own namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	FromEndpoints []EndpointSelector `json:"fromEndpoints,omitempty"`

	// FromCIDR selects peers outside the cluster by address prefix.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	FromCIDR []CIDR `json:"fromCIDR,omitempty"`

	// FromCIDRSet selects peers by prefix with exceptions.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	FromCIDRSet []CIDRRule `json:"fromCIDRSet,omitempty"`

	// FromEntities selects peers by entity.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	FromEntities []Entity `json:"fromEntities,omitempty"`
}

// EgressRule allows traffic to the peers it names, on the ports it names.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.toPorts) && has(self.icmps))",message="toPorts and icmps cannot be combined in one rule"
// +kubebuilder:validation:XValidation:rule="!has(self.toFQDNs) || !(has(self.toEndpoints) || has(self.toCIDR) || has(self.toCIDRSet) || has(self.toEntities) || has(self.toServices))",message="toFQDNs cannot be combined with other L3 selectors (toEndpoints, toCIDR, toCIDRSet, toEntities, toServices) in one rule"
type EgressRule struct {
	EgressCommonRule `json:",inline"`

	// ToFQDNs selects peers by DNS name; their addresses are learnt from
	// the DNS answers the pod receives through the DNS proxy.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	ToFQDNs []FQDNSelector `json:"toFQDNs,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=16
	ToPorts []PortRule `json:"toPorts,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=8
	ICMPs []ICMPRule `json:"icmps,omitempty"`
}

// EgressDenyRule denies traffic to the peers it names, on the ports it
// names. It carries no L7 rules.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.toPorts) && has(self.icmps))",message="toPorts and icmps cannot be combined in one rule"
type EgressDenyRule struct {
	EgressCommonRule `json:",inline"`

	// +optional
	// +kubebuilder:validation:MaxItems=16
	ToPorts []PortDenyRule `json:"toPorts,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=8
	ICMPs []ICMPRule `json:"icmps,omitempty"`
}

// EgressCommonRule names the peers of an egress rule.
type EgressCommonRule struct {
	// +optional
	// +kubebuilder:validation:MaxItems=256
	ToEndpoints []EndpointSelector `json:"toEndpoints,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=128
	ToCIDR []CIDR `json:"toCIDR,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=32
	ToCIDRSet []CIDRRule `json:"toCIDRSet,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=16
	ToEntities []Entity `json:"toEntities,omitempty"`

	// ToServices selects the backends of Kubernetes Services.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	ToServices []Service `json:"toServices,omitempty"`
}

// CIDR is an IPv4 or IPv6 prefix ("10.0.0.0/8") or a single address.
//
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || isIP(self)",message="must be an IP address or a CIDR prefix such as 10.0.0.0/8"
type CIDR string

// CIDRRule is a prefix with exceptions.
type CIDRRule struct {
	// +required
	Cidr CIDR `json:"cidr"`
	// ExceptCIDRs are sub-prefixes of cidr that the rule does not select.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	ExceptCIDRs []CIDR `json:"except,omitempty"`
}

// Entity is a named group of peers.
//
// +kubebuilder:validation:Enum=all;world;cluster;host;remote-node;kube-apiserver;init;health;unmanaged;ingress
type Entity string

// The entities, as in Cilium.
const (
	EntityAll           Entity = "all"
	EntityWorld         Entity = "world"
	EntityCluster       Entity = "cluster"
	EntityHost          Entity = "host"
	EntityRemoteNode    Entity = "remote-node"
	EntityKubeAPIServer Entity = "kube-apiserver"
	EntityInit          Entity = "init"
	EntityHealth        Entity = "health"
	EntityUnmanaged     Entity = "unmanaged"
	EntityIngress       Entity = "ingress"
)

// Service selects Kubernetes Services whose backends are the peers.
//
// +kubebuilder:validation:XValidation:rule="has(self.k8sService) != has(self.k8sServiceSelector)",message="exactly one of k8sService and k8sServiceSelector"
type Service struct {
	// +optional
	K8sService *K8sServiceNamespace `json:"k8sService,omitempty"`
	// +optional
	K8sServiceSelector *K8sServiceSelectorNamespace `json:"k8sServiceSelector,omitempty"`
}

// K8sServiceNamespace names one Service.
type K8sServiceNamespace struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	ServiceName string `json:"serviceName"`
	// Namespace defaults to the policy's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// K8sServiceSelectorNamespace selects Services by their labels.
type K8sServiceSelectorNamespace struct {
	// +required
	Selector EndpointSelector `json:"selector"`
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// FQDNSelector selects DNS names: exactly one of matchName and matchPattern.
//
// +kubebuilder:validation:XValidation:rule="has(self.matchName) != has(self.matchPattern)",message="exactly one of matchName and matchPattern"
type FQDNSelector struct {
	// MatchName is a fully qualified name, matched case-insensitively;
	// the trailing dot is optional.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^([-a-zA-Z0-9_]+[.]?)+$`
	MatchName string `json:"matchName,omitempty"`

	// MatchPattern is a name in which `*` matches any run of DNS
	// characters within one label, `*` alone matches every name and a
	// leading `**.` matches one or more labels.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^(\*\*\.)?([-a-zA-Z0-9_*]+[.]?)+$`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// L4Proto is an IP protocol name.
//
// +kubebuilder:validation:Enum=TCP;UDP;SCTP;VRRP;IGMP;ANY
type L4Proto string

// The protocols a port can name. ANY means TCP, UDP and SCTP. VRRP (IP
// protocol 112) and IGMP (2) have no ports: a port of theirs is empty or
// "0", as in Cilium 1.18.
const (
	ProtoTCP  L4Proto = "TCP"
	ProtoUDP  L4Proto = "UDP"
	ProtoSCTP L4Proto = "SCTP"
	ProtoVRRP L4Proto = "VRRP"
	ProtoIGMP L4Proto = "IGMP"
	ProtoAny  L4Proto = "ANY"
)

// HasPorts reports whether the protocol has transport ports (false for
// VRRP and IGMP).
func (p L4Proto) HasPorts() bool {
	return p != ProtoVRRP && p != ProtoIGMP
}

// PortProtocol is a port, or a port range with endPort, and a protocol.
//
// +kubebuilder:validation:XValidation:rule="has(self.port) || (has(self.protocol) && self.protocol in ['VRRP', 'IGMP'])",message="port is required, except for VRRP and IGMP"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || !(self.protocol in ['VRRP', 'IGMP']) || ((!has(self.port) || self.port == '0') && (!has(self.endPort) || self.endPort == 0))",message="VRRP and IGMP have no ports: leave port and endPort out (or set port to 0)"
// +kubebuilder:validation:XValidation:rule="!has(self.port) || !self.port.matches('^[0-9]+$') || int(self.port) <= 65535",message="port must be between 0 and 65535"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || (has(self.port) && self.port.matches('^[0-9]+$') && self.endPort >= int(self.port))",message="endPort must be a number not below port, and needs a numeric port"
type PortProtocol struct {
	// Port is a number ("80", "0" for every port) or the name of a
	// container port. It is required except for VRRP and IGMP, which have
	// no ports.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^([0-9]{1,5}|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`
	Port string `json:"port,omitempty"`

	// EndPort makes the rule cover port..endPort.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	EndPort int32 `json:"endPort,omitempty"`

	// Protocol defaults to ANY.
	// +optional
	Protocol L4Proto `json:"protocol,omitempty"`
}

// PortRule is a list of ports with optional TLS and L7 rules that apply
// to traffic on them.
//
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || !has(self.rules.dns) || !has(self.ports) || self.ports.all(p, !has(p.endPort) || p.endPort == 0 || (has(p.port) && string(p.endPort) == p.port))",message="DNS rules cannot be used with port ranges"
type PortRule struct {
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Ports []PortProtocol `json:"ports,omitempty"`

	// TerminatingTLS is the certificate the proxy presents to the client
	// when it intercepts TLS on these ports.
	// +optional
	TerminatingTLS *TLSContext `json:"terminatingTLS,omitempty"`

	// OriginatingTLS is the trust the proxy uses towards the server when
	// it re-originates TLS.
	// +optional
	OriginatingTLS *TLSContext `json:"originatingTLS,omitempty"`

	// ServerNames restricts the rule to TLS connections whose SNI matches:
	// an exact name, `*.` for one label, `**.` for any depth.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^(\*\*?\.)?([-a-zA-Z0-9_]+\.?)+$`
	ServerNames []string `json:"serverNames,omitempty"`

	// Rules are L7 rules; at most one protocol per port rule.
	// +optional
	Rules *L7Rules `json:"rules,omitempty"`
}

// PortDenyRule lists ports of a deny rule.
type PortDenyRule struct {
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Ports []PortProtocol `json:"ports,omitempty"`
}

// TLSContext points at TLS material in a Secret.
type TLSContext struct {
	// +required
	Secret *Secret `json:"secret"`
	// TrustedCA is the key in the secret holding the CA bundle.
	// +optional
	TrustedCA string `json:"trustedCA,omitempty"`
	// Certificate is the key in the secret holding the certificate chain.
	// +optional
	Certificate string `json:"certificate,omitempty"`
	// PrivateKey is the key in the secret holding the private key.
	// +optional
	PrivateKey string `json:"privateKey,omitempty"`
}

// Secret names a Secret. The namespace defaults to the policy's; another
// namespace needs a ReferenceGrant there.
type Secret struct {
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// L7Rules holds the L7 rules of one port rule: one protocol only.
//
// +kubebuilder:validation:XValidation:rule="(has(self.http) ? 1 : 0) + (has(self.kafka) ? 1 : 0) + (has(self.dns) ? 1 : 0) <= 1",message="only one L7 protocol (http, kafka or dns) per port rule"
type L7Rules struct {
	// +optional
	// +kubebuilder:validation:MaxItems=256
	HTTP []PortRuleHTTP `json:"http,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Kafka []PortRuleKafka `json:"kafka,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxItems=128
	DNS []PortRuleDNS `json:"dns,omitempty"`
}

// PortRuleHTTP allows the HTTP requests it matches. Empty fields match
// everything. Method, path and host are POSIX extended regular
// expressions matched against the whole value.
type PortRuleHTTP struct {
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Method string `json:"method,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Host string `json:"host,omitempty"`
	// Headers must be present: "Name" for presence, "Name: value" for a
	// literal value.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	Headers []string `json:"headers,omitempty"`
	// HeaderMatches compare header values, with an action on mismatch.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	HeaderMatches []HeaderMatch `json:"headerMatches,omitempty"`
}

// MismatchAction is what to do when a header match fails. Empty means the
// rule does not match.
//
// +kubebuilder:validation:Enum=LOG;ADD;DELETE;REPLACE
type MismatchAction string

// The mismatch actions, as in Cilium.
const (
	MismatchLog     MismatchAction = "LOG"
	MismatchAdd     MismatchAction = "ADD"
	MismatchDelete  MismatchAction = "DELETE"
	MismatchReplace MismatchAction = "REPLACE"
)

// HeaderMatch compares one header with a value, given literally or from a
// secret, or (a Portcullis extension) with a regular expression. With
// none of them, the header must be present.
//
// Regex excludes value and secret, and allows only the mismatch actions
// LOG and DELETE. These rules, and the regex's syntax, are checked by the
// policy engine (the operator's Accepted condition, `portcullis policy
// validate`), not by CEL: a rule on every headerMatches entry would
// multiply by the maxItems of every enclosing list (about 6.7e7 entries
// under specs) and exceed the apiserver's CEL cost budget many times over.
type HeaderMatch struct {
	// +optional
	Mismatch MismatchAction `json:"mismatch,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`
	// +optional
	Secret *Secret `json:"secret,omitempty"`
	// Value is the literal value the header must have (an exact match,
	// as in Cilium).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`
	// Regex is a regular expression (RE2 syntax, as for path) that the
	// whole header value must match; several values of the header are
	// joined with "," first. A Portcullis extension: Cilium's HeaderMatch
	// has no such field, and its value stays a literal here too, so a
	// Cilium policy means the same. Exclusive with value and secret; the
	// only mismatch actions are LOG and DELETE.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Regex string `json:"regex,omitempty"`
}

// PortRuleKafka allows the Kafka requests it matches. Role and apiKey are
// alternatives; empty fields match everything.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.role) && has(self.apiKey))",message="role and apiKey are mutually exclusive"
type PortRuleKafka struct {
	// Role is produce or consume, each standing for the API keys that a
	// producer or consumer needs.
	// +optional
	// +kubebuilder:validation:Enum=produce;consume;Produce;Consume
	Role string `json:"role,omitempty"`
	// APIKey is a Kafka API key name such as "produce" or "fetch".
	// +optional
	// +kubebuilder:validation:MaxLength=64
	APIKey string `json:"apiKey,omitempty"`
	// APIVersion is a single request version number.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]{1,5}$`
	APIVersion string `json:"apiVersion,omitempty"`
	// ClientID matches the request's client ID exactly.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ClientID string `json:"clientID,omitempty"`
	// Topic matches the request's topics exactly; a request naming several
	// topics is allowed only if every one is.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	Topic string `json:"topic,omitempty"`
}

// PortRuleDNS allows DNS lookups of the names it matches.
//
// +kubebuilder:validation:XValidation:rule="has(self.matchName) != has(self.matchPattern)",message="exactly one of matchName and matchPattern"
type PortRuleDNS struct {
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^([-a-zA-Z0-9_]+[.]?)+$`
	MatchName string `json:"matchName,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^(\*\*\.)?([-a-zA-Z0-9_*]+[.]?)+$`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// ICMPRule lists ICMP types.
type ICMPRule struct {
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=40
	Fields []ICMPField `json:"fields"`
}

// ICMPField is one ICMP type of a family.
type ICMPField struct {
	// Family is IPv4 (default) or IPv6.
	// +optional
	// +kubebuilder:validation:Enum=IPv4;IPv6
	Family string `json:"family,omitempty"`
	// Type is a number 0-255 or a name such as EchoRequest.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="type(self) == string || (self >= 0 && self <= 255)",message="ICMP type must be between 0 and 255 or a name"
	Type *intstr.IntOrString `json:"type"`
}
