// Package bpf is Portcullis's eBPF datapath: the BPF programs (datapath.c,
// compiled with bpf2go; the generated files are committed), their maps
// (ipcache, endpoints, policy, conntrack, events), the writer that turns the
// engine's map state into policy map keys and applies only the differences,
// attaching the programs to pods' host-side veths with TCX, the ip rule and
// route that the proxy redirect needs, and the verdict event reader.
//
// The programs read ports for TCP and UDP and the type for ICMP; every
// other IP protocol, such as VRRP and IGMP, is looked up in the policy map
// and tracked in conntrack with ports 0.
//
// See docs/architecture.md, section "Datapath".
package bpf
