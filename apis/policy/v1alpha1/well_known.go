package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
)

// Well-known names and numbers that the operator, the node agents, the
// datapath and the packaging agree on. Each is a contract between
// components or with running clusters: change one and the other side, or
// an upgrade, breaks.
const (
	// DefaultSystemNamespace is the namespace the operator and the agents
	// run in unless configured otherwise; the agents hold their Leases
	// there and the operator watches them there.
	DefaultSystemNamespace = "portcullis-system"

	// DefaultSecretsNamespace is the namespace, unless configured
	// otherwise, that receives the operator's copies of the secrets
	// policies refer to; the agents read the copies there and nothing
	// else.
	DefaultSecretsNamespace = "portcullis-secrets"

	// AgentLeasePrefix prefixes the name of the Lease each node agent
	// holds in the system namespace (see [AgentLeaseName]); the operator
	// counts an agent live while its Lease is renewed.
	AgentLeasePrefix = "portcullis-agent-"

	// AgentFieldManagerPrefix prefixes the field manager each node agent
	// applies its status.nodes entries with (see [AgentFieldManager]): one
	// manager per node, so that agents never overwrite each other's entry.
	AgentFieldManagerPrefix = "portcullis-agent/"

	// OperatorFieldManager is the field manager of everything the
	// operator writes: the policies' conditions and the secret copies.
	OperatorFieldManager = "portcullis-operator"

	// AuditAnnotation set to "true" on a Namespace puts its endpoints in
	// audit mode: denials are reported as audited and the flow is allowed.
	AuditAnnotation = "policy.portcullis.dev/audit-mode"

	// DefaultProxyPort is the port of the agent's transparent L7 proxy
	// unless configured otherwise: the datapath's redirect entries send
	// traffic to it.
	DefaultProxyPort = 15001

	// SecretCopyManagedByLabel set to [SecretCopyManagedBy] marks a Secret
	// in the secrets namespace as the operator's copy; the agents use no
	// other.
	SecretCopyManagedByLabel = "app.kubernetes.io/managed-by"
	// SecretCopyManagedBy is SecretCopyManagedByLabel's value on a copy.
	SecretCopyManagedBy = "portcullis-operator"
	// SecretCopySourceNamespace (a label and an annotation on a copy) is
	// the namespace of the secret it copies.
	SecretCopySourceNamespace = "policy.portcullis.dev/source-namespace"
	// SecretCopySourceName (an annotation: a name can be longer than a
	// label value may be) is the name of the secret a copy copies.
	SecretCopySourceName = "policy.portcullis.dev/source-name"
)

// maxSecretName is a Secret name's limit (DNS subdomain).
const maxSecretName = 253

// SecretCopyName is the name of the operator's copy of secret
// namespace/name in the secrets namespace: "<namespace>.<name>", unique
// because a namespace has no dot. When that is longer than a Secret name
// may be, the name is cut and a hash of the full "<namespace>/<name>"
// appended. Agents use it to find a policy's secrets.
func SecretCopyName(namespace, name string) string {
	n := namespace + "." + name
	if len(n) <= maxSecretName {
		return n
	}
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	h := hex.EncodeToString(sum[:8])
	return n[:maxSecretName-len(h)-1] + "-" + h
}

// AgentLeaseName is the name of the Lease the agent of node holds.
func AgentLeaseName(node string) string { return AgentLeasePrefix + node }

// AgentFieldManager is the field manager of the agent of node.
func AgentFieldManager(node string) string { return AgentFieldManagerPrefix + node }
