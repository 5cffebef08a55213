// Package bpf is Portcullis's eBPF datapath: the BPF programs (datapath.c,
// compiled with bpf2go; the generated files are committed), their maps
// (ipcache, endpoints, policy, conntrack, events), the writer that turns the
// engine's map state into policy map keys and applies only the differences,
// attaching the programs to pods' host-side veths with TCX, the ip rule and
// route that the proxy redirect needs, and the verdict event reader.
//
// See docs/architecture.md, section "Datapath".
package bpf
