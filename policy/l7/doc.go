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
// # Matching
//
// HTTP method, path and host are POSIX extended regular expressions matched
// against the whole value (RE2 syntax, a superset, as Envoy uses); a regex
// whose compiled program exceeds [MaxRegexProgramSize] instructions is a
// validation error on that rule, so one oversized regex cannot take every
// policy down with it. headers are presence ("Name") or literal value
// ("Name: value") checks; headerMatches compare a literal or secret value,
// with mismatch actions LOG, ADD, DELETE, REPLACE, or match a regex (the
// Portcullis extension, see package v1alpha1) with the same dialect,
// whole-value anchoring and program size limit as the path. Without a
// mismatch action, a header that is absent or does not match makes the
// rule not match, as a value does; DELETE removes a header that is present
// and does not match. gRPC is HTTP/2 with path /package.Service/Method.
//
// Kafka rules expand roles as Cilium does (produce → 0, 3, 18; consume →
// 1, 2, 3, 8–14, 18), match API key names, version, client ID and topic,
// and a request naming several topics is allowed only if every topic is.
//
// DNS matchName/matchPattern (* within one label, * alone for every name;
// as in Cilium 1.18, ** means the same as *, so **.example.com matches
// exactly one label) are case-insensitive with an optional trailing dot.
// TLS serverNames take exact names, *. (one label) and **. (any depth).
//
// # Deciding
//
// Within one protocol, rules are a union: a request is allowed when any
// rule allows it (Kafka refines this per topic, see [KafkaRules.Decide]).
// A nil or empty rule set allows nothing; a Policy with no L7 rules at all
// is represented by rules that match everything (see [AllowAll]).
package l7
