// Package localcluster runs a small, real Kubernetes control plane on this
// machine for the demo, the end-to-end tests and the agent benchmarks, and
// makes "pods" that are network namespaces.
//
// # Control plane
//
// [Start] runs etcd and kube-apiserver on loopback from the source-built
// binaries in KUBEBUILDER_ASSETS (bin/k8s/<version>/, through
// controller-runtime's envtest), with client certificates,
// --authorization-mode=RBAC (set explicitly, so RBAC tests cannot pass
// against AlwaysAllow) and a kubeconfig file for a system:masters user. It
// installs the CRDs from config/crd/bases (the embedded copies outside the
// repository) and waits until they are Established, creates the
// portcullis-system and portcullis-secrets namespaces and registers this
// machine as a Ready Node with podCIDR 10.244.0.0/16 and InternalIP
// 10.244.0.1. There is no scheduler, kubelet or controller manager; the
// envtest defaults also turn off the ServiceAccount admission plugin.
//
// # Pods
//
// [Cluster.AddPod] plays scheduler and kubelet for one pod: it creates the
// namespace and service account if missing, a network namespace
// /run/netns/<prefix><namespace>.<name>, and a veth pair whose pod end is
// eth0 (created directly inside the pod's namespace) and whose host end
// <prefix><8 hex of a hash of namespace/name> stays in the root namespace.
// The pod gets the next free address of 10.244.0.0/16 as a /32, a link
// route to the gateway 10.244.0.1 and a default route through it; every
// host-side veth carries 10.244.0.1/32 (the Node's InternalIP), so the
// host answers ARP for the gateway and host-to-pod traffic comes from the
// Node's address. The root namespace has a /32 route to each pod through
// its host veth: that route is how the BPF datapath finds a pod's
// interface, and adding it (with NLM_F_EXCL) is also the address lease, so
// concurrent clusters share the range without a lock file.
// net.ipv4.ip_forward is set to 1 (and left so). Then the Pod object is
// created, bound to the Node, with one container of a placeholder image,
// and its status is written through the status subresource: Running,
// Ready, podIP(s), hostIP(s). [Pod.Command] and [Pod.Exec] run programs in
// the pod with `ip netns exec`.
//
// [Cluster.AddHost] plumbs a namespace the same way but creates no Pod
// object: an address of the pod range that the cluster knows nothing
// about, which policy sees as outside the cluster (e2e/datapath uses two as
// toCIDRSet targets); DeletePod(ctx, "", name) and Stop remove it.
// Plumbing uses vishvananda/netlink (typed errors, no process per step,
// the pod side configured through a handle opened in its namespace); only
// namespace creation switches a (locked) thread. Nothing outside
// 10.244.0.0/16 and outside the links and namespaces the cluster made is
// touched; the host's other interfaces, routes and addresses never are.
//
// # Nodes
//
// With Options.Nodes = N > 1 the cluster has N nodes. The first is this
// machine's root namespace as above. Node i (2..N), named
// <NodeName>-i, is a network namespace /run/netns/<prefix>_<name> with an
// uplink: a veth pair whose node end is eth0 and whose root end
// <prefix><8 hex> carries 10.244.0.1/32, so the root namespace routes
// between the nodes as a router of a native-routing underlay would. The
// node leases an InternalIP of [NodeAddrRange] (10.244.255.0/24) and a
// pod /24 of [NodePodRange] (10.244.193.0/24 to 10.244.254.0/24), each
// by adding its route in the root namespace with NLM_F_EXCL (the /32 of
// the address on the uplink, the /24 through that address), exactly as
// pods lease their addresses; the first node's pods never take an
// address of NodePodRange. In its namespace the node has forwarding on,
// a blackhole for ServiceCIDR, eth0 with its address and a default route
// via 10.244.0.1. Its Node object is Ready with that InternalIP and
// podCIDR (the first node keeps 10.244.0.0/16 and 10.244.0.1). Pods
// placed on it (PodSpec.Node) are plumbed as on the first node, but with
// the host veth inside the node's namespace carrying the node's
// InternalIP, an address of the node's /24, and the node as nodeName and
// hostIP of the Pod object. Each extra node has a bpffs mounted for its
// agent alone ([Node.BPFFS], under the cluster's state directory) and a
// kubeconfig ([Node.Kubeconfig]) that reaches the apiserver through a
// relay on the node's loopback; [Node.Command] runs a program there (an
// agent, as a DaemonSet would run one per node). Stop removes the pods,
// then each node: the relay, the processes in its namespace, the bpffs
// mount, the uplink (with the leased routes) and the namespace;
// CleanLeftovers does the same for a dead cluster (the bpffs mounts are
// found under its state directory).
//
// # Services
//
// The apiserver hands out ClusterIPs from 10.96.0.0/12 ([ServiceCIDR]), and
// the root namespace routes that range to a blackhole (one route per
// cluster, told apart by its metric), so a ClusterIP packet that the
// datapath did not translate is dropped here and never leaves the machine.
// [Cluster.AddService] creates a Service; the cluster plays the
// EndpointSlice controller for Services with a selector
// ([Cluster.SyncEndpointSlices]), resolving named target ports per pod, and
// keeps the slices current as AddPod and DeletePod come and go.
//
// # Cluster DNS
//
// [Cluster.StartDNS] runs kube-dns the way kubeadm clusters do: CoreDNS
// (bin/coredns, built from source with only the plugins it needs by
// hack/tools/coredns) as pod kube-system/coredns behind Service
// kube-system/kube-dns at 10.96.0.10, serving cluster.local from the
// apiserver and the hosts of AddHost from a local zone, forwarding nothing:
// an unknown name is NXDOMAIN and no query leaves the machine. Every pod's
// resolv.conf (written where `ip netns exec` bind-mounts it) names that
// address; reaching the ClusterIP takes the datapath's Service
// translation. CoreDNS reaches the apiserver through a relay on its pod's
// loopback, standing in for the kubernetes Service.
//
// # Cleanup
//
// Every namespace and link name starts with a per-cluster prefix "pc" + 4
// hex digits + "-". Before making anything, Start records the owner (PID
// and process start time, so PID reuse is detected) and the cluster's
// temporary directory ($TMPDIR/portcullis-localcluster-pcXXXX: etcd data,
// certificates, kubeconfig) in /run/portcullis-localcluster/pcXXXX/.
// [Cluster.Stop] deletes each pod's link and namespace after killing the
// processes still in it, stops kube-apiserver and etcd, kills any process
// whose command line names the temporary directory (the demo's operator),
// removes the temporary and state directories, and finally sweeps any
// namespace or link with the prefix left by a half-made pod. It is
// idempotent and runs after a partial start (Start calls it on its own
// errors); [SignalContext] turns Ctrl-C or SIGTERM into a cancelled
// context so callers reach their deferred Stop. A process that dies
// without stopping (SIGKILL) is cleaned up by the next Start
// ([CleanLeftovers]): every prefix whose owner is gone, or that has no
// state at all, is removed the same way, processes included.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and Linux.
package localcluster
