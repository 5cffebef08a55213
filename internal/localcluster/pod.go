package localcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// PlaceholderImage is the image name of every pod's container. Nothing
// pulls or runs it: the pod is its network namespace.
const PlaceholderImage = "portcullis.dev/localcluster/placeholder:none"

// PodSpec describes a pod for AddPod.
type PodSpec struct {
	// Namespace defaults to "default"; it is created if missing.
	Namespace string
	// Name is required.
	Name string
	// Labels are the pod's labels; nil means none.
	Labels map[string]string
	// ServiceAccount defaults to "default"; it is created if missing.
	ServiceAccount string
	// Ports are the container's ports (named ports resolve against them).
	Ports []corev1.ContainerPort
	// Node names the node the pod runs on; "" means the first node.
	Node string
}

// Pod is a pod made by AddPod: a Pod object and a network namespace.
type Pod struct {
	// Namespace and Name of the Pod object.
	Namespace, Name string
	// IP is the pod's address on eth0, from PodCIDR.
	IP netip.Addr
	// NetNS is the name of the pod's network namespace, under /run/netns.
	NetNS string
	// HostVeth is the root namespace's end of the pod's veth pair; the
	// root namespace routes IP through it.
	HostVeth string
	// Node is the node the pod runs on (for a host of AddHost: the first).
	Node string
	// Object is the Pod object as AddPod last wrote it.
	Object *corev1.Pod

	plumbing plumbing
}

// Command returns a command that runs argv inside the pod's network
// namespace (`ip netns exec NETNS argv...`). The caller starts and waits for
// it; a process still in the namespace when the pod is deleted or the
// cluster stops is killed.
func (p *Pod) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", p.NetNS}, argv...)...)
}

// CommandContext is Command with a context that kills the process.
func (p *Pod) CommandContext(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.NetNS}, argv...)...)
}

// Exec runs argv inside the pod's network namespace and returns its
// combined output. A non-zero exit is an error that carries the output.
func (p *Pod) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := p.CommandContext(ctx, argv...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("running %q in pod %s/%s: %w: %s", argv, p.Namespace, p.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// podKey is the map key of a pod.
func podKey(namespace, name string) string { return namespace + "/" + name }

// AddPod makes a pod: its namespace and service account if missing, a
// network namespace with a veth pair and an address, the Pod object bound to
// the cluster's node, and the Pod's status (Running, Ready, with the pod's
// and the host's IP), and the EndpointSlices of the Services that select
// it. On error nothing of the pod is left.
func (c *Cluster) AddPod(ctx context.Context, spec PodSpec) (_ *Pod, err error) {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.ServiceAccount == "" {
		spec.ServiceAccount = "default"
	}
	if msgs := validation.IsDNS1123Subdomain(spec.Name); len(msgs) > 0 {
		return nil, fmt.Errorf("pod name %q: %s", spec.Name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(spec.Namespace); len(msgs) > 0 {
		return nil, fmt.Errorf("pod namespace %q: %s", spec.Namespace, strings.Join(msgs, "; "))
	}
	node, err := c.nodeFor(spec.Node)
	if err != nil {
		return nil, fmt.Errorf("adding pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	key := podKey(spec.Namespace, spec.Name)
	if err := c.reserve(key); err != nil {
		return nil, fmt.Errorf("adding pod %s: %w", key, err)
	}
	var p *Pod
	defer func() { c.settle(key, p, err) }()

	if err := c.ensureNamespace(ctx, spec.Namespace); err != nil {
		return nil, err
	}
	if err := c.ensureServiceAccount(ctx, spec.Namespace, spec.ServiceAccount); err != nil {
		return nil, err
	}

	pl, err := plumbPodOn(node.side, c.netnsName(spec.Namespace, spec.Name), c.vethName(spec.Namespace, spec.Name), node.ipam.alloc)
	if errors.Is(err, ErrNoAddresses) && node.NetNS != "" {
		err = fmt.Errorf("no free pod address in %s of node %s", node.PodCIDR, node.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("adding pod %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			_ = unplumbPod(pl)
		}
	}()

	if err := writeResolvConf(pl.netns, resolvConf(spec.Namespace)); err != nil {
		return nil, fmt.Errorf("adding pod %s: %w", key, err)
	}
	obj, err := c.createPodObject(ctx, spec, node, pl)
	if err != nil {
		return nil, fmt.Errorf("adding pod %s: %w", key, err)
	}
	if err := c.SyncEndpointSlices(ctx, spec.Namespace); err != nil {
		_ = c.clientset.CoreV1().Pods(spec.Namespace).Delete(context.WithoutCancel(ctx), spec.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return nil, fmt.Errorf("adding pod %s: %w", key, err)
	}
	p = &Pod{Namespace: spec.Namespace, Name: spec.Name, IP: pl.ip, NetNS: pl.netns, HostVeth: pl.hostVeth, Node: node.Name, Object: obj, plumbing: pl}
	c.logf("pod %s: %s on node %s in netns %s, host veth %s", key, pl.ip, node.Name, pl.netns, pl.hostVeth)
	return p, nil
}

// createPodObject creates the Pod object and sets its status. If setting
// the status fails the object is deleted again.
func (c *Cluster) createPodObject(ctx context.Context, spec PodSpec, node *Node, pl plumbing) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:                     node.Name,
			ServiceAccountName:           spec.ServiceAccount,
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name:  "main",
				Image: PlaceholderImage,
				Ports: spec.Ports,
			}},
		},
	}
	pods := c.clientset.CoreV1().Pods(spec.Namespace)
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Pod object: %w", err)
	}
	now := metav1.Now()
	podIP, hostIP := pl.ip.String(), node.InternalIP.String()
	conds := make([]corev1.PodCondition, 0, 5)
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		conds = append(conds, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	created.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: conds,
		HostIP:     hostIP,
		HostIPs:    []corev1.HostIP{{IP: hostIP}},
		PodIP:      podIP,
		PodIPs:     []corev1.PodIP{{IP: podIP}},
		StartTime:  &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:        "main",
			Image:       PlaceholderImage,
			ImageID:     PlaceholderImage,
			ContainerID: "netns://" + pl.netns,
			Ready:       true,
			Started:     ptr.To(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	updated, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		_ = pods.Delete(context.WithoutCancel(ctx), spec.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		return nil, fmt.Errorf("setting Pod status: %w", err)
	}
	return updated, nil
}

// ensureServiceAccount creates the service account unless it exists (there
// is no controller manager to create "default").
func (c *Cluster) ensureServiceAccount(ctx context.Context, namespace, name string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	_, err := c.clientset.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeletePod deletes the Pod object (immediately: there is no kubelet to
// confirm a graceful deletion), kills the processes in the pod's network
// namespace and removes the namespace and its veth pair. A pod that
// AddPod did not make is an error. With namespace "" it deletes a host made
// by AddHost.
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) error {
	key := podKey(namespace, name)
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return ErrStopped
	}
	p := c.pods[key]
	if p == nil {
		c.mu.Unlock()
		return fmt.Errorf("deleting pod %s: not made by this cluster (or still being added)", key)
	}
	delete(c.pods, key)
	c.mu.Unlock()

	var errs []error
	if p.Object != nil { // a host (AddHost) has no Pod object
		err := c.clientset.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting Pod object: %w", err))
		}
		// The pod leaves its Services' backends before its address goes.
		if err := c.SyncEndpointSlices(ctx, namespace); err != nil {
			errs = append(errs, err)
		}
	} else if err := c.writeHostsFile(); err != nil {
		errs = append(errs, err)
	}
	if err := unplumbPod(p.plumbing); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting pod %s: %w", key, err)
	}
	return nil
}

// reserve claims key for a pod or host being added: ErrStopped after
// Stop, ErrPodExists if the key is taken (or being added).
func (c *Cluster) reserve(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ErrStopped
	}
	if _, ok := c.pods[key]; ok {
		return ErrPodExists
	}
	c.pods[key] = nil
	return nil
}

// settle ends what reserve began: it records p, or frees key if adding
// failed.
func (c *Cluster) settle(key string, p *Pod, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.pods, key)
		return
	}
	c.pods[key] = p
}

// Pod returns the pod namespace/name made by AddPod, or nil.
func (c *Cluster) Pod(namespace, name string) *Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[podKey(namespace, name)]
}

// maxNetnsName keeps netns names well inside NAME_MAX.
const maxNetnsName = 200

// netnsName is the pod's network namespace name: prefix, namespace, ".",
// name (a namespace holds no dot, so the name is unambiguous), or prefix
// and a hash if that is too long.
func (c *Cluster) netnsName(namespace, name string) string {
	n := c.prefix + namespace + "." + name
	if len(n) > maxNetnsName {
		n = c.prefix + podHash(namespace, name)
	}
	return n
}

// vethName is the pod's host-side veth: prefix and 8 hex digits of a hash
// of namespace/name, 15 bytes, the longest name a link may have.
func (c *Cluster) vethName(namespace, name string) string {
	return c.prefix + podHash(namespace, name)[:8]
}

// podHash is the hex SHA-256 of namespace/name.
func podHash(namespace, name string) string {
	sum := sha256.Sum256([]byte(podKey(namespace, name)))
	return hex.EncodeToString(sum[:])
}
