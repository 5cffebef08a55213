//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Portcullis datapath: L3/L4 policy on the host side of each local pod's
// veth, per-flow connection tracking, and redirect of L7 flows to the
// transparent proxy with bpf_sk_assign, and the translation of Service
// addresses to backends before any of that (docs/design/services.md).
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
	// A Service address with no ready backend: refused (TCP reset, ICMP
	// port unreachable for UDP).
	REASON_NO_BACKEND = 10,
	// An established TCP connection whose backend left the Service: reset.
	REASON_BACKEND_GONE = 11,
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
	// The Service address the client sent to, for a translated flow (0:
	// not translated); replies get it back as their source.
	__be32 nat_addr;
	__be16 nat_port;
	__u8 pad[6];
};

// A Service's port: slot 0 is the service itself (count, id), slots
// 1..count hold its backends' ids. The agent writes new slots before the
// count and removes old ones after it, so a lookup always meets a complete
// set of backends that exist.
struct service_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
	__u16 slot;
	__u16 pad2;
};

struct service_value {
	// Slot 0: the number of backends and the service's id. Other slots:
	// backend_id.
	__u32 backend_id;
	__u16 count;
	__u16 svc_id;
};

struct backend {
	__be32 addr;
	__be16 port;
	__u8 pad[2];
};

// The backend a connection to a Service got, keyed by the client's tuple
// towards the Service address.
struct lb_flow {
	__u32 backend_id;
	__u16 svc_id;
	__u16 pad;
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
	// The Service address and port the client sent to, for a translated
	// flow (0: none); daddr, dport are the backend's.
	__be16 svc_port;
	__be32 svc_addr;
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
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct service_key);
	__type(value, struct service_value);
	__uint(max_entries, 65536);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, 65536);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct lb_flow);
	__uint(max_entries, 262144);
} lb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// For bpf2go -type: BTF has only the types that something refers to, and
// the enums above are used as constants only. A pointer, so that .bss
// stays one word; never read.
const struct {
	struct event event;
	struct service_key service_key;
	struct service_value service_value;
	struct backend backend;
	struct lb_flow lb_flow;
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
	__u8 rst;
	// Offset of the L4 header; 0 for a non-first fragment.
	__u16 l4off;
	// The Service address and port the packet was sent to, once
	// translated (nat_addr 0: not a Service).
	__be32 nat_addr;
	__be16 nat_port;
	// The Service's backend is the client itself; proxied: the packet was
	// handed to the proxy.
	__u8 hairpin;
	__u8 proxied;
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
	f->l4off = sizeof(*eth) + ip->ihl * 4;
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
		f->rst = th->rst;
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
	e->svc_addr = f->nat_addr;
	e->svc_port = f->nat_port;
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

// --- Service translation ---------------------------------------------------

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))

static __always_inline __u16 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

// l4_csum_off is the offset of the TCP or UDP checksum.
static __always_inline __u32 l4_csum_off(struct flow *f)
{
	return f->l4off + (f->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) : offsetof(struct udphdr, check));
}

// rewrite replaces the packet's destination (dst=1) or source address and
// port, fixing the IP and L4 checksums. A UDP checksum of 0 (none) stays 0.
static __always_inline int rewrite(struct __sk_buff *skb, struct flow *f, int dst, __be32 old_addr,
				   __be32 new_addr, __be16 old_port, __be16 new_port)
{
	__u32 csum_off = l4_csum_off(f);
	__u64 l4flags = f->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u32 addr_off = dst ? IP_DST_OFF : IP_SRC_OFF;
	// Ports are at the same offsets in TCP and UDP headers.
	__u32 port_off = f->l4off + (dst ? offsetof(struct udphdr, dest) : offsetof(struct udphdr, source));

	if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, l4flags | BPF_F_PSEUDO_HDR | 4) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
		return -1;
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, l4flags | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
			return -1;
	}
	return 0;
}

// reply_ip fills a reply's Ethernet and IP headers: the addresses of the
// packet in eth and ip swapped, the Service address as the source.
static __always_inline void reply_ip(struct ethhdr *eth, struct iphdr *ip, struct flow *f, __u8 proto,
				     __u16 len)
{
	__u8 mac[ETH_ALEN];

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = proto;
	ip->tot_len = bpf_htons(len);
	ip->saddr = f->daddr;
	ip->daddr = f->saddr;
	ip->check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
}

// refuse answers a packet for a Service address in the Service's name, as
// a host without the port would: a TCP reset (ECONNREFUSED for a SYN, a
// reset for an established connection), or ICMP port unreachable for UDP.
// The answer goes straight into the pod (bpf_redirect_peer), so the pod's
// ingress policy never sees it. The packet must not have IP options.
static __always_inline int refuse(struct __sk_buff *skb, struct flow *f)
{
	if (f->l4off != ETH_HLEN + sizeof(struct iphdr))
		return TC_ACT_SHOT;
	struct ethhdr eth;
	struct iphdr ip;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 || bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return TC_ACT_SHOT;
	if (f->proto == IPPROTO_TCP) {
		struct tcphdr tcp;
		struct {
			__be32 saddr, daddr;
			__u8 zero, proto;
			__be16 len;
		} pseudo;
		if (f->rst || bpf_skb_load_bytes(skb, f->l4off, &tcp, sizeof(tcp)) < 0)
			return TC_ACT_SHOT;
		__u32 payload = bpf_ntohs(ip.tot_len) - sizeof(ip) - tcp.doff * 4;
		__be32 seq = tcp.seq, ack_seq = tcp.ack_seq;
		__u8 had_ack = tcp.ack, syn = tcp.syn, fin = tcp.fin;
		reply_ip(&eth, &ip, f, IPPROTO_TCP, sizeof(ip) + sizeof(tcp));
		__builtin_memset(&tcp, 0, sizeof(tcp));
		tcp.source = f->dport;
		tcp.dest = f->sport;
		tcp.doff = 5;
		tcp.rst = 1;
		// RFC 9293 3.10.7.1: the reset takes its sequence number from the
		// segment's ACK field, else acknowledges the segment.
		if (had_ack) {
			tcp.seq = ack_seq;
		} else {
			tcp.ack = 1;
			tcp.ack_seq = bpf_htonl(bpf_ntohl(seq) + payload + syn + fin);
		}
		pseudo.saddr = ip.saddr;
		pseudo.daddr = ip.daddr;
		pseudo.zero = 0;
		pseudo.proto = IPPROTO_TCP;
		pseudo.len = bpf_htons(sizeof(tcp));
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
		sum = bpf_csum_diff(0, 0, (__be32 *)&tcp, sizeof(tcp), sum);
		tcp.check = csum_fold(sum);
		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(ip) + sizeof(tcp), 0) < 0 ||
		    bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &tcp, sizeof(tcp), 0) < 0)
			return TC_ACT_SHOT;
		return bpf_redirect_peer(skb->ifindex, 0);
	}
	if (f->proto == IPPROTO_UDP) {
		// ICMP port unreachable quoting the IP header and 8 bytes of UDP.
		struct {
			struct iphdr ip;
			__u8 l4[8];
		} quote;
		struct icmp_echo icmp = {.type = 3}; // destination unreachable
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &quote, sizeof(quote)) < 0)
			return TC_ACT_SHOT;
		if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(quote), 0) < 0)
			return TC_ACT_SHOT;
		if (bpf_skb_adjust_room(skb, sizeof(ip) + sizeof(icmp), BPF_ADJ_ROOM_MAC, 0) < 0)
			return TC_ACT_SHOT;
		reply_ip(&eth, &ip, f, IPPROTO_ICMP, sizeof(ip) + sizeof(icmp) + sizeof(quote));
		icmp.code = 3; // port unreachable
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&icmp, sizeof(icmp), 0);
		sum = bpf_csum_diff(0, 0, (__be32 *)&quote, sizeof(quote), sum);
		icmp.checksum = csum_fold(sum);
		if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &icmp, sizeof(icmp), 0) < 0)
			return TC_ACT_SHOT;
		return bpf_redirect_peer(skb->ifindex, 0);
	}
	return TC_ACT_SHOT;
}

// lb_translate rewrites a packet for a Service address to a backend,
// before policy, so that everything after it sees the backend. It returns
// 0 for a packet that is not for a Service or was translated (f then holds
// the backend, and the Service in nat_addr, nat_port), 1 when the packet
// was answered or dropped instead (*act is the TC verdict, *reason why).
// A flow (its tuple) keeps its backend while that backend is in the
// Service; a flow without one, or a TCP SYN or UDP datagram whose backend
// is gone, gets a new one, chosen at random; an established TCP
// connection whose backend is gone is reset.
static __always_inline int lb_translate(struct __sk_buff *skb, struct flow *f, int *act, __u8 *reason)
{
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return 0;
	if (!f->l4off)
		return 0;
	struct service_key sk = {.addr = f->daddr, .port = f->dport, .proto = f->proto};
	struct service_value *svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc)
		return 0;
	__u16 count = svc->count, svc_id = svc->svc_id;
	if (svc_id == 0) {
		// Read while the agent replaced it and the element went to another
		// key (see below): read it again.
		svc = bpf_map_lookup_elem(&services, &sk);
		if (!svc)
			return 0;
		count = svc->count;
		svc_id = svc->svc_id;
	}
	struct ct_key fk = {.saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto};
	struct lb_flow *lb = bpf_map_lookup_elem(&lb_flows, &fk);
	struct backend *be = 0;
	__u32 backend_id = 0;
	// A tuple keeps its backend while the backend is in the Service, SYNs
	// included: a retransmitted SYN must meet the backend that may have
	// answered the first one.
	if (lb && lb->svc_id == svc_id) {
		backend_id = lb->backend_id;
		be = bpf_map_lookup_elem(&backends, &backend_id);
	}
	if (!be && lb && f->proto == IPPROTO_TCP && !(f->syn && !f->ack)) {
		*reason = REASON_BACKEND_GONE;
		*act = refuse(skb, f);
		return 1;
	}
	if (!be) {
		// The agent may be changing the Service meanwhile: the count read
		// may be stale (a slot or backend gone since), and an element it
		// replaced may be recycled for another key while it is read (a
		// service's id is never 0). Each try reads the Service again; a
		// few make a miss as unlikely as the agent finishing several
		// updates between two lookups. A Service with no backends is
		// refused at once.
		for (int i = 0; i < 4; i++) {
			if (i > 0) {
				sk.slot = 0;
				svc = bpf_map_lookup_elem(&services, &sk);
				if (!svc)
					break;
				count = svc->count;
				svc_id = svc->svc_id;
			}
			if (svc_id == 0)
				continue;
			if (count == 0)
				break;
			sk.slot = bpf_get_prandom_u32() % count + 1;
			struct service_value *slot = bpf_map_lookup_elem(&services, &sk);
			if (slot) {
				backend_id = slot->backend_id;
				be = bpf_map_lookup_elem(&backends, &backend_id);
			}
			if (be)
				break;
		}
		if (!be) {
			*reason = REASON_NO_BACKEND;
			*act = refuse(skb, f);
			return 1;
		}
		struct lb_flow nl = {.backend_id = backend_id, .svc_id = svc_id};
		bpf_map_update_elem(&lb_flows, &fk, &nl, BPF_ANY);
	}
	__be32 baddr = be->addr;
	__be16 bport = be->port;
	if (rewrite(skb, f, 1, f->daddr, baddr, f->dport, bport) < 0) {
		*reason = REASON_NO_BACKEND;
		*act = TC_ACT_SHOT;
		return 1;
	}
	f->nat_addr = f->daddr;
	f->nat_port = f->dport;
	f->hairpin = baddr == f->saddr;
	f->daddr = baddr;
	f->dport = bport;
	f->policy_port = bpf_ntohs(bport);
	return 0;
}

// lb_reverse gives a reply of a translated flow the Service's address and
// port as its source, so the client sees the peer it connected to.
static __always_inline void lb_reverse(struct __sk_buff *skb, struct flow *f, struct ct_value *ct)
{
	if (!f->l4off || (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP))
		return;
	rewrite(skb, f, 0, f->saddr, ct->nat_addr, f->sport, ct->nat_port);
}

static __always_inline void ct_create(struct ct_key *k, struct flow *f, __u8 path, __u8 audited, __be16 proxy_port)
{
	__u64 now = bpf_ktime_get_ns();
	struct ct_value v = {
		.created = now,
		.last_seen = now,
		.path = path,
		.audited = audited,
		.proxy_port = proxy_port,
		.nat_addr = f->nat_addr,
		.nat_port = f->nat_port,
	};
	bpf_map_update_elem(&conntrack, k, &v, BPF_ANY);
}

// handle is the whole program. from_pod: the packet leaves the pod (TC
// ingress on the host veth, the pod's egress); else it enters the pod (TC
// egress on the host veth, the pod's ingress).
static __always_inline int handle(struct __sk_buff *skb, const int from_pod, struct flow *fp)
{
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
	if (parse(skb, fp) < 0)
		return TC_ACT_SHOT;

	if (from_pod) {
		ep = bpf_map_lookup_elem(&endpoints, &fp->saddr);
	} else {
		// The proxy's upstream legs: the proxy enforced both sides' policy.
		// Remember the flow so that the pod's replies pass.
		if ((skb->mark & MARK_MASK) == MARK_FROM_PROXY) {
			struct ct_key lk = {.saddr = fp->saddr, .daddr = fp->daddr, .sport = fp->sport, .dport = fp->dport, .proto = fp->proto};
			struct ct_value *lv = bpf_map_lookup_elem(&conntrack, &lk);
			if (lv)
				lv->last_seen = bpf_ktime_get_ns();
			else
				ct_create(&lk, fp, PATH_PROXY_LEG, 0, 0);
			return TC_ACT_OK;
		}
		ep = bpf_map_lookup_elem(&endpoints, &fp->daddr);
	}
	d.dir = from_pod ? DIR_EGRESS : DIR_INGRESS;
	if (!ep) {
		// A source address that is not the pod's (spoofing), or a packet for
		// an address that is no longer an endpoint: fail closed.
		d.reason = from_pod ? REASON_UNKNOWN_SOURCE : REASON_UNKNOWN_DESTINATION;
		return drop(fp, &d, 0, 0);
	}
	d.ep_id = ep->ep_id;
	if (ep->flags & EP_LOCKDOWN) {
		d.reason = REASON_LOCKDOWN;
		return drop(fp, &d, identity_of(fp->saddr), identity_of(fp->daddr));
	}
	// Services are translated before policy: the checks, the redirect,
	// conntrack and the events see the backend.
	if (from_pod) {
		int act = TC_ACT_SHOT;
		__u8 reason = 0;
		if (lb_translate(skb, fp, &act, &reason)) {
			d.reason = reason;
			emit(fp, &d, EV_DROP, identity_of(fp->saddr), IDENTITY_WORLD);
			return act;
		}
	}
	src_id = identity_of(fp->saddr);
	dst_id = identity_of(fp->daddr);

	struct ct_key k = {.saddr = fp->saddr, .daddr = fp->daddr, .sport = fp->sport, .dport = fp->dport, .proto = fp->proto};
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &k);
	// A pure SYN starts a new connection even if the tuple is reused.
	int established = ct && !(fp->proto == IPPROTO_TCP && fp->syn && !fp->ack);
	// No entry at all: the first packet of a flow (a reused tuple or a SYN
	// retransmission finds the entry and reports nothing new).
	int new_flow = !ct;
	// to_pod never translates: a SYN that rewrites the entry keeps the
	// Service address that from_pod recorded in it.
	if (ct && !from_pod) {
		fp->nat_addr = ct->nat_addr;
		fp->nat_port = ct->nat_port;
	}
	if (!ct) {
		struct ct_key rk = {.saddr = fp->daddr, .daddr = fp->saddr, .sport = fp->dport, .dport = fp->sport, .proto = fp->proto};
		struct ct_value *rv = bpf_map_lookup_elem(&conntrack, &rk);
		if (rv) {
			// A reply rides its flow's entry.
			rv->last_seen = bpf_ktime_get_ns();
			if (from_pod && rv->path == PATH_PROXY_LEG)
				assign_proxy_leg(skb, fp);
			if (!from_pod && rv->nat_addr)
				lb_reverse(skb, fp, rv);
			return TC_ACT_OK;
		}
		if (from_pod && (fp->proto == IPPROTO_TCP || fp->proto == IPPROTO_UDP) && fp->l4off) {
			// A reply inside a hairpin flow: it left the pod for the
			// Service address; it goes back in from the Service.
			struct ct_key hk = {.saddr = fp->saddr, .daddr = fp->saddr, .sport = fp->dport, .dport = fp->sport, .proto = fp->proto};
			struct ct_value *hv = bpf_map_lookup_elem(&conntrack, &hk);
			if (hv && hv->nat_addr == fp->daddr) {
				__be32 vip = hv->nat_addr;
				__be16 vport = hv->nat_port;
				hv->last_seen = bpf_ktime_get_ns();
				if (rewrite(skb, fp, 0, fp->saddr, vip, fp->sport, vport) < 0 ||
				    rewrite(skb, fp, 1, vip, fp->saddr, fp->dport, fp->dport) < 0)
					return TC_ACT_SHOT;
				return bpf_redirect_peer(skb->ifindex, 0);
			}
		}
	}

	// The forward direction is checked on every packet, so a new deny also
	// stops established flows.
	if (from_pod) {
		if (ep->flags & EP_ENFORCE_EGRESS)
			policy_check(&d, ep, DIR_EGRESS, dst_id, fp);
		// A local destination's ingress policy is checked here too, so that
		// its redirects can be done at TC ingress, where sk_assign works.
		peer_ep = bpf_map_lookup_elem(&endpoints, &fp->daddr);
		if (peer_ep && d.verdict != VERDICT_DENY) {
			if (peer_ep->flags & EP_LOCKDOWN) {
				d.verdict = VERDICT_DENY;
				d.reason = REASON_LOCKDOWN;
				d.dir = DIR_INGRESS;
				d.ep_id = peer_ep->ep_id;
				d.rule_id = 0;
			} else if (peer_ep->flags & EP_ENFORCE_INGRESS) {
				policy_check(&d, peer_ep, DIR_INGRESS, src_id, fp);
			}
		}
	} else if (ep->flags & EP_ENFORCE_INGRESS) {
		policy_check(&d, ep, DIR_INGRESS, src_id, fp);
	}
	if (d.verdict == VERDICT_DENY)
		return drop(fp, &d, src_id, dst_id);

	if (established) {
		ct->last_seen = bpf_ktime_get_ns();
		// The flow keeps its path for its whole life (switching resets it).
		if (ct->path == PATH_PROXIED && from_pod) {
			fp->proxied = 1;
			if (redirect(skb, fp, ct->proxy_port) < 0) {
				d.reason = REASON_NO_PROXY;
				d.proxy_port = ct->proxy_port;
				return drop(fp, &d, src_id, dst_id);
			}
		}
		return TC_ACT_OK;
	}

	if (d.verdict == VERDICT_REDIRECT) {
		if (!from_pod) {
			// sk_assign works at TC ingress only; a flow from a source that is
			// not a local pod cannot be redirected here yet: fail closed.
			d.reason = REASON_REDIRECT_UNSUPPORTED;
			return drop(fp, &d, src_id, dst_id);
		}
		fp->proxied = 1;
		if (redirect(skb, fp, d.proxy_port) < 0) {
			d.reason = REASON_NO_PROXY;
			return drop(fp, &d, src_id, dst_id);
		}
		ct_create(&k, fp, PATH_PROXIED, d.audited, d.proxy_port);
		d.reason = REASON_POLICY;
		emit(fp, &d, EV_REDIRECT, src_id, dst_id);
		return TC_ACT_OK;
	}
	ct_create(&k, fp, PATH_DIRECT, d.audited, 0);
	if (d.audited) {
		d.reason = REASON_POLICY;
		emit(fp, &d, EV_AUDIT, src_id, dst_id);
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
		emit(fp, &d, EV_ALLOW, src_id, dst_id);
	}
	return TC_ACT_OK;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	struct flow f = {};
	int ret = handle(skb, 1, &f);

	// A pod that reached itself through a Service (hairpin): the packet
	// goes straight back in, from the Service address, so that the pod's
	// replies leave it again and are translated back above.
	if (ret == TC_ACT_OK && f.hairpin && !f.proxied) {
		if (rewrite(skb, &f, 0, f.saddr, f.nat_addr, f.sport, f.sport) < 0)
			return TC_ACT_SHOT;
		return bpf_redirect_peer(skb->ifindex, 0);
	}
	return ret;
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	struct flow f = {};
	return handle(skb, 0, &f);
}

// upstream_reply hands a packet from another node to the proxy's socket
// when it is a reply on an upstream leg that the proxy bound to a local
// client pod's address (the server is a pod on another node): addressed
// to the pod, it would otherwise be forwarded there. Only the proxy has
// sockets on pod addresses in the node's namespace; a pure SYN never
// belongs to one.
static __always_inline int upstream_reply(struct __sk_buff *skb, struct flow *f)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	int assigned;

	if (f->proto != IPPROTO_TCP || (f->syn && !f->ack))
		return 0;
	t.ipv4.saddr = f->saddr;
	t.ipv4.daddr = f->daddr;
	t.ipv4.sport = f->sport;
	t.ipv4.dport = f->dport;
	sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	assigned = sk->state != BPF_TCP_LISTEN && bpf_sk_assign(skb, sk, 0) == 0;
	bpf_sk_release(sk);
	if (assigned)
		skb->mark = (skb->mark & ~MARK_MASK) | MARK_TO_PROXY;
	return assigned;
}

// from_uplink runs at TC ingress of a node's uplink, for traffic from other
// nodes to this node's pods. It only takes the flows that an ingress L7
// rule of the destination selects and hands them to the node's proxy,
// here where bpf_sk_assign works (at to_pod, TC egress of the pod's veth,
// it does not). Everything else passes unchanged to to_pod, which judges
// it as before (its drops and their events included): transit traffic,
// the node's own traffic, replies, and flows without a redirect. Replies
// on the proxy's upstream legs bound to a local client pod's address go
// to the proxy's socket (upstream_reply).
SEC("tc")
int from_uplink(struct __sk_buff *skb)
{
	struct decision d = {};
	struct flow f = {};
	struct endpoint_info *ep;
	__u32 src_id;

	if (skb->protocol != bpf_htons(ETH_P_IP) || (skb->mark & MARK_MASK) == MARK_FROM_PROXY)
		return TC_ACT_OK;
	// A packet that does not parse reaches to_pod, which drops it.
	if (parse(skb, &f) < 0)
		return TC_ACT_OK;
	ep = bpf_map_lookup_elem(&endpoints, &f.daddr);
	if (!ep)
		return TC_ACT_OK;

	struct ct_key k = {.saddr = f.saddr, .daddr = f.daddr, .sport = f.sport, .dport = f.dport, .proto = f.proto};
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &k);
	if (!ct) {
		struct ct_key rk = {.saddr = f.daddr, .daddr = f.saddr, .sport = f.dport, .dport = f.sport, .proto = f.proto};
		if (bpf_map_lookup_elem(&conntrack, &rk))
			return TC_ACT_OK; // a reply: to_pod lets it ride its flow
		if (upstream_reply(skb, &f))
			return TC_ACT_OK;
	}
	if ((ep->flags & EP_LOCKDOWN) || !(ep->flags & EP_ENFORCE_INGRESS))
		return TC_ACT_OK;
	d.dir = DIR_INGRESS;
	d.ep_id = ep->ep_id;
	src_id = identity_of(f.saddr);

	int established = ct && !(f.proto == IPPROTO_TCP && f.syn && !f.ack);
	if (established) {
		if (ct->path != PATH_PROXIED)
			return TC_ACT_OK;
		// The policy is checked on every packet, as in to_pod: a new deny
		// stops the flow (to_pod drops it with the event).
		policy_check(&d, ep, DIR_INGRESS, src_id, &f);
		if (d.verdict == VERDICT_DENY)
			return TC_ACT_OK;
		ct->last_seen = bpf_ktime_get_ns();
		if (redirect(skb, &f, ct->proxy_port) < 0) {
			d.reason = REASON_NO_PROXY;
			d.proxy_port = ct->proxy_port;
			return drop(&f, &d, src_id, identity_of(f.daddr));
		}
		return TC_ACT_OK;
	}
	policy_check(&d, ep, DIR_INGRESS, src_id, &f);
	if (d.verdict != VERDICT_REDIRECT)
		return TC_ACT_OK;
	if (redirect(skb, &f, d.proxy_port) < 0) {
		d.reason = REASON_NO_PROXY;
		return drop(&f, &d, src_id, identity_of(f.daddr));
	}
	ct_create(&k, &f, PATH_PROXIED, d.audited, d.proxy_port);
	d.reason = REASON_POLICY;
	emit(&f, &d, EV_REDIRECT, src_id, identity_of(f.daddr));
	return TC_ACT_OK;
}
