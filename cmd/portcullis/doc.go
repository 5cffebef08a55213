// Command portcullis is the Portcullis CLI. It reads policy files the way
// the operator would admit them and explains verdicts without a cluster,
// and talks to the node agent's local API on a node:
//
//	portcullis policy trace    -f FILE_OR_DIR ... --src ... --dst ... --dport PORT[/PROTO]
//	portcullis policy trace    --live --src ... --dst ... --dport PORT[/PROTO]
//	portcullis policy validate -f FILE_OR_DIR ...
//	portcullis policy convert  -f FILE_OR_DIR ...
//	portcullis endpoint list   [-o json] [--socket PATH]
//	portcullis fqdn cache list [-o json] [--socket PATH]
//	portcullis monitor         [-o json] [--verdict V,...] [--socket PATH]
//	portcullis proxy           --policy FILE_OR_DIR --listen ADDR --upstream IP:PORT --src LABELS --dst LABELS
//
// Every flag is described by the command's --help.
//
// # Files
//
// Files (our kinds, Cilium's cilium.io/v2 kinds, Namespaces for namespace
// labels) are read by policy/loader with the CRD schema and CEL rules of
// apis/policy/validation, then compiled by the policy engine; every
// problem, from either, is reported as
// `FILE: document N (Kind ns/name): field.path: message`. validate prints
// every problem at once; convert turns Cilium's kinds into ours.
//
// trace follows one flow: the source's egress and the destination's
// ingress, each with the policies that select it, the tier and rules that
// decided, the L7 verdict under a redirect, and a last line with the final
// verdict.
//
// # The agent's API
//
// endpoint list, fqdn cache list, monitor and trace --live ask the agent on this node
// through its unix socket (portcullis-agent --api-socket; client and wire
// types in package agentclient). endpoint list prints a table ENDPOINT ID,
// NAMESPACE/POD, IP, IDENTITY, STATE, ENFORCEMENT (ingress, egress,
// ingress+egress, none, (audit)), MESSAGE. fqdn cache list prints NAME,
// ENDPOINT, IP, TTL (seconds left): what the DNS proxy's answers taught
// for toFQDNs, per endpoint. monitor prints one line per
// event — time, verdict, `ns/pod (labels)` → `ns/pod:port (labels)`,
// direction, protocol, the L7 request if any (a DNS query's name, type,
// rcode and answers), reason, policy — or one JSON
// object per line; Ctrl-C ends it with status 0. trace --live traces
// against the agent's engine instead of files (peers by --src/--dst
// labels, --src-ip/--dst-ip or entities; the mode and audit setting are
// the agent's) and names the pods the agent resolved. Without an agent,
// each fails with status 1 and a message naming the socket and saying that
// the agent is not running (no socket, or a socket nobody answers).
//
// # Standalone proxy
//
// proxy builds a repository from the files (the same loader and errors as
// trace), places the two pods given by labels (namespace from
// io.kubernetes.pod.namespace, default "default") at the documentation
// addresses 192.0.2.1 and 192.0.2.2, builds one snapshot and serves
// non-transparently: every connection accepted on --listen is the flow
// source pod → destination pod on --dport (default: the upstream's port),
// judged by the same proxy + proxy/http code as the agent's; allowed
// requests go to --upstream. One access line per request goes to standard
// output (text, or the monitor event as JSON) through a 64 KiB buffer
// written out every 100 ms and on exit rather than a write per request
// (every line kept, in order); metrics are on a registry of its own at
// --metrics-addr/metrics. HTTP (HTTP/1.1, h2c, gRPC) and Kafka are served;
// for Kafka the broker addresses in Metadata and FindCoordinator answers
// become --advertise, so that every connection of a client passes the
// proxy. DNS too: when the --dport's UDP rules are DNS rules, --listen
// also takes queries over UDP (a plain socket), and DNS over TCP comes
// through the TCP listener; each query is judged by name (proxy/dns) and
// allowed ones go to --upstream.
// TestProxyStandalone sends real HTTP under examples/starwars
// (request-landing 200 from the upstream, exhaust-port 403 "Access
// denied", golden access lines, metrics); TestProxyStandaloneJSON,
// TestProxyStandaloneL4Denied (the xwing is reset with a DENIED line) and
// the bad-flag and bad-file cases complete it; the Kafka tests put it in
// front of a kfake broker with kcat and a franz-go consumer group;
// TestProxyStandaloneDNS puts it in front of dnsmasq with dig over UDP and
// TCP (allowed NOERROR, denied REFUSED, access lines).
//
// # Exit status
//
//   - 0: the command ran; for trace, whatever the verdict.
//   - 1: bad input (a file that does not load, validate or compile), no
//     agent to talk to, or a failure writing the output. Nothing is
//     written to standard output.
//   - 2: bad command line (unknown flag, missing or conflicting flags, a
//     flag value that does not parse); the usage is printed on standard
//     error.
//
// # Output
//
// trace prints a human-readable explanation (-o text, the default) whose
// last line is exactly `Final verdict: ALLOWED`, `Final verdict: DENIED` or
// `Final verdict: AUDITED`, or one indented JSON object (-o json, see
// traceJSON). Both formats are stable: tests compare them with golden
// files in testdata/.
package main
