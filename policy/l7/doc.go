// Package l7 compiles the L7 parts of policy rules — HTTP (and gRPC, which
// is HTTP), Kafka, DNS names, TLS server names — into matchers, and decides
// single requests against them.
//
// It is a pure library: no Kubernetes client, no network I/O, no kernel.
// The policy engine compiles rules with it and attaches a [Policy] to each
// "redirect to proxy" map entry; the proxies call the Decide methods.
// Semantics follow Cilium 1.18 (and, for HTTP, Cilium's Envoy filter), so a
// Cilium policy means the same here. Deviations are documented where they
// are made.
//
// # Compiling
//
// Every Compile function takes the *field.Path of the spec it compiles and
// returns a field.ErrorList, so a rule the proxy cannot enforce (a bad or
// oversized regular expression, an unknown Kafka API key, an unresolvable
// secret) is a validation error on that rule, with a path such as
// spec.ingress[0].toPorts[0].rules.http[1].path. Nothing is silently dropped.
// Every compiled rule carries an Origin string chosen by the caller, such as
// "default/rule1: ingress[0].toPorts[0].rules.http[1]", so that verdicts can
// name the rule that allowed a request.
//
// Compiled rules are immutable after compilation and safe for concurrent
// use. Decide methods never panic, whatever the request holds.
//
// # Deciding
//
// Within one protocol, rules are a union: a request is allowed when any
// rule allows it (Kafka refines this per topic, see [KafkaRules.Decide]).
// A nil or empty rule set allows nothing; a Policy with no L7 rules at all
// is represented by rules that match everything (see [AllowAll]).
package l7
