// Package localcluster runs a small, real Kubernetes control plane on this
// machine for the demo and the end-to-end tests, and makes "pods" that are
// network namespaces.
//
// [Start] runs etcd and kube-apiserver on loopback from the binaries in
// KUBEBUILDER_ASSETS (through controller-runtime's envtest), with client
// certificates, RBAC authorization and a kubeconfig file; it installs the
// Portcullis CRDs, creates the portcullis-system and portcullis-secrets
// namespaces and registers a Node for this machine. There is no scheduler,
// kubelet or controller manager: [Cluster.AddPod] plays all three for one
// pod. It creates a network namespace with a veth pair, gives the pod an
// address from 10.244.0.0/16, routes it through the root namespace, and
// registers a Pod object whose status says Running with that address.
//
// Networking: every pod has eth0 with its address as a /32, a route to the
// gateway 10.244.0.1 on eth0 and a default route through it. The host side
// of every pod's veth pair carries 10.244.0.1/32 (the Node's InternalIP) and
// the root namespace has a /32 route to each pod through its host-side veth,
// which is how the BPF datapath finds a pod's interface. IPv4 forwarding is
// switched on, so pods reach each other and the host through the root
// namespace. Nothing outside 10.244.0.0/16 and outside the links and
// namespaces the cluster made is touched.
//
// Services: the apiserver hands out ClusterIPs from 10.96.0.0/12
// ([ServiceCIDR]), and the root namespace routes that range to a
// blackhole (one route per cluster, told apart by its metric), so a
// ClusterIP packet that the datapath did not translate is dropped here
// and never leaves the machine. [Cluster.AddService] creates a Service;
// the cluster plays the EndpointSlice controller for Services with a
// selector ([Cluster.SyncEndpointSlices]), resolving named target ports per
// pod, and keeps the slices current as AddPod and DeletePod come and go.
//
// Every name the cluster makes (network namespaces, links) starts with a
// per-cluster prefix "pc" + 4 hex digits + "-". The owner's PID and the
// cluster's temporary directory are recorded under
// /run/portcullis-localcluster/<prefix>/ before anything is made, so that
// [Cluster.Stop] and the next [Start] (through [CleanLeftovers]) can remove
// everything a cluster made, also when its process was killed.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and Linux.
package localcluster
