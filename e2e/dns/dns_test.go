package dns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/e2e/internal/harness"
	"portcullis.dev/portcullis/e2e/internal/nodelock"
	"portcullis.dev/portcullis/internal/workloads"
	"portcullis.dev/portcullis/monitor"
)

func TestMain(m *testing.M) {
	workloads.RunIfChild()
	ctrl.SetLogger(logr.Discard())
	// Node-wide state (the proxy's ip rule) is shared with the other e2e
	// packages that go test runs in parallel: one at a time.
	if os.Geteuid() == 0 {
		release, err := nodelock.Acquire()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		code := m.Run()
		release()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// mediabotPolicy is Cilium's DNS-based policy with example.com names: the
// mediabot may look up *.example.com through kube-dns (UDP and TCP), and
// connect on 443 to the addresses api.example.com and h*.example.com
// resolved to.
const mediabotPolicy = `
apiVersion: policy.portcullis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: mediabot-fqdn, namespace: default}
spec:
  endpointSelector:
    matchLabels: {org: alliance, class: mediabot}
  egress:
  - toEndpoints:
    - matchLabels:
        "k8s:io.kubernetes.pod.namespace": kube-system
        "k8s:k8s-app": kube-dns
    toPorts:
    - ports:
      - {port: "53", protocol: ANY}
      rules:
        dns:
        - matchPattern: "*.example.com"
  - toFQDNs:
    - matchName: "api.example.com"
    - matchPattern: "h*.example.com"
    toPorts:
    - ports:
      - {port: "443", protocol: TCP}
`

// TestMediabot is the DNS-based policy end to end, through the BPF
// redirect: the mediabot's lookups (to kube-dns' ClusterIP, translated
// to CoreDNS) are judged by the DNS proxy, and the answers open
// api.example.com's address on 443 before the client gets them.
func TestMediabot(t *testing.T) {
	e := newEnv(t)
	api := e.addHTTPHost("api.example.com")
	support := e.addHTTPHost("support.example.com")
	other := e.addHTTPHost("www.example.org")
	// Hosts whose first lookups measure the hold: each teaches a new
	// address.
	const holdHosts = 20
	for i := range holdHosts {
		if _, err := e.c.AddHost(fmt.Sprintf("h%02d.example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	bot := e.addPod("default", "mediabot", map[string]string{"org": "alliance", "class": "mediabot"})
	e.startAgent(agent.Config{})
	var p v1alpha1.TrafficPolicy
	if err := yaml.UnmarshalStrict([]byte(mediabotPolicy), &p); err != nil {
		t.Fatal(err)
	}
	if err := e.k8s.Create(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	harness.WaitProgrammed(t, e.c, e.k8s, &p)

	t.Run("an address not looked up is dropped", func(t *testing.T) {
		if code, msg := curl(t, bot, fmt.Sprintf("http://%s:443/v1/", api.IP)); code != 0 {
			t.Fatalf("curl to %s before any lookup: HTTP %d, want no connection (%s)", api.IP, code, msg)
		}
	})
	t.Run("the first connection after the lookup passes", func(t *testing.T) {
		// curl resolves the name itself and connects at once: the answer
		// was held until the address was allowed, so its first SYN passes
		// (a dropped one would be retransmitted after a second, hiding the
		// race from curl but not from the drop count and the time).
		dst := netip.AddrPortFrom(api.IP, 443)
		before := e.dropsTo(dst)
		start := time.Now()
		if code, msg := curl(t, bot, "http://api.example.com:443/v1/"); code != 200 {
			t.Fatalf("curl http://api.example.com:443/v1/: HTTP %d (%s), want 200", code, msg)
		}
		if took := time.Since(start); took > 900*time.Millisecond {
			t.Errorf("curl took %s: a SYN was retransmitted", took)
		}
		// Events reach the agent's reader asynchronously.
		time.Sleep(200 * time.Millisecond)
		if n := e.dropsTo(dst) - before; n != 0 {
			t.Errorf("%d packets to %s dropped during the first connection, want none", n, dst)
		}
		ev := e.dnsEvent(t, "api.example.com.", "A", monitor.VerdictForwarded)
		if ev.Policy != "TrafficPolicy default/mediabot-fqdn" || strings.Join(ev.L7.DNS.Answers, ",") != api.IP.String() ||
			strings.Join(ev.L7.DNS.Observed, ",") != "api.example.com" || ev.Protocol != "UDP" || ev.Source.Pod != "mediabot" {
			t.Errorf("event %+v %+v: want UDP from mediabot, the policy, the answer %s observed for api.example.com", ev, *ev.L7.DNS, api.IP)
		}
	})
	for _, tc := range []struct {
		name, qname, status string
		args                []string
	}{
		{"allowed over UDP", "api.example.com", "NOERROR", nil},
		{"allowed over TCP", "api.example.com", "NOERROR", []string{"+tcp"}},
		{"a name outside the pattern is refused", "www.example.org", "REFUSED", nil},
		{"refused over TCP", "www.example.org", "REFUSED", []string{"+tcp"}},
		{"the pattern's parent is refused", "example.com", "REFUSED", nil},
		{"allowed by the pattern, not by toFQDNs", "support.example.com", "NOERROR", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dig(t, bot, append([]string{tc.qname, "A"}, tc.args...)...)
			if a.Status != tc.status {
				t.Fatalf("dig %s: status %q, want %s\n%s", tc.qname, a.Status, tc.status, a.Output)
			}
			if tc.status == "NOERROR" && len(a.Addrs) != 1 {
				t.Errorf("dig %s: addresses %v, want the host's", tc.qname, a.Addrs)
			}
		})
	}
	t.Run("a refused name's address stays dropped", func(t *testing.T) {
		if code, _ := curl(t, bot, fmt.Sprintf("http://%s:443/v1/", other.IP)); code != 0 {
			t.Errorf("curl to www.example.org's %s: HTTP %d, want no connection", other.IP, code)
		}
	})
	t.Run("a name toFQDNs does not select stays dropped", func(t *testing.T) {
		if code, _ := curl(t, bot, "http://support.example.com:443/v1/"); code != 0 {
			t.Errorf("curl http://support.example.com:443/v1/ (%s): HTTP %d, want no connection", support.IP, code)
		}
	})
	t.Run("holds", func(t *testing.T) {
		var holds []time.Duration
		for i := range holdHosts {
			name := fmt.Sprintf("h%02d.example.com", i)
			if a := dig(t, bot, name, "A"); a.Status != "NOERROR" {
				t.Fatalf("dig %s: %q", name, a.Status)
			}
			ev := e.dnsEvent(t, name+".", "A", monitor.VerdictForwarded)
			if strings.Contains(ev.Reason, "hold ran out") || ev.L7.DNS.Hold == 0 {
				t.Errorf("%s: hold %s, reason %q: want a hold that did not run out", name, ev.L7.DNS.Hold, ev.Reason)
			}
			holds = append(holds, ev.L7.DNS.Hold)
		}
		slices.Sort(holds)
		t.Logf("holds of %d first lookups (answer → datapath written): p50 %s, p90 %s, max %s", len(holds),
			holds[len(holds)/2].Round(time.Microsecond), holds[len(holds)*9/10].Round(time.Microsecond), holds[len(holds)-1].Round(time.Microsecond))
	})
	t.Run("fqdn cache list", func(t *testing.T) {
		es, err := agentclient.NewClient(e.apiSocket).FQDNCache(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, c := range es {
			if c.Name == "support.example.com" || c.Name == "www.example.org" {
				t.Errorf("cache lists %s, which no toFQDNs selector takes", c.Name)
			}
			if c.Name == "api.example.com" {
				found = true
				if c.Endpoint != "default/mediabot" || c.IP != api.IP.String() || c.TTL < 3500 {
					t.Errorf("api.example.com entry %+v: want default/mediabot, %s, about an hour left (the minimum TTL)", c, api.IP)
				}
			}
		}
		if !found || len(es) != 1+holdHosts {
			t.Errorf("cache %+v: want api.example.com and the %d h*.example.com names", es, holdHosts)
		}
	})
	t.Run("only names toFQDNs selects are learned", func(t *testing.T) {
		ev := e.dnsEvent(t, "support.example.com.", "A", monitor.VerdictForwarded)
		if len(ev.L7.DNS.Observed) != 0 || strings.Join(ev.L7.DNS.Answers, ",") != support.IP.String() {
			t.Errorf("support.example.com: answers %v observed %v, want %s and nothing learned", ev.L7.DNS.Answers, ev.L7.DNS.Observed, support.IP)
		}
		ev = e.dnsEvent(t, "www.example.org.", "A", monitor.VerdictDenied)
		if ev.L7.DNS.RCode != "REFUSED" || !strings.Contains(ev.Reason, "no DNS rule of the egress policy of default/mediabot allows www.example.org.") {
			t.Errorf("www.example.org denial: %+v %+v", ev, *ev.L7.DNS)
		}
	})
}
