// Package packaging tests what users install, against a real kube-apiserver
// (controller-runtime envtest, binaries from KUBEBUILDER_ASSETS): the Helm
// chart (lint, schema errors, every value set rendered and applied with a
// server-side dry run), every kustomize base and overlay under config/
// (built and applied the same way), the security settings of the agent and
// operator workloads, and the policy CRDs' admission of valid and invalid
// policies (CEL and OpenAPI errors as the apiserver reports them).
//
// The tests drive the real CLIs, found through $KUBECTL, $HELM and
// $KUSTOMIZE (default bin/kubectl, bin/helm, bin/kustomize relative to the
// repository root), with a kubeconfig for a system:masters user.
package packaging
