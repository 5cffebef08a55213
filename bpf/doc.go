// Package bpf is Portcullis's eBPF datapath: the BPF programs (datapath.c,
// compiled with bpf2go; the generated files are committed), their maps
// (ipcache, endpoints, policy, conntrack, events, and the Service maps
// services, backends and lb_flows), the writer that turns the engine's map
// state into policy map keys and applies only the differences, attaching
// the programs to pods' host-side veths with TCX, the ip rule and route
// that the proxy redirect needs, and the verdict event reader.
//
// # Building
//
// datapath.c is compiled by bpf2go (`go generate ./bpf/`, run by `make
// generate`; `make deps` installs Debian's clang, llvm and libbpf-dev when
// missing). The generated datapath_bpfel.go and .o are committed, so
// building needs no clang; TestGeneratedUpToDate rebuilds them into a
// temporary directory when clang is present and names a stale file. The C
// uses only UAPI headers and libbpf's bpf_helpers.h/bpf_endian.h (no
// vmlinux.h: a TC program needs no kernel internals). Its constants
// (directions, verdicts, endpoint flags, marks, event verdicts and reasons,
// conntrack paths) are C enums that bpf2go turns into Go (-type), so the
// two sides cannot drift; abi.go gives them Go names.
//
// # Placement
//
// Two programs on the host side of each local pod's veth (the interface of
// the route to the pod's address, [HostInterface]), attached with TCX
// (link.AttachTCX; clsact with a direct-action filter only where TCX is not
// supported, kernels before 6.6): from_pod at TCX ingress (packets leaving
// the pod: the pod's egress policy) and to_pod at TCX egress (packets
// entering the pod: its ingress policy). Pod to pod on one node passes the
// source's from_pod and then the destination's to_pod. from_pod also checks
// the destination's ingress policy when the destination is a local
// endpoint, so that an ingress L7 redirect can be done there, at TC
// ingress, the only place bpf_sk_assign works; to_pod checks the ingress
// policy again (the same answer, or a stale-path flow).
//
// A third program, from_uplink, goes at TCX ingress of a node's uplinks
// ([Datapath.AttachUplink]; the agent's --uplink): the interfaces that
// traffic from other nodes arrives by, natively routed with pod addresses
// as sources. For a packet to a local endpoint whose ingress is enforced
// it checks the ingress policy with the source's identity from the
// ipcache (remote pods are there from their Pod objects, other nodes'
// addresses as remote-node), and when the verdict is a redirect it hands
// the packet to the proxy's socket (the same redirect as from_pod's, with
// a PATH_PROXIED conntrack entry, every later packet of the flow too).
// Everything else passes unchanged: transit traffic between other nodes
// (the local cluster's first node routes the underlay), the node's own
// traffic, replies, allowed and denied flows alike, which to_pod then
// judges as for any non-local source (a denial's drop and its event stay
// there, at the destination node). The proxy dials such a flow's upstream
// from the node's address (the client is not local), so the server's
// replies reach the proxy without an assignment. The other way round, a
// local client's flow that this node's proxy took (an egress L7 rule, or
// an ingress one of a local server) to a pod on another node is dialled
// from the client pod's own address, so that the server's node judges the
// client's identity; its replies come in by the uplink addressed to the
// pod, and from_uplink hands them to the proxy's socket (a socket lookup
// of the tuple in the node's namespace, where only the proxy has sockets
// on pod addresses; pure SYNs never match).
//
// # Maps
//
// Pinned under Options.PinPath ([DefaultPinPath], /sys/fs/bpf/portcullis) by name; a
// restart reuses them and never wipes them. IPv4 only.
//
//   - ipcache: LPM trie, 65536; {prefixlen, IPv4} → security identity
//     (u32); a miss is world (2).
//   - endpoints: hash, 4096; pod IPv4 → {endpoint id u32, flags u32, host
//     ifindex u32}; flags enforce-ingress 1, enforce-egress 2, audit 4,
//     lockdown 8.
//   - policy: LPM trie, 65536 by default (Options, the agent's
//     --bpf-policy-map-max); {prefixlen; endpoint id u32, identity u32,
//     direction u8, proto u8, port be16} → {verdict u8 (allow 0, deny 1,
//     redirect 2), proxy port be16, rule id u32}.
//   - conntrack: LRU hash, 262144; {saddr, daddr, sport, dport, proto} of
//     the flow's first packet → {created, last seen (ns, monotonic), path
//     (direct, proxied, proxy leg), audited, proxy port, and for a flow
//     translated from a Service the ClusterIP and port that replies get
//     back as their source}.
//   - events: ring buffer, 1 MiB; {time, endpoint id, direction, verdict
//     (DROPPED, REDIRECTED, AUDITED, FORWARDED), reason, src/dst IPv4 and
//     ports (ICMP: the type as dst port), proto, src and dst identity, rule
//     id, proxy port, and the ClusterIP and port of a translated flow}.
//   - services: hash, 65536; (ClusterIP, port, protocol, slot) → slot 0:
//     the number of backends and the port's id, slots 1..n: backend ids.
//   - backends: hash, 65536; id → pod address and target port.
//   - lb_flows: LRU hash, 262144; the client's tuple towards the ClusterIP
//     → the backend chosen and the service id.
//
// # Policy keys and lookup order
//
// The prefix always covers the endpoint, identity and direction (72 bits).
// An entry for every protocol (the engine's ProtoAny entry) stops there
// (prefix 72); a protocol's port range [Lo,Hi] becomes the fewest aligned
// port prefixes that cover it ([PortPrefixes]; 80 + the prefix's bits). The
// program looks up (endpoint, direction, peer identity, proto, port) with
// the full 96-bit prefix: the longest match is the protocol's port range,
// else the every-protocol entry — the engine's order within an entry set.
// Since entry sets are complete covers, a miss means the peer has no entry
// set of its own, and the program looks up identity 0 (the wildcard set).
// A miss of both (no policy written yet while the direction is enforced)
// drops with reason no-policy-entry. Without the enforce flag of a
// direction nothing is looked up: the agent sets the flags once the
// endpoint's policy is written. ICMP is looked up with the ICMP type as
// the port, as the engine models it. TestPolicyMapMatchesEngine checks
// that this two-step lookup on the real kernel map gives the engine's
// MapState.Lookup for every identity, protocol and boundary port of a small
// policy set, before and after a change.
//
// # The writer
//
// [Datapath.SyncEndpointPolicy] expands both directions' Flat() entries
// into keys, diffs them against a mirror of what the map holds (read back
// from the pinned map at [Load], so a restarted agent diffs against the
// kernel's real state), writes new and changed keys first and deletes stale
// ones after: there is no moment in which a lookup misses. The rule id
// comes from Options.RuleID and a redirect's port from Options.ProxyPort
// (default 15001). If the entries would not fit (or the kernel says
// E2BIG/ENOSPC), every endpoint with that id is put in lockdown (the
// program then drops every IP packet from and to it) and [ErrMapFull] is
// returned: never silently open.
//
// # Connection tracking
//
// Our own LRU map, not the conntrack kfuncs (the reasons are in
// docs/design/datapath-tcx-own-conntrack.md). The program looks up the
// packet's tuple (forward) and then the reversed tuple (reply). A reply
// rides its flow's entry and passes without a policy lookup. A forward
// packet is re-checked against policy on every packet, so a new deny also
// stops established flows (TestEnforcement); a pure SYN is always decided
// anew (a reused tuple starts a new flow). An established flow keeps its
// path — direct or proxied — for its life even if the policy switches its
// port between allow and redirect: such a flow is neither reset nor moved,
// so a connection that was allowed at L3/L4 before its port got L7 rules
// is not subject to them until it closes (TestRedirect). Entries live until
// the LRU evicts them; there is no TCP state machine (FIN/RST do not remove
// entries).
//
// # Redirect
//
// bpf_sk_assign at TC ingress, no netfilter (the reasons are in
// docs/design/redirect-sk-assign.md). For a redirected TCP packet the
// program first looks up the packet's own tuple with bpf_skc_lookup_tcp; a
// socket that is not a listener (the proxy's established, SYN_RECV or
// TIME_WAIT socket) is assigned — assigning the listener to the
// handshake's ACK would reset it. Otherwise it looks up the listener on
// 0.0.0.0:proxyport with bpf_sk_lookup_tcp (a listener bound to 127.0.0.1
// would not be found) and assigns it; a non-SYN with no socket of its own
// also goes to the listener, which resets it. UDP redirects assign the UDP
// socket bound to 0.0.0.0:proxyport. References are always released. The
// packet gets the mark [MarkToProxy], and [SetupProxyRouting] makes the
// node's namespace deliver it locally (ip rule and local route; without
// them the assigned packet is forwarded and dropped). The proxy listens
// with IP_TRANSPARENT and sees the original destination as LocalAddr() and
// the client as RemoteAddr(). No proxy socket found (the agent is down)
// means a drop with reason no-proxy (fail closed).
//
// # Marks
//
// MarkToProxy (0x200/0xf00): assigned to a proxy socket (the ip rule).
// [MarkFromProxy] (0xa00/0xf00): SO_MARK of the proxy's upstream sockets.
// to_pod passes such packets without a policy check — the proxy has
// enforced both sides' policy for that request — and records the leg in
// conntrack so that the pod's replies pass its from_pod. When the leg is
// bound to a local pod's address (the proxy keeps the client's source
// address), those replies are addressed to that pod: from_pod then looks
// up the leg's own socket in the node namespace and assigns it (mark
// 0x200), or the node would forward them to the client pod
// (TestTransparentSourcePreserved in package proxy).
//
// # Events
//
// Drops are reported per dropped packet (a new deny on an established flow
// reports each retransmission); redirects and audits once per new flow;
// allowed flows once, as FORWARDED, when their conntrack entry is created
// (as Cilium's policy-verdict events): only a packet that finds no entry
// at all reports, so the destination's to_pod pass of a local pod-to-pod
// flow, a SYN retransmission and a reused tuple report nothing new
// (TestEnforcement checks one event per flow). An allowed flow names the
// allow entry that matched last — the destination's ingress entry when
// that direction is enforced, else the source's egress entry — with its
// rule id and reason policy; a flow that no enforced direction looked up
// has reason not-enforced. Reasons: policy, no-policy-entry, lockdown,
// unknown-source (a pod sending with an address that is not its own:
// dropped), unknown-destination, no-proxy, redirect-unsupported,
// not-enforced. [Datapath.Events] decodes them ([Event]). When the 1 MiB
// ring (about 20000 events) is full the datapath drops the event, never
// the packet. Per-packet costs are in docs/benchmarks.md.
//
// # Services
//
// Services are translated per packet in from_pod, before policy, and
// replies are translated back in to_pod ([Datapath.SetService],
// [Datapath.DeleteService], [Datapath.Services]), not with cgroup socket
// hooks: a pod here is a network namespace whose processes share their
// starter's cgroup, so a cgroup hook would have to sit on a cgroup that
// holds unrelated processes, while from_pod sees every packet a pod sends,
// and meets policy in the same pass, so that the checks, the L7 redirect
// and the events see the backend. A new connection gets a backend at
// random; a Service without ready backends answers TCP with a reset and
// UDP with ICMP port unreachable; connections to a removed backend are
// reset on their next packet. Only traffic that leaves a local pod is
// translated; a pod calling a Service whose backend is itself (hairpin)
// gets the packets back from the Service address. The reasons and the
// details are in docs/design/services.md.
//
// # Restart safety
//
// Maps and the TCX links are pinned (links under
// <pin path>/links/<ifindex>-from_pod|to_pod); [Datapath.Close] keeps them,
// so the kernel keeps enforcing the last written state while the agent is
// away. [Load] reuses the pinned maps (an incompatible layout, such as a
// policy map of another size, is an error, not a wipe);
// [Datapath.AttachEndpoint] replaces the program of a pinned link in place
// (link.Update, no detach window); [Datapath.Endpoints] lists what a
// previous agent recorded; [Datapath.Remove] detaches and unpins
// everything. TestRestartKeepsEnforcement covers this.
//
// # Go API
//
// Load(Options), HostInterface(podIP), AttachEndpoint(ifindex, podIP,
// epID, flags), DetachEndpoint(podIP), SetEndpointFlags, Endpoints,
// SetIPCache(prefix, identity), DeleteIPCache, SyncEndpointPolicy(epID,
// *policy.EndpointPolicy), PolicyEntries (used/capacity, for a map pressure
// gauge), Events, SetService, DeleteService, Services,
// RecentDestinations(addrs, age) (which of addrs conntrack saw a flow to
// within age: the toFQDNs addresses still in use), SetupProxyRouting,
// Close, Unpin, Remove. Interface indexes and routing are resolved in the
// calling thread's network namespace.
//
// # Not handled yet
//
//   - IPv6: every packet that is neither IPv4 nor ARP is dropped, without
//     an event, at every attached pod, enforced or not (the check comes
//     before the endpoint lookup; events would be flooded by neighbour
//     discovery).
//   - L7 redirect of an ingress rule for traffic of the node itself (the
//     host's own processes) and for remote sources on a node without
//     uplinks attached: the packet reaches the pod's to_pod at TC egress,
//     where sk_assign does not work, so it is dropped with reason
//     redirect-unsupported (fail closed).
//   - Preserving the client's source address upstream when the client is
//     not a local pod (the server's replies would be routed to the remote
//     client), or when the server is neither a local pod nor a pod on
//     another node with uplinks attached: the proxy uses the node's
//     address then.
//   - SCTP ports: the program reads ports of TCP and UDP only, so SCTP (like
//     VRRP, IGMP and every other protocol) is looked up as port 0 and only
//     a rule for every SCTP port matches it (fail closed).
//   - IP fragments after the first are looked up as port 0; no TCP state
//     in conntrack; host endpoints and host policies.
//   - Sampling or per-endpoint switching of allowed-flow events (every new
//     flow reports one).
package bpf
