// Package validation checks policy.portcullis.dev objects (TrafficPolicy,
// ClusterTrafficPolicy, AdminTrafficPolicy) the way the kube-apiserver
// checks them on create, without an apiserver.
//
// It runs the apiextensions-apiserver's own code on the CRDs embedded by
// package portcullis.dev/portcullis/config/crd: structural-schema
// defaulting, pruning with unknown-field detection (as with
// `kubectl apply --validate=strict`), ObjectMeta validation, OpenAPI schema
// validation (types, enums, patterns, bounds, list sizes), list-type
// invariants and the CEL x-kubernetes-validations rules with their
// messages and the apiserver's runtime cost budget. Error field paths and
// messages are the apiserver's, such as
//
//	spec.ingress[0].toPorts[0].rules: Invalid value: "object": only one L7 protocol (http, kafka or dns) per port rule
//
// The validators are built once, on first use, and are safe for
// concurrent use.
package validation
