//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Portcullis datapath: L3/L4 policy on the host side of each local pod's
// veth, per-flow connection tracking, and redirect of L7 flows to the
// transparent proxy with bpf_sk_assign. See docs/architecture.md "Datapath".
//
// Only UAPI headers and libbpf's helper headers are used (no vmlinux.h):
// a TC program needs nothing from kernel internals.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// linux/icmp.h pulls in libc headers; the echo header is all we need.
struct icmp_echo {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

char __license[] SEC("license") = "Dual BSD/GPL";

// The kernel ABI shared with Go. bpf2go generates the Go side of these
// enums (-type in bpf/gen.go), so neither side can drift. Struct fields that
// hold them stay fixed-width (__u8, __u32): an enum's size is the
// compiler's choice, and the maps' layouts must not change with it.

// Directions of a policy lookup (policy_key.dir, event.dir); bpf/abi.go
// checks at compile time that policy.Direction numbers them the same.
enum direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
};

// Verdicts in the policy map (policy_value.verdict), numbered as
// policy.Verdict (checked in bpf/abi.go).
enum verdict {
	VERDICT_ALLOW = 0,
	VERDICT_DENY = 1,
	VERDICT_REDIRECT = 2,
};

// Endpoint flags (endpoint_info.flags, bit flags; bpf.EndpointFlags).
enum endpoint_flags {
	EP_ENFORCE_INGRESS = 1 << 0,
	EP_ENFORCE_EGRESS = 1 << 1,
	EP_AUDIT = 1 << 2,
	EP_LOCKDOWN = 1 << 3,
};

// Marks. MARK_TO_PROXY selects the ip rule that routes assigned packets to
// the local table; MARK_FROM_PROXY is the SO_MARK of the proxy's upstream
// sockets, whose packets are never redirected or policy-checked again.
enum mark {
	MARK_MASK = 0xf00,
	MARK_TO_PROXY = 0x200,
	MARK_FROM_PROXY = 0xa00,
};

// Reserved identity of addresses the ipcache does not know
// (policy.IdentityWorld, checked in bpf/abi.go).
enum reserved_identity {
	IDENTITY_WORLD = 2,
};

// Event verdicts (event.verdict; bpf.EventVerdict).
enum event_verdict {
	EV_DROP = 1,
	EV_REDIRECT = 2,
	EV_AUDIT = 3,
	EV_ALLOW = 4,
};

// Event reasons (event.reason; bpf.EventReason).
enum event_reason {
	REASON_POLICY = 1,
	REASON_NO_ENTRY = 2,
	REASON_LOCKDOWN = 3,
	REASON_UNKNOWN_SOURCE = 4,
	REASON_NO_PROXY = 5,
	REASON_REDIRECT_UNSUPPORTED = 6,
	REASON_UNKNOWN_DESTINATION = 7,
	REASON_NOT_IPV4 = 8,
	REASON_NOT_ENFORCED = 9,
};

// Flow paths remembered in conntrack (ct_value.path).
enum ct_path {
	PATH_DIRECT = 0,
	PATH_PROXIED = 1,
	PATH_PROXY_LEG = 2,
};

// The policy key's prefix lengths: ep_id, identity and dir are always
// matched whole (72 bits: an entry for every protocol), then proto (8 bits:
// an entry for every port), then the port's leading bits (16 bits).
enum policy_prefix {
	POLICY_PREFIX_ENTRY_SET = 32 + 32 + 8,
	POLICY_PREFIX_PROTO = POLICY_PREFIX_ENTRY_SET + 8,
	POLICY_PREFIX_FULL = POLICY_PREFIX_PROTO + 16,
};

struct ipcache_key {
	__u32 prefixlen;
	__be32 addr;
};

struct endpoint_info {
	__u32 ep_id;
	__u32 flags;
	__u32 ifindex;
};

struct policy_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 identity;
	__u8 dir;
	__u8 proto;
	__be16 port;
};

struct policy_value {
	__u8 verdict;
	__u8 pad;
	__be16 proxy_port;
	__u32 rule_id;
};

// ct_key is the flow's tuple in the direction of its first packet.
struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct_value {
	__u64 created;
	__u64 last_seen;
	__u8 path;
	__u8 audited;
	__be16 proxy_port;
	__u32 pad;
};

struct event {
	__u64 ts;
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_id;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__be16 proxy_port;
	__u8 proto;
	__u8 dir;
	__u8 verdict;
	__u8 reason;
	__u8 pad[6];
};

// Sizes are set from Go at load time; these are defaults.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, __u32);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct endpoint_info);
	__uint(max_entries, 4096);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} policy SEC(".maps");

// Our own LRU rather than the kernel's conntrack kfuncs: pod traffic is not
// necessarily conntracked by netfilter (no rules, or proxy legs exempted),
// the kfuncs would make every flow pay for nf_conntrack's allocation and
// state machine, and an LRU is simple, bounded and cheap to measure.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(max_entries, 262144);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// For bpf2go -type: BTF has only the types that something refers to, and
// the enums above are used as constants only. A pointer, so that .bss
// stays one word; never read.
const struct {
	struct event event;
	enum direction direction;
	enum verdict verdict;
	enum endpoint_flags endpoint_flags;
	enum mark mark;
	enum reserved_identity reserved_identity;
	enum event_verdict event_verdict;
	enum event_reason event_reason;
	enum ct_path ct_path;
	enum policy_prefix policy_prefix;
} *unused_abi __attribute__((unused));

struct flow {
	__be32 saddr;
	__be32 daddr;
	// Ports for conntrack (ICMP echo: the identifier on the requester's side).
	__be16 sport;
	__be16 dport;
	// Port for the policy lookup (ICMP: the type).
	__u16 policy_port;
	__u8 proto;
	__u8 syn;
	__u8 ack;
};

// decision is the outcome of the policy checks for one packet.
struct decision {
	__u8 verdict;
	__u8 audited;
	__u8 reason;
	__u8 dir;
	__be16 proxy_port;
	__u32 ep_id;
	__u32 rule_id;
	// The last allow entry that matched (the destination's ingress wins
	// over the source's egress), for the allowed-flow event.
	__u8 allowed_by_entry;
	__u8 allow_dir;
	__u32 allow_ep_id;
	__u32 allow_rule_id;
};

static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end)
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -1;
	if (ip->ihl < 5)
		return -1;
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	// Non-first fragments carry no L4 header: they are looked up as port 0.
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	void *l4 = (void *)ip + ip->ihl * 4;
	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return -1;
		f->sport = th->source;
		f->dport = th->dest;
		f->policy_port = bpf_ntohs(th->dest);
		f->syn = th->syn;
		f->ack = th->ack;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return -1;
		f->sport = uh->source;
		f->dport = uh->dest;
		f->policy_port = bpf_ntohs(uh->dest);
		break;
	}
	case IPPROTO_ICMP: {
		struct icmp_echo *ih = l4;
		if ((void *)(ih + 1) > data_end)
			return -1;
		f->policy_port = ih->type;
		if (ih->type == ICMP_ECHO)
			f->sport = ih->id;
		else if (ih->type == ICMP_ECHOREPLY)
			f->dport = ih->id;
		break;
	}
	// Protocols without ports (VRRP, IGMP, ...) keep ports 0: the policy
	// entry of the protocol's port 0 decides, and conntrack tracks the
	// address pair, so a reply rides its flow's entry.
	}
	return 0;
}

static __always_inline __u32 identity_of(__be32 addr)
{
	struct ipcache_key k = {.prefixlen = 32, .addr = addr};
	__u32 *id = bpf_map_lookup_elem(&ipcache, &k);
	return id ? *id : IDENTITY_WORLD;
}

// policy_check evaluates one endpoint's policy in one direction for a peer.
// The peer's own entry set first; only if it has none, the wildcard set.
// Entry sets are complete covers, so a miss of both means the endpoint has
// no policy written (yet): denied, with REASON_NO_ENTRY.
static __always_inline void policy_check(struct decision *d, struct endpoint_info *ep, __u8 dir,
					 __u32 peer, struct flow *f)
{
	struct policy_key k = {
		.prefixlen = POLICY_PREFIX_FULL,
		.ep_id = ep->ep_id,
		.identity = peer,
		.dir = dir,
		.proto = f->proto,
		.port = bpf_htons(f->policy_port),
	};
	struct policy_value *v = bpf_map_lookup_elem(&policy, &k);
	if (!v && peer != 0) {
		k.identity = 0;
		v = bpf_map_lookup_elem(&policy, &k);
	}
	__u8 verdict = v ? v->verdict : VERDICT_DENY;
	if (verdict == VERDICT_DENY) {
		if (ep->flags & EP_AUDIT) {
			if (!d->audited && d->verdict != VERDICT_DENY) {
				d->audited = 1;
				d->dir = dir;
				d->ep_id = ep->ep_id;
				d->rule_id = v ? v->rule_id : 0;
			}
			return;
		}
		if (d->verdict != VERDICT_DENY) {
			d->verdict = VERDICT_DENY;
			d->reason = v ? REASON_POLICY : REASON_NO_ENTRY;
			d->dir = dir;
			d->ep_id = ep->ep_id;
			d->rule_id = v ? v->rule_id : 0;
		}
		return;
	}
	if (verdict == VERDICT_ALLOW) {
		d->allowed_by_entry = 1;
		d->allow_dir = dir;
		d->allow_ep_id = ep->ep_id;
		d->allow_rule_id = v->rule_id;
		return;
	}
	if (verdict == VERDICT_REDIRECT && d->verdict == VERDICT_ALLOW) {
		d->verdict = VERDICT_REDIRECT;
		d->proxy_port = v->proxy_port;
		d->dir = dir;
		d->ep_id = ep->ep_id;
		d->rule_id = v->rule_id;
	}
}

static __always_inline void emit(struct flow *f, struct decision *d, __u8 verdict, __u32 src_id,
				 __u32 dst_id)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->ep_id = d->ep_id;
	e->src_identity = src_id;
	e->dst_identity = dst_id;
	e->rule_id = d->rule_id;
	e->saddr = f->saddr;
	e->daddr = f->daddr;
	e->sport = f->proto == IPPROTO_ICMP ? 0 : f->sport;
	e->dport = f->proto == IPPROTO_ICMP ? bpf_htons(f->policy_port) : f->dport;
	e->proxy_port = d->proxy_port;
	e->proto = f->proto;
	e->dir = d->dir;
	e->verdict = verdict;
	e->reason = d->reason;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int drop(struct flow *f, struct decision *d, __u32 src_id, __u32 dst_id)
{
	emit(f, d, EV_DROP, src_id, dst_id);
	return TC_ACT_SHOT;
}

// redirect hands the packet to the proxy's transparent socket: the flow's
// own socket if the proxy already has one (established, SYN_RECV or
// TIME_WAIT; assigning the listener to those breaks the handshake), else the
// listener on 0.0.0.0:proxy_port. A TCP packet that is not a SYN and has no
// socket also goes to the listener, which answers with a reset.
static __always_inline int redirect(struct __sk_buff *skb, struct flow *f, __be16 proxy_port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	long err;

	t.ipv4.saddr = f->saddr;
	t.ipv4.daddr = f->daddr;
	t.ipv4.sport = f->sport;
	t.ipv4.dport = f->dport;
	if (f->proto == IPPROTO_TCP) {
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			if (sk->state != BPF_TCP_LISTEN)
				goto assign;
			bpf_sk_release(sk);
		}
		t.ipv4.dport = proxy_port;
		sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -1;
		if (sk->state != BPF_TCP_LISTEN) {
			bpf_sk_release(sk);
			return -1;
		}
	} else if (f->proto == IPPROTO_UDP) {
		t.ipv4.dport = proxy_port;
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return -1;
	} else {
		return -1;
	}
assign:
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return -1;
	skb->mark = (skb->mark & ~MARK_MASK) | MARK_TO_PROXY;
	return 0;
}

// assign_proxy_leg hands a reply on a proxy leg to the proxy's upstream
// socket when the leg is bound to a local pod's address (the proxy keeps
// the client's source address upstream): the reply is addressed to
// that pod, and without the assignment the node would forward it there.
static __always_inline void assign_proxy_leg(struct __sk_buff *skb, struct flow *f)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (f->proto != IPPROTO_TCP || !bpf_map_lookup_elem(&endpoints, &f->daddr))
		return;
	t.ipv4.saddr = f->saddr;
	t.ipv4.daddr = f->daddr;
	t.ipv4.sport = f->sport;
	t.ipv4.dport = f->dport;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return;
	if (sk->state != BPF_TCP_LISTEN && bpf_sk_assign(skb, sk, 0) == 0)
		skb->mark = (skb->mark & ~MARK_MASK) | MARK_TO_PROXY;
	bpf_sk_release(sk);
}

static __always_inline void ct_create(struct ct_key *k, __u8 path, __u8 audited, __be16 proxy_port)
{
	__u64 now = bpf_ktime_get_ns();
	struct ct_value v = {
		.created = now,
		.last_seen = now,
		.path = path,
		.audited = audited,
		.proxy_port = proxy_port,
	};
	bpf_map_update_elem(&conntrack, k, &v, BPF_ANY);
}

// handle is the whole program. from_pod: the packet leaves the pod (TC
// ingress on the host veth, the pod's egress); else it enters the pod (TC
// egress on the host veth, the pod's ingress).
static __always_inline int handle(struct __sk_buff *skb, const int from_pod)
{
	struct flow f = {};
	struct decision d = {};
	struct endpoint_info *ep, *peer_ep = 0;
	__u32 src_id, dst_id;

	if (skb->protocol == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		// IPv6 and the rest are not implemented: dropped (fail closed),
		// without events (neighbour discovery would flood the ring).
		return TC_ACT_SHOT;
	}
	if (parse(skb, &f) < 0)
		return TC_ACT_SHOT;

	if (from_pod) {
		ep = bpf_map_lookup_elem(&endpoints, &f.saddr);
	} else {
		// The proxy's upstream legs: the proxy enforced both sides' policy.
		// Remember the flow so that the pod's replies pass.
		if ((skb->mark & MARK_MASK) == MARK_FROM_PROXY) {
			struct ct_key lk = {.saddr = f.saddr, .daddr = f.daddr, .sport = f.sport, .dport = f.dport, .proto = f.proto};
			struct ct_value *lv = bpf_map_lookup_elem(&conntrack, &lk);
			if (lv)
				lv->last_seen = bpf_ktime_get_ns();
			else
				ct_create(&lk, PATH_PROXY_LEG, 0, 0);
			return TC_ACT_OK;
		}
		ep = bpf_map_lookup_elem(&endpoints, &f.daddr);
	}
	d.dir = from_pod ? DIR_EGRESS : DIR_INGRESS;
	if (!ep) {
		// A source address that is not the pod's (spoofing), or a packet for
		// an address that is no longer an endpoint: fail closed.
		d.reason = from_pod ? REASON_UNKNOWN_SOURCE : REASON_UNKNOWN_DESTINATION;
		return drop(&f, &d, 0, 0);
	}
	d.ep_id = ep->ep_id;
	src_id = identity_of(f.saddr);
	dst_id = identity_of(f.daddr);
	if (ep->flags & EP_LOCKDOWN) {
		d.reason = REASON_LOCKDOWN;
		return drop(&f, &d, src_id, dst_id);
	}

	struct ct_key k = {.saddr = f.saddr, .daddr = f.daddr, .sport = f.sport, .dport = f.dport, .proto = f.proto};
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &k);
	// A pure SYN starts a new connection even if the tuple is reused.
	int established = ct && !(f.proto == IPPROTO_TCP && f.syn && !f.ack);
	// No entry at all: the first packet of a flow (a reused tuple or a SYN
	// retransmission finds the entry and reports nothing new).
	int new_flow = !ct;
	if (!ct) {
		struct ct_key rk = {.saddr = f.daddr, .daddr = f.saddr, .sport = f.dport, .dport = f.sport, .proto = f.proto};
		struct ct_value *rv = bpf_map_lookup_elem(&conntrack, &rk);
		if (rv) {
			// A reply rides its flow's entry.
			rv->last_seen = bpf_ktime_get_ns();
			if (from_pod && rv->path == PATH_PROXY_LEG)
				assign_proxy_leg(skb, &f);
			return TC_ACT_OK;
		}
	}

	// The forward direction is checked on every packet, so a new deny also
	// stops established flows.
	if (from_pod) {
		if (ep->flags & EP_ENFORCE_EGRESS)
			policy_check(&d, ep, DIR_EGRESS, dst_id, &f);
		// A local destination's ingress policy is checked here too, so that
		// its redirects can be done at TC ingress, where sk_assign works.
		peer_ep = bpf_map_lookup_elem(&endpoints, &f.daddr);
		if (peer_ep && d.verdict != VERDICT_DENY) {
			if (peer_ep->flags & EP_LOCKDOWN) {
				d.verdict = VERDICT_DENY;
				d.reason = REASON_LOCKDOWN;
				d.dir = DIR_INGRESS;
				d.ep_id = peer_ep->ep_id;
				d.rule_id = 0;
			} else if (peer_ep->flags & EP_ENFORCE_INGRESS) {
				policy_check(&d, peer_ep, DIR_INGRESS, src_id, &f);
			}
		}
	} else if (ep->flags & EP_ENFORCE_INGRESS) {
		policy_check(&d, ep, DIR_INGRESS, src_id, &f);
	}
	if (d.verdict == VERDICT_DENY)
		return drop(&f, &d, src_id, dst_id);

	if (established) {
		ct->last_seen = bpf_ktime_get_ns();
		// The flow keeps its path for its whole life (switching resets it).
		if (ct->path == PATH_PROXIED && from_pod) {
			if (redirect(skb, &f, ct->proxy_port) < 0) {
				d.reason = REASON_NO_PROXY;
				d.proxy_port = ct->proxy_port;
				return drop(&f, &d, src_id, dst_id);
			}
		}
		return TC_ACT_OK;
	}

	if (d.verdict == VERDICT_REDIRECT) {
		if (!from_pod) {
			// sk_assign works at TC ingress only; a flow from a source that is
			// not a local pod cannot be redirected here yet: fail closed.
			d.reason = REASON_REDIRECT_UNSUPPORTED;
			return drop(&f, &d, src_id, dst_id);
		}
		if (redirect(skb, &f, d.proxy_port) < 0) {
			d.reason = REASON_NO_PROXY;
			return drop(&f, &d, src_id, dst_id);
		}
		ct_create(&k, PATH_PROXIED, d.audited, d.proxy_port);
		d.reason = REASON_POLICY;
		emit(&f, &d, EV_REDIRECT, src_id, dst_id);
		return TC_ACT_OK;
	}
	ct_create(&k, PATH_DIRECT, d.audited, 0);
	if (d.audited) {
		d.reason = REASON_POLICY;
		emit(&f, &d, EV_AUDIT, src_id, dst_id);
	} else if (new_flow) {
		// One event per allowed flow, when its entry is created (as
		// Cilium's policy-verdict events): the entry that allowed it, or
		// no enforced direction at all.
		if (d.allowed_by_entry) {
			d.reason = REASON_POLICY;
			d.dir = d.allow_dir;
			d.ep_id = d.allow_ep_id;
			d.rule_id = d.allow_rule_id;
		} else {
			d.reason = REASON_NOT_ENFORCED;
		}
		emit(&f, &d, EV_ALLOW, src_id, dst_id);
	}
	return TC_ACT_OK;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	return handle(skb, 0);
}
