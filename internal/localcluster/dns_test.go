package localcluster

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requireTool fails the test if a program it runs is not installed (make
// deps installs it).
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (make deps installs it): %v", name, err)
	}
}

// TestClusterDNS runs kube-dns and asks it what pods ask, with dig from a
// pod: a Service's name, a Service's reverse name, an external host added with
// AddHost, and a name that exists nowhere (NXDOMAIN: nothing is
// forwarded). It asks CoreDNS's pod address: the ClusterIP in the pods'
// resolv.conf needs the datapath's Service translation, which the e2e
// tests cover.
func TestClusterDNS(t *testing.T) {
	requireTool(t, "dig")
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ext, err := c.AddHost("api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.StartDNS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Service.Spec.ClusterIP; got != KubeDNSIP.String() {
		t.Fatalf("kube-dns ClusterIP %s, want %s", got, KubeDNSIP)
	}
	client, err := c.AddPod(ctx, PodSpec{Namespace: "empire", Name: "client"})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "empire", Name: "deathstar"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.80", Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := c.Clientset().CoreV1().Services("empire").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	conf, err := client.Exec(ctx, "cat", "/etc/resolv.conf")
	if err != nil {
		t.Fatalf("reading the pod's resolv.conf: %v: %s", err, conf)
	}
	for _, want := range []string{"nameserver 10.96.0.10", "search empire.svc.cluster.local svc.cluster.local cluster.local"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("pod resolv.conf lacks %q:\n%s", want, conf)
		}
	}

	server := "@" + d.Pod.IP.String()
	for _, tc := range []struct {
		args []string
		want string // +short output, or the status
	}{
		{[]string{"deathstar.empire.svc.cluster.local", "A", "+short"}, "10.96.0.80"},
		{[]string{"kubernetes.default.svc.cluster.local", "A", "+short"}, "10.96.0.1"},
		{[]string{"-x", "10.96.0.80", "+short"}, "deathstar.empire.svc.cluster.local."},
		{[]string{"api.example.com", "A", "+short"}, ext.IP.String()},
		{[]string{"nothing.example.org", "A"}, "status: NXDOMAIN"},
		{[]string{"missing.empire.svc.cluster.local", "A"}, "status: NXDOMAIN"},
	} {
		argv := append([]string{"dig", server, "+time=2", "+tries=1"}, tc.args...)
		out, err := client.Exec(ctx, argv...)
		if err != nil {
			t.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: want %q in:\n%s", strings.Join(argv, " "), tc.want, out)
		}
	}
}
