// Package dns holds the DNS proxy's end-to-end tests (root only): dig and
// curl in a pod's network namespace, the pod's resolv.conf naming kube-dns'
// ClusterIP, the kernel datapath translating it to CoreDNS
// (internal/localcluster StartDNS) and redirecting the lookups to the
// agent's DNS proxy, "external" hosts (localcluster AddHost) that CoreDNS
// resolves by name and that serve HTTP on 443. The environment is
// e2e/internal/harness's: a local cluster, the operator's status
// reconcilers, agent.Run in-process on a bpffs of its own, the node lock.
//
// TestMediabot applies Cilium's DNS-based policy with example.com names
// (lookups of *.example.com through kube-dns on 53, UDP and TCP; 443 to
// the addresses of api.example.com) and checks, as the mediabot sees it:
//
//   - before any lookup, a connection to api.example.com's address is
//     dropped;
//   - curl http://api.example.com:443/ resolves the name and connects at
//     once: 200, with no packet to the address dropped and no SYN
//     retransmitted, since the answer was held until the datapath allowed
//     the address (with the hold disabled the first SYN is dropped and
//     curl takes a second longer: the test fails);
//   - dig over UDP and TCP: api.example.com and support.example.com
//     NOERROR with the host's address; www.example.org (which CoreDNS
//     serves) and example.com (the pattern's parent) REFUSED by the proxy;
//   - support.example.com resolves under the pattern but no toFQDNs
//     selector takes it: its address stays dropped on 443, and the event
//     says nothing was learned; www.example.org's address stays dropped;
//   - the holds: the first lookups of 20 names that a toFQDNs pattern
//     takes each hold the answer until the datapath has the address, none
//     runs out; the test logs p50, p90 and max;
//   - portcullis fqdn cache list's API (the agent's socket): api.example.com
//     and the 20 names for default/mediabot, about an hour left (the
//     minimum TTL); nothing for names no toFQDNs selector takes;
//   - the monitor events: FORWARDED over UDP from default/mediabot with
//     the answer, the deciding policy and the learned name; DENIED with
//     REFUSED and the reason naming the policy's side.
//
// TestTTLExpiry runs the agent with --tofqdns-min-ttl 1s and
// --dns-reject-response-code=nameError: a denied name gets NXDOMAIN; a
// keep-alive connection used across the answer's 5 s TTL keeps working
// and keeps the address; once it is idle past the in-use window (2 s) the
// cache is empty and a new connection to the address is dropped; a new
// lookup opens it again.
//
// TestRestart looks api.example.com up, restarts the agent (same bpffs
// and state directory) and connects to the address with no new lookup:
// 200, because the agent restored what it had learned before its first
// sync pass (with an empty state directory the connection is dropped:
// the test fails). Then a dig loop and a curl loop (one second timeouts)
// run across a second restart; the test logs how many of each failed and
// when, and fails if any fails half a second after the agent is ready.
package dns
