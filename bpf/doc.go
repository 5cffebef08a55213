// Package bpf is Portcullis's eBPF datapath: the BPF programs (datapath.c,
// compiled with bpf2go; the generated files are committed), their maps
// (ipcache, endpoints, policy, conntrack, events, and the Service maps
// services, backends and lb_flows), the writer that turns the engine's map
// state into policy map keys and applies only the differences, attaching
// the programs to pods' host-side veths with TCX, the ip rule and route
// that the proxy redirect needs, and the verdict event reader.
//
// Services are translated per packet in from_pod, before policy, and
// replies are translated back in to_pod (SetService, services.go), not
// with cgroup socket hooks: a pod here is a network namespace whose
// processes share their starter's cgroup, so a cgroup hook would have to
// sit on a cgroup that holds unrelated processes, while from_pod sees
// every packet a pod sends, and meets policy in the same pass, so that the
// checks, the L7 redirect and the events see the backend. See
// docs/design/services.md.
//
// See docs/architecture.md, section "Datapath".
package bpf
