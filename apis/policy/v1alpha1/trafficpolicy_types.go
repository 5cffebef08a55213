package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types and reasons shared by the policy kinds.
const (
	// ConditionAccepted is true when the policy passed validation and the
	// engine took it.
	ConditionAccepted = "Accepted"
	// ConditionProgrammed is true when the node agents report the policy
	// in force.
	ConditionProgrammed = "Programmed"

	ReasonAccepted        = "Accepted"
	ReasonInvalid         = "Invalid"
	ReasonRefNotPermitted = "RefNotPermitted"
	ReasonProgrammed      = "Programmed"
	ReasonPending         = "Pending"

	// ConditionResolvedRefs is true when every secret the policy refers
	// to may be used (same namespace, or a ReferenceGrant allows it) and
	// exists. A refused reference does not withdraw the policy (Accepted
	// stays as validation says): the rule that needs the secret fails
	// closed in the proxy, while withdrawing the whole policy could turn a
	// default-deny endpoint into a default-allow one.
	ConditionResolvedRefs = "ResolvedRefs"

	ReasonResolvedRefs   = "ResolvedRefs"
	ReasonSecretNotFound = "SecretNotFound"
)

// PolicyStatus is the observed state of a policy of any kind.
type PolicyStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions are Accepted and Programmed.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Nodes is written by the node agents, one entry per node, each by
	// its own agent with server-side apply (field manager
	// "portcullis-agent/<node>"), so agents never overwrite each other.
	// The operator derives Programmed from these entries and the agents'
	// Leases; it never writes this list.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=5000
	Nodes []PolicyNodeStatus `json:"nodes,omitempty"`
}

// PolicyNodeStatus is one node agent's report about one policy.
type PolicyNodeStatus struct {
	// Name is the node's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// ObservedGeneration is the policy generation this agent has in force
	// in its datapath.
	// +kubebuilder:validation:Minimum=0
	ObservedGeneration int64 `json:"observedGeneration"`

	// Message says why a newer generation is not in force yet, if the
	// agent failed to program it; empty otherwise.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// TrafficPolicy is a namespaced network policy with Cilium's
// CiliumNetworkPolicy semantics. It selects pods of its own namespace only.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=tp,categories=portcullis
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="has(self.spec) || has(self.specs)",message="a TrafficPolicy needs spec or specs"
// +kubebuilder:validation:XValidation:rule="(!has(self.spec) || !has(self.spec.nodeSelector)) && (!has(self.specs) || self.specs.all(r, !has(r.nodeSelector)))",message="nodeSelector is only valid in a ClusterTrafficPolicy"
type TrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is one rule.
	// +optional
	Spec *Rule `json:"spec,omitempty"`

	// Specs is a list of rules, as in Cilium.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Specs []Rule `json:"specs,omitempty"`

	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// TrafficPolicyList is a list of TrafficPolicy.
//
// +kubebuilder:object:root=true
type TrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficPolicy `json:"items"`
}

// ClusterTrafficPolicy is a cluster-scoped network policy with Cilium's
// CiliumClusterwideNetworkPolicy semantics; with nodeSelector it is a
// host policy.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ctp,categories=portcullis
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="has(self.spec) || has(self.specs)",message="a ClusterTrafficPolicy needs spec or specs"
type ClusterTrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec *Rule `json:"spec,omitempty"`

	// +optional
	// +kubebuilder:validation:MaxItems=8
	Specs []Rule `json:"specs,omitempty"`

	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// ClusterTrafficPolicyList is a list of ClusterTrafficPolicy.
//
// +kubebuilder:object:root=true
type ClusterTrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTrafficPolicy `json:"items"`
}

// Rules returns the policy's rules: spec, then specs.
func (p *TrafficPolicy) Rules() []Rule { return joinRules(p.Spec, p.Specs) }

// Rules returns the policy's rules: spec, then specs.
func (p *ClusterTrafficPolicy) Rules() []Rule { return joinRules(p.Spec, p.Specs) }

func joinRules(spec *Rule, specs []Rule) []Rule {
	out := make([]Rule, 0, len(specs)+1)
	if spec != nil {
		out = append(out, *spec)
	}
	return append(out, specs...)
}

func init() {
	SchemeBuilder.Register(&TrafficPolicy{}, &TrafficPolicyList{},
		&ClusterTrafficPolicy{}, &ClusterTrafficPolicyList{},
		&AdminTrafficPolicy{}, &AdminTrafficPolicyList{})
}
