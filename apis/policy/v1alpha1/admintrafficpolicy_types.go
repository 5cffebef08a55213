package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Tier is the tier of an AdminTrafficPolicy.
//
// +kubebuilder:validation:Enum=Admin;Baseline
type Tier string

// The tiers. Admin is evaluated before the namespace tier (TrafficPolicy
// and ClusterTrafficPolicy), Baseline after it.
const (
	TierAdmin    Tier = "Admin"
	TierBaseline Tier = "Baseline"
)

// AdminAction is what a matching admin rule does.
//
// +kubebuilder:validation:Enum=Allow;Deny;Pass
type AdminAction string

// The admin actions. Pass hands the decision to the namespace tier and is
// only valid in the Admin tier.
const (
	ActionAllow AdminAction = "Allow"
	ActionDeny  AdminAction = "Deny"
	ActionPass  AdminAction = "Pass"
)

// AdminTrafficPolicySpec is a cluster admin's policy, modelled on
// Kubernetes' AdminNetworkPolicy (tier Admin) and
// BaselineAdminNetworkPolicy (tier Baseline): rules are tried by ascending
// priority, in order, and the first match decides.
//
// +kubebuilder:validation:XValidation:rule="self.tier == 'Admin' || ((!has(self.ingress) || self.ingress.all(r, r.action != 'Pass')) && (!has(self.egress) || self.egress.all(r, r.action != 'Pass')))",message="action Pass is only valid in the Admin tier"
type AdminTrafficPolicySpec struct {
	// Tier is Admin (before namespace policies) or Baseline (after them).
	// +kubebuilder:default=Admin
	// +optional
	Tier Tier `json:"tier,omitempty"`

	// Priority orders policies of a tier: lower numbers first.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority"`

	// Subject selects the pods the policy applies to.
	Subject AdminSubject `json:"subject"`

	// Ingress rules, tried in order.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	Ingress []AdminIngressRule `json:"ingress,omitempty"`

	// Egress rules, tried in order.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	Egress []AdminEgressRule `json:"egress,omitempty"`
}

// AdminSubject selects pods: all pods of some namespaces, or some pods of
// some namespaces. Exactly one field is set.
//
// +kubebuilder:validation:XValidation:rule="has(self.namespaces) != has(self.pods)",message="exactly one of namespaces and pods"
type AdminSubject struct {
	// Namespaces selects namespaces by their labels; all their pods are
	// subjects.
	// +optional
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	// Pods selects pods by namespace and pod labels.
	// +optional
	Pods *NamespacedPods `json:"pods,omitempty"`
}

// NamespacedPods selects pods by the labels of their namespace and their
// own labels.
type NamespacedPods struct {
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`
	PodSelector       metav1.LabelSelector `json:"podSelector"`
}

// AdminPeer is one kind of peer. Exactly one field is set.
//
// +kubebuilder:validation:XValidation:rule="(has(self.namespaces) ? 1 : 0) + (has(self.pods) ? 1 : 0) + (has(self.networks) ? 1 : 0) + (has(self.entities) ? 1 : 0) == 1",message="exactly one of namespaces, pods, networks and entities"
type AdminPeer struct {
	// +optional
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	// +optional
	Pods *NamespacedPods `json:"pods,omitempty"`
	// Networks are prefixes outside the cluster.
	// +optional
	// +kubebuilder:validation:MaxItems=25
	Networks []CIDR `json:"networks,omitempty"`
	// Entities are Cilium's entities, such as world or kube-apiserver.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Entities []Entity `json:"entities,omitempty"`
}

// AdminIngressRule is one ingress rule of an AdminTrafficPolicy.
//
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || self.action == 'Allow'",message="L7 rules are only valid with action Allow"
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || has(self.ports)",message="L7 rules need ports"
type AdminIngressRule struct {
	// Name names the rule in traces and events.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	Name string `json:"name,omitempty"`
	// +required
	Action AdminAction `json:"action"`
	// From lists the peers; a peer matching any entry matches.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	From []AdminPeer `json:"from"`
	// Ports restricts the rule; empty means every port.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	Ports []PortProtocol `json:"ports,omitempty"`
	// Rules are L7 rules applied to allowed traffic on Ports.
	// +optional
	Rules *L7Rules `json:"rules,omitempty"`
}

// AdminEgressRule is one egress rule of an AdminTrafficPolicy.
//
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || self.action == 'Allow'",message="L7 rules are only valid with action Allow"
// +kubebuilder:validation:XValidation:rule="!has(self.rules) || has(self.ports)",message="L7 rules need ports"
type AdminEgressRule struct {
	// +optional
	// +kubebuilder:validation:MaxLength=100
	Name string `json:"name,omitempty"`
	// +required
	Action AdminAction `json:"action"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	To []AdminPeer `json:"to"`
	// +optional
	// +kubebuilder:validation:MaxItems=100
	Ports []PortProtocol `json:"ports,omitempty"`
	// +optional
	Rules *L7Rules `json:"rules,omitempty"`
}

// AdminTrafficPolicy is a cluster admin's policy in the Admin or Baseline
// tier; Pass in the Admin tier delegates to namespace owners.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=atp,categories=portcullis
// +kubebuilder:printcolumn:name="Tier",type=string,JSONPath=`.spec.tier`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AdminTrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AdminTrafficPolicySpec `json:"spec"`

	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// AdminTrafficPolicyList is a list of AdminTrafficPolicy.
//
// +kubebuilder:object:root=true
type AdminTrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AdminTrafficPolicy `json:"items"`
}
