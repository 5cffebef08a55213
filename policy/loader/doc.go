// Package loader reads policy files for the portcullis CLI
// (`portcullis policy trace|validate|convert -f FILE_OR_DIR`).
//
// It is pure: it reads files (or stdin) and never talks to a Kubernetes
// API server or the network.
//
// # Inputs
//
// A path is a file or a directory. Directories are read recursively, in
// lexical order, taking files named *.yaml, *.yml and *.json and skipping
// directories whose names start with a dot; a file named explicitly is read
// whatever its name. "-" reads standard input. A file is a stream of YAML
// documents separated by "---" lines, or a stream of JSON objects when its
// first non-blank byte is '{'. A document of kind List (apiVersion v1), or
// a typed list such as TrafficPolicyList, contributes each of its items.
// Empty documents (only blanks and comments, such as a header comment before
// the first "---") are ignored and not numbered; the others are numbered
// from 1 in the order they appear.
//
// # Kinds
//
//   - policy.portcullis.dev/v1alpha1 TrafficPolicy, ClusterTrafficPolicy and
//     AdminTrafficPolicy are decoded as they are.
//   - cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy are
//     converted in memory to TrafficPolicy and ClusterTrafficPolicy: the rule
//     fields are the same, so the conversion re-types the object and drops
//     its status. Cilium fields that Portcullis does not implement (such as
//     toGroups, fromRequires, authentication, listener or l7proto) are errors
//     naming the field, never silently dropped. Entity names that Cilium
//     does not have but that policies written for it use (kube-dns) are
//     errors saying what to write instead (RefusedEntities), in Cilium
//     documents and TrafficPolicies alike.
//   - v1 Namespace supplies namespace labels to the engine.
//   - Kinds that cannot change a policy verdict and that commonly share a
//     directory with policies (Pods, Deployments, Services, ConfigMaps, ...;
//     see DefaultSkipKinds) are skipped with a warning.
//   - Every other kind is an error naming it. In particular Kubernetes
//     NetworkPolicy and other policy kinds are errors, because ignoring them
//     would make a trace answer differently from the cluster.
//
// Namespaced policies without metadata.namespace get "default", as kubectl
// would give them; a namespace on a cluster-scoped object is dropped with a
// warning. Metadata is checked as the API server would check it (a DNS
// name, valid labels and annotations).
//
// Two documents with the same kind, namespace and name (a converted
// CiliumNetworkPolicy counts as a TrafficPolicy) are an error when they
// differ, since one would replace the other in a cluster, and a warning
// when they are identical (the same file given twice, say).
//
// # Convert
//
// Convert backs `portcullis policy convert`: it writes the Cilium documents
// as TrafficPolicy and ClusterTrafficPolicy YAML and every other document as
// it was written.
//
// # Errors
//
// Decoding is strict: an unknown field, a duplicate key or a value of the
// wrong type is an error naming the field path, such as
// spec.ingress[0].fromEndpointz. Each error names the file, the document
// number and, where known, the kind, namespace and name; see Error. The
// loader collects every problem across all files and returns them together
// as Errors, and returns no documents when there is any error, so callers
// get either the full set or the errors.
//
// An optional Loader.Validate hook (for instance the CRD schema and CEL
// rules run in-process) is applied to every document of our kinds, after
// Cilium conversion and defaulting and before typed decoding.
package loader
