// Package agent is the node agent: controller-runtime reconcilers, without
// leader election (one agent per node), that feed Namespaces, the three
// policy kinds, Pods, Services (with their EndpointSlices) and Nodes into
// one policy.Repository, and a sync loop that writes the engine's state
// into the pinned BPF datapath: the ipcache (pod addresses and CIDR
// identities), each local endpoint's policy entries (through the
// datapath's diff writer), its programs and its flags. It also runs the
// node's L7 proxy (HTTP through proxy/http, Kafka through proxy/kafka,
// DNS through proxy/dns), reports to the operator, and serves the local API.
// [Run] is the whole agent; cmd/portcullis-agent only parses flags into
// [Config] (its --help lists them), and the e2e tests and the demo run the
// same function in-process.
//
// The agent's permissions are the RBAC markers in rbac.go, which generate
// config/rbac/agent_role.yaml with `make manifests` (ClusterRole: read
// pods, namespaces, services, nodes, endpointslices, policies, patch
// policy status; Role in the system namespace: leases; Role in the secrets
// namespace: read secrets, the only secrets it can read).
//
// # Start
//
// Remove the memlock limit; if the bpffs directory is not a bpf
// filesystem, mount one there (root only; logged, as Cilium does); set
// net.ipv4.ip_forward=1; set up the proxy's ip rule and local route
// (bpf.SetupProxyRouting, idempotent: a restart never adds a second rule);
// bpf.Load with the pin path, which reuses the pinned maps and never wipes
// them; read Endpoints() to keep each pod's endpoint id across restarts;
// open the proxy's transparent listener (TCP, and UDP for DNS, on one
// port) before the first sync pass; attach from_uplink to each of
// Config.Uplinks (--uplink, the interfaces to other nodes; an unknown
// name fails the start) so that remote clients of an ingress L7 rule are
// redirected to this node's proxy.
//
// # Several nodes
//
// One agent per node, as a DaemonSet runs it, sharing nothing but the
// apiserver: each has its own bpffs, proxy port and API socket, and runs
// in its node's network namespace (the local cluster's extra nodes run
// the binary under `ip netns exec`, e2e/multinode). Every agent watches
// every Pod and Node: all running pods get identities and /32 ipcache
// entries (remote ones too, dropped when the agent sees the pod move or
// go; at start the agent reads the pinned ipcache, so its first sync also
// removes the entries of pods that went away while it was down), other
// nodes' InternalIP/ExternalIP addresses map to remote-node, only pods
// with this node's name become endpoints.
// Traffic from another node is judged at the destination node, by
// to_pod with the source's identity from the ipcache, or redirected to
// this node's proxy at the uplink (from_uplink) for an ingress L7 rule;
// egress is judged at the source node's from_pod as on one node. A flow
// this node's proxy takes from a local client to a pod on another node is
// dialled from the client's own address when uplinks are attached (its
// replies are handed back to the proxy at the uplink), so that the
// server's node judges the client's identity, not remote-node.
//
// # toFQDNs
//
// The DNS proxy hands every allowed answer of a local client to the
// fqdn learner (fqdn.go, a dns.Observer). The names on the answer's CNAME
// chain that some toFQDNs selector of the client's rules matches
// (Repository.FQDNSelectors) go into a dns.Cache per endpoint and name,
// each address for its TTL but at least --tofqdns-min-ttl (one hour, as
// Cilium), at most --tofqdns-max-ips-per-hostname per name and endpoint
// (the oldest forgotten first). When a name's union over the endpoints
// changes the engine learns it (Repository.ObserveDNS), and the answer is
// held until a sync pass that started after that revision has written
// the policy entries and the ipcache (syncNotifier): the client's first
// connection to a new address is already allowed. The hold is bounded by
// --dns-proxy-hold-timeout (500 ms); an answer whose hold runs out is
// released and counted (portcullis_dns_hold_timeouts_total; the holds'
// durations in portcullis_dns_hold_duration_seconds; what is learned in
// portcullis_fqdn_learned{kind=names|addresses}). Expired addresses
// are forgotten once a second and the engine relearns the name, except
// those still in use: an address to which the datapath's conntrack saw a
// packet within Config.ToFQDNsInUseWindow (a minute) stays selected, as
// Cilium keeps "zombies" while connections last (the conntrack keeps no
// TCP state, so recent traffic stands for an open connection; an idle one
// is cut once its address expires).
//
// What was learned survives restarts: the learner writes its cache to
// <--state-dir>/fqdn-cache.json (/var/run/portcullis, a hostPath in the
// packaging; in-process agents on a bpffs of their own have none unless
// Config.StateDir names one) after every change, off the answer's path (at most every
// 100 ms, and once more on stop), and Run restores the entries not yet
// expired, teaching the engine every name, before the first sync pass:
// that pass keeps the addresses' ipcache and policy entries, so
// connections to names looked up before the restart keep working and
// stay allowed. A state file that cannot be read fails the start, naming
// the file.
//
// # What it watches
//
// One cache, all namespaces: Namespaces (labels, and the annotation
// policy.portcullis.dev/audit-mode: "true"), the policy kinds, Pods,
// Services with their EndpointSlices (backends for toServices), Nodes
// (their IPv4 InternalIP and ExternalIP addresses: this node's become the
// reserved identity host, the others' remote-node, in the engine and in
// the ipcache, where a pod's address wins; so fromEntities: [host] admits
// this node's own traffic, e.g. a kubelet's probes, and nothing else).
// Unlike Cilium's default (allow-localhost=always), traffic from the node
// into an enforced pod is not allowed unless a rule allows host. Each
// reconciler reads its object from the cache and applies it to the
// repository under the agent's lock, then wakes the sync loop (coalesced:
// many changes, one sync). A policy that does not compile leaves its
// previous version in force; the error goes into the node's status entry.
// Every Running pod with an IPv4 podIP gets its identity in the engine
// (peers need identities) and its /32 in the ipcache; only pods with
// spec.nodeName equal to the node become datapath endpoints.
//
// # Sync order
//
// One pass, under the lock:
//
//  1. for each local endpoint: repo.EndpointPolicy, then
//     SyncEndpointPolicy (changed keys first, stale ones after), then —
//     only after its entries are in — AttachEndpoint or SetEndpointFlags
//     with enforce-ingress/egress from EndpointPolicy.Enforced and audit
//     from the map state;
//  2. ipcache additions and changes: every known pod address → its
//     identity, every CIDR identity's prefixes (world is the miss value and
//     is not written) — after the policies, so that a new identity's
//     entries are in place before any address maps to it (otherwise a new
//     peer would briefly meet the wildcard entries, which may allow what a
//     rule denies to it);
//  3. ipcache deletions;
//  4. the proxy's snapshot (package proxy): the endpoint policies written
//     in step 1 and a copy of the ipcache as written.
//
// A pod that goes away is detached, then its entries are removed
// (SyncEndpointPolicy(id, nil)), then the engine forgets it. Each pass
// resyncs every local endpoint rather than tracking which changed (the
// cost of an unchanged endpoint is in docs/benchmarks.md). A pass that
// fails anywhere is retried after a second.
//
// # Endpoints and rule ids
//
// Lifecycle, with Cilium's names: waiting-for-identity (pod seen, no map
// state yet) → regenerating (entries being written) → ready; disconnecting
// while a gone pod is detached; plus lockdown. The table is in memory
// ([Agent.Endpoints]: namespace, name, IP, endpoint id, identity, state,
// flags, host ifindex, message), counted by the gauge
// portcullis_endpoints{state} and shown by `portcullis endpoint list`.
//
// The datapath's policy values and events carry a 32-bit rule id; the
// agent numbers rules itself (bpf.Options.RuleID): a table policy.RuleRef
// ↔ id, ids from 1 in order of first use, 0 for an entry with no rule (a
// default verdict), never reused while the agent runs. They are not kept
// across restarts: the first sync after a start rewrites every entry with
// the new numbers (the diff writer compares values), and events read
// before it may name no rule.
//
// # Lockdown
//
// When SyncEndpointPolicy returns bpf.ErrMapFull the datapath has already
// set the lockdown flag (every packet from and to the pod dropped); a pod
// not yet attached is attached in lockdown. The agent records the state,
// emits a Warning Event Lockdown on the Pod, increments
// portcullis_endpoint_lockdowns_total and retries; the next successful
// write resets the flags (Normal Event LockdownLifted). Never silently
// open.
//
// # Flow events
//
// The event reader goroutine counts each datapath event, passes it to
// Config.OnEvent, and — when anyone follows — turns it into a
// monitor.Event published on the agent's hub ([Agent.Monitor], the one
// event path; the proxy publishes its L7 records there too): the node;
// both sides with IP, port, numeric identity, namespace/pod when the
// address is a pod the agent knows, and the identity's labels sorted as
// key=value (reserved and CIDR labels as source:key); direction; protocol
// name (for ICMP the destination port is the type); verdict; reason; and
// the policy: `Kind ns/name path` of the rule id (e.g. `TrafficPolicy
// default/rule1 spec.ingress[0].toPorts[0]`), or, for a default-deny drop,
// which has no rule, the policies that select the endpoint in that
// direction followed by "(default deny)" (Repository.SelectedBy). Kernel
// timestamps (CLOCK_MONOTONIC) are converted to wall time.
//
// # Local API
//
// HTTP on a unix socket (Config.APISocket, empty for none; wire types and
// client in package agentclient, the server in api.go). The directory is
// created 0700 and the socket is 0600 (root only: the flows of every pod on
// the node are visible there); a socket file that nothing answers (an
// agent that died) is replaced, a live one makes the start fail, and it is
// removed when the agent stops. The Helm chart and kustomize mount the
// host's /var/run/portcullis into the agent, so the CLI works on the node
// and through kubectl exec.
//
//   - GET /v1/endpoints: the endpoint table (state, enforced directions,
//     audit, identity and labels, message).
//   - GET /v1/monitor: monitor.Events as NDJSON until the client goes (or
//     the agent stops); each follower has a 4096-event buffer, Publish
//     never blocks, and a follower that fell behind gets a line
//     {"type":"lost","lost":N} before its next event.
//   - POST /v1/trace: traces a flow against the live repository. Peers are
//     resolved to addresses first (a pod by namespace/name, or by labels —
//     every label must be the pod's, io.kubernetes.pod.namespace narrows
//     the namespace, a local pod first, then by name), so a trace never
//     adds endpoints to the running engine; the answer is the engine's
//     trace (each side's L7 policy reduced to its parser), the agent's mode
//     and the resolved peers.
//
// # Reporting
//
// The agent's side of the operator's reporting contract (package
// controllers/operator). The Lease portcullis-agent-<node> in the system
// namespace (coordination/v1, holderIdentity the node, 15 s duration,
// renewed every 5 s with a direct, uncached client) is not released on
// shutdown: it expires, and the operator stops waiting for this node then.
// After a sync pass that wrote everything, each policy's generation in the
// engine counts as realised, and the agent server-side-applies
// status.nodes[name=<node>] = {observedGeneration, message} on the status
// subresource with the field manager portcullis-agent/<node>, only when
// that pair changed — on a goroutine of its own that each sync pass wakes
// (coalesced), so a slow apiserver never delays the next map write. A
// policy whose newest generation does not compile reports the generation
// still in force (0 if none ever compiled) with the compiler's message. A
// sync pass that fails (a lockdown, an interface not found) reports, for
// policies whose newest generation is not written yet, the generation
// still in force with the first failure as the message.
//
// # Metrics
//
// On controller-runtime's registry (--metrics-bind-address, plain HTTP):
// portcullis_policy_verdicts_total{direction,protocol,verdict} from the
// ring buffer (drops per packet; redirects, audits and FORWARDED flows once
// per flow); portcullis_bpf_map_pressure{map="policy"} (used/capacity,
// after every sync); portcullis_endpoints{state};
// portcullis_endpoint_lockdowns_total; portcullis_fqdn_learned; the DNS
// proxy's holds (portcullis_dns_hold_duration_seconds,
// portcullis_dns_hold_timeouts_total); and the proxy's
// portcullis_proxy_requests_total,
// portcullis_proxy_refused_total{reason} and
// portcullis_proxy_request_duration_seconds. /readyz answers only once a
// sync pass after start has written everything.
//
// # Restart safety
//
// On SIGTERM the manager stops; Close keeps the pins and the TCX links, the
// routing stays, nothing is released: the kernel keeps enforcing the last
// written state. On start, before the first write, the agent feeds the
// repository from the synced caches (namespaces, every policy, services,
// pods — the same functions the reconcilers use), so the first write
// already has the complete policy set. It detaches pinned endpoints whose
// pods are gone (and removes their entries and /32), reuses the endpoint
// ids of the others, and — because identity numbers are assigned anew by
// the engine on every start — puts the pinned endpoints that enforce
// anything in lockdown until the first pass has rewritten the ipcache and
// their entries: an old entry meeting a new number could otherwise allow a
// denied peer for a moment. The cost is a few milliseconds of drops for
// enforced pods per restart (fail closed). Proxied connections do not
// survive a restart: the listener goes away with the agent, established
// proxied flows are reset and new ones dropped with no-proxy until it is
// back.
//
// # Not done yet
//
// Host policies (nodeSelector: the node itself as an endpoint), persistent
// identity numbers (hence the restart lockdown), and
// IPv6: only a pod's IPv4 podIP becomes an endpoint and an ipcache entry.
// For toFQDNs: the engine selects a learned name's addresses for every
// endpoint whose toFQDNs selector matches it, not only for the endpoints
// whose lookups taught it (the cache keeps them per endpoint; the
// engine's selection is not yet); an address kept for an open connection
// stays open to new connections too (the datapath re-checks every packet
// against the policy, so it cannot tell them apart). While the agent is down its DNS
// socket is closed, so lookups (not connections) fail until it is back.
package agent
