package packaging

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// renderings are the two ways to install: the chart with its defaults and
// config/default. Both must carry the same security settings.
func renderings(t *testing.T) map[string][]*unstructured.Unstructured {
	return map[string][]*unstructured.Unstructured{
		"helm":      parseObjects(t, helmTemplate(t, "portcullis-system")),
		"kustomize": kustomizeBuild(t, "default"),
	}
}

// TestAgentSecurity pins the agent's privileges: what a BPF agent needs
// and nothing more, identical in the chart and in config/.
func TestAgentSecurity(t *testing.T) {
	var agents []*appsv1.DaemonSet
	rendered := renderings(t)
	for _, how := range []string{"helm", "kustomize"} {
		objs := rendered[how]
		ds := convert[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "portcullis-agent"))
		agents = append(agents, ds)
		t.Run(how, func(t *testing.T) {
			spec := ds.Spec.Template.Spec
			if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
				t.Errorf("hostNetwork %v, dnsPolicy %s; want true, ClusterFirstWithHostNet", spec.HostNetwork, spec.DNSPolicy)
			}
			if spec.HostPID || spec.HostIPC {
				t.Errorf("hostPID %v, hostIPC %v; the agent needs neither", spec.HostPID, spec.HostIPC)
			}
			if spec.PriorityClassName != "system-node-critical" {
				t.Errorf("priorityClassName = %q", spec.PriorityClassName)
			}
			if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
				return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
			}) {
				t.Errorf("tolerations = %v, want one tolerating every taint", spec.Tolerations)
			}
			if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext = %+v, want seccomp RuntimeDefault", spec.SecurityContext)
			}
			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("%d containers, %d init containers; want exactly the agent", len(spec.Containers), len(spec.InitContainers))
			}
			c := spec.Containers[0]
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("no container securityContext")
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Error("privileged: true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("allowPrivilegeEscalation is not false")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Error("readOnlyRootFilesystem is not true")
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
				!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "NET_ADMIN"}) {
				t.Errorf("capabilities = %+v, want drop ALL, add exactly BPF and NET_ADMIN", sc.Capabilities)
			}
			// Host paths: exactly bpffs (read-write, for pins), cgroup2
			// (read-only) and the API socket's directory, never
			// Bidirectional (which needs privileged).
			wantMounts := map[string]bool{"/sys/fs/bpf": false, "/sys/fs/cgroup": true, "/var/run/portcullis": false} // path: readOnly
			vols := map[string]string{}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					vols[v.Name] = v.HostPath.Path
					if _, ok := wantMounts[v.HostPath.Path]; !ok {
						t.Errorf("unexpected hostPath volume %s: %s", v.Name, v.HostPath.Path)
					}
				}
			}
			if len(vols) != len(wantMounts) {
				t.Errorf("hostPath volumes = %v, want %v", vols, wantMounts)
			}
			for _, m := range c.VolumeMounts {
				path, ok := vols[m.Name]
				if !ok {
					continue
				}
				if m.MountPath != path {
					t.Errorf("%s mounted at %s, want %s", path, m.MountPath, path)
				}
				if m.ReadOnly != wantMounts[path] {
					t.Errorf("%s readOnly = %v, want %v", path, m.ReadOnly, wantMounts[path])
				}
				if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
					t.Errorf("%s has Bidirectional propagation", path)
				}
			}
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
			}) {
				t.Error("no NODE_NAME from spec.nodeName")
			}
			for _, flag := range []string{
				"--node-name=$(NODE_NAME)", "--enforcement-mode=$(ENFORCEMENT_MODE)", "--audit-mode=$(AUDIT_MODE)",
				"--dns-reject-response-code=$(DNS_REJECT_RESPONSE_CODE)",
				"--tofqdns-max-ips-per-hostname=$(TOFQDNS_MAX_IPS_PER_HOSTNAME)",
				"--secrets-namespace=$(SECRETS_NAMESPACE)", "--metrics-bind-address=:9962",
				"--health-probe-bind-address=:9879", "--bpffs=/sys/fs/bpf",
				"--api-socket=/var/run/portcullis/agent.sock",
			} {
				if !slices.Contains(c.Args, flag) {
					t.Errorf("args %q lack %s", c.Args, flag)
				}
			}
			// Every $(VAR) in the args must be defined, or the kubelet
			// passes it through literally.
			for _, a := range c.Args {
				if i := strings.Index(a, "$("); i >= 0 {
					name := strings.TrimSuffix(a[i+2:], ")")
					if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name }) {
						t.Errorf("arg %s refers to undefined env %s", a, name)
					}
				}
			}
			wantProbePort(t, c, "health", 9879)
		})
	}
	// The chart and config/ must agree on everything that grants privilege.
	h, k := agents[0].Spec.Template.Spec, agents[1].Spec.Template.Spec
	if !reflect.DeepEqual(h.Containers[0].SecurityContext, k.Containers[0].SecurityContext) {
		t.Errorf("agent securityContext differs:\nhelm:      %+v\nkustomize: %+v", h.Containers[0].SecurityContext, k.Containers[0].SecurityContext)
	}
	if !reflect.DeepEqual(h.Volumes, k.Volumes) || !reflect.DeepEqual(h.Containers[0].VolumeMounts, k.Containers[0].VolumeMounts) {
		t.Errorf("agent volumes differ:\nhelm:      %+v %+v\nkustomize: %+v %+v", h.Volumes, h.Containers[0].VolumeMounts, k.Volumes, k.Containers[0].VolumeMounts)
	}
	if !slices.Equal(h.Containers[0].Args, k.Containers[0].Args) {
		t.Errorf("agent args differ:\nhelm:      %q\nkustomize: %q", h.Containers[0].Args, k.Containers[0].Args)
	}
}

// TestOperatorSecurity pins the operator's restricted profile.
func TestOperatorSecurity(t *testing.T) {
	for how, objs := range renderings(t) {
		t.Run(how, func(t *testing.T) {
			dep := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "portcullis-operator"))
			spec := dep.Spec.Template.Spec
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
				t.Errorf("pod securityContext = %+v, want runAsNonRoot, uid 65532", psc)
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("no seccomp RuntimeDefault")
			}
			if spec.HostNetwork || spec.HostPID || spec.HostIPC {
				t.Error("the operator uses a host namespace")
			}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					t.Errorf("hostPath volume %s", v.Name)
				}
			}
			c := spec.Containers[0]
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("container securityContext = %+v, want no escalation, read-only root, drop ALL", sc)
			}
			for _, flag := range []string{"--metrics-bind-address=:8443", "--health-probe-bind-address=:8081", "--secrets-namespace=$(SECRETS_NAMESPACE)"} {
				if !slices.Contains(c.Args, flag) {
					t.Errorf("args %q lack %s", c.Args, flag)
				}
			}
			if !slices.ContainsFunc(c.Args, func(a string) bool { return a == "--leader-elect" || a == "--leader-elect=true" }) {
				t.Errorf("args %q: no leader election", c.Args)
			}
			wantProbePort(t, c, "health", 8081)
		})
	}
}

// wantProbePort checks that the container's liveness and readiness probes
// hit its port name, and that the name is the port number.
func wantProbePort(t *testing.T, c corev1.Container, name string, number int32) {
	t.Helper()
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name && p.ContainerPort == number }) {
		t.Errorf("ports %+v lack %s=%d", c.Ports, name, number)
	}
	for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port != intstr.FromString(name) {
			t.Errorf("%s probe = %+v, want HTTP on port %s", what, p, name)
		}
	}
}
