// Command portcullis-agent runs the Portcullis node agent (package
// controllers/agent): it watches pods, namespaces, the policy kinds and
// services, computes identities and map state with the engine, and writes
// them into the pinned BPF datapath of this node.
//
//	portcullis-agent --node-name=NODE --kubeconfig=FILE \
//	    --enforcement-mode=default --bpffs=/sys/fs/bpf --proxy-port=15001
//
// SIGTERM or SIGINT stops reconciling; pinned maps and attached programs
// stay, so the node keeps enforcing the last written policy.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/controllers/agent"
	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/dns"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "portcullis-agent:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run() error {
	host, _ := os.Hostname()
	var (
		cfg       agent.Config
		proxyPort uint
		dnsReject string
		maxIPs    int
	)
	// --kubeconfig is registered on flag.CommandLine by controller-runtime.
	flag.StringVar(&cfg.NodeName, "node-name", envOr("NODE_NAME", strings.ToLower(host)), "This node's name (default $NODE_NAME, else the host name).")
	flag.StringVar(&cfg.EnforcementMode, "enforcement-mode", "default", "Enforcement mode: default, always or never.")
	flag.BoolVar(&cfg.AuditMode, "audit-mode", false, "Report every denial as AUDITED and let the flow pass.")
	flag.StringVar(&cfg.SecretsNamespace, "secrets-namespace", v1alpha1.DefaultSecretsNamespace, "Namespace of the TLS material copies.")
	flag.StringVar(&cfg.SystemNamespace, "system-namespace", envOr("POD_NAMESPACE", v1alpha1.DefaultSystemNamespace), "Namespace of the agent's Lease (default $POD_NAMESPACE, else portcullis-system).")
	flag.StringVar(&cfg.MetricsBindAddress, "metrics-bind-address", ":9962", "Address of the Prometheus metrics endpoint (plain HTTP); 0 disables it.")
	flag.StringVar(&cfg.HealthProbeBindAddress, "health-probe-bind-address", ":9879", "Address of /healthz and /readyz (ready once a sync pass after start has written everything); 0 disables them.")
	flag.StringVar(&cfg.APISocket, "api-socket", agentclient.DefaultSocket, "Unix socket of the local API (portcullis endpoint list, monitor, policy trace --live); empty disables it.")
	flag.StringVar(&cfg.StateDir, "state-dir", "", "Directory of the agent's state files (the names and addresses the DNS proxy learned, restored on start so that connections to them survive a restart); default "+agent.DefaultStateDir+" with the default --bpffs, none with another (an agent with a datapath of its own must not read the node's state).")
	flag.StringVar(&cfg.BPFFS, "bpffs", agent.DefaultBPFFS, "bpf filesystem; pins go to <bpffs>/portcullis (mounted there if it is not a bpffs).")
	flag.Func("bpf-policy-map-max", "Capacity of the BPF policy map (default 65536); a pinned map of another size makes the start fail rather than be wiped, so changing it needs the pins removed.", func(v string) error {
		var n uint32
		if _, err := fmt.Sscan(v, &n); err != nil || n == 0 {
			return fmt.Errorf("want a positive number, got %q", v)
		}
		cfg.PolicyMapSize = n
		return nil
	})
	flag.Func("uplink", "Interface to other nodes (repeatable, or comma-separated): traffic arriving on it for a local pod whose ingress L7 rules select it is redirected to this node's proxy.", func(v string) error {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n == "" {
				return fmt.Errorf("empty interface name in %q", v)
			}
			cfg.Uplinks = append(cfg.Uplinks, n)
		}
		return nil
	})
	flag.UintVar(&proxyPort, "proxy-port", v1alpha1.DefaultProxyPort, "Port of the proxy's transparent listener and of the datapath's redirect entries.")
	flag.IntVar(&cfg.ProxyMaxConnections, "proxy-max-connections", proxy.DefaultMaxConns, "Connections the L7 proxy serves at once; at the limit the oldest one without a request is reset to make room, else new ones are (about 15 KiB and two file descriptors per idle connection).")
	// The DNS proxy's settings, as Cilium's flags.
	flag.StringVar(&dnsReject, "dns-reject-response-code", "refused", "DNS proxy answer to a denied query: refused (REFUSED) or nameError (NXDOMAIN).")
	flag.IntVar(&maxIPs, "tofqdns-max-ips-per-hostname", dns.DefaultMaxIPsPerName, "Addresses kept per toFQDNs name and endpoint; beyond it the oldest is forgotten.")
	cfg.ToFQDNsMinTTL = dns.DefaultMinTTL
	flag.Func("tofqdns-min-ttl", "Shortest time an address learned from a DNS answer stays selected by toFQDNs, whatever the answer's TTL: seconds as in Cilium (3600, the default) or a duration (90s).", func(v string) error {
		if n, err := strconv.Atoi(v); err == nil {
			cfg.ToFQDNsMinTTL = time.Duration(n) * time.Second
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want seconds or a duration, got %q", v)
		}
		cfg.ToFQDNsMinTTL = d
		return nil
	})
	flag.DurationVar(&cfg.DNSHoldTimeout, "dns-proxy-hold-timeout", dns.DefaultHoldTimeout, "Longest time the DNS proxy holds an allowed answer until the datapath allows its addresses; then it is released anyway (and counted).")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if proxyPort == 0 || proxyPort > 65535 {
		return fmt.Errorf("--proxy-port %d out of range", proxyPort)
	}
	cfg.ProxyPort = uint16(proxyPort)
	if cfg.ProxyMaxConnections < 1 {
		return fmt.Errorf("--proxy-max-connections %d: want at least 1", cfg.ProxyMaxConnections)
	}
	if dnsReject != "refused" && dnsReject != "nameError" {
		return fmt.Errorf("--dns-reject-response-code %q: want refused or nameError", dnsReject)
	}
	if maxIPs < 1 {
		return fmt.Errorf("--tofqdns-max-ips-per-hostname %d: want at least 1", maxIPs)
	}
	if cfg.ToFQDNsMinTTL <= 0 {
		return fmt.Errorf("--tofqdns-min-ttl %s: want a positive duration", cfg.ToFQDNsMinTTL)
	}
	if cfg.DNSHoldTimeout <= 0 {
		return fmt.Errorf("--dns-proxy-hold-timeout %s: want a positive duration", cfg.DNSHoldTimeout)
	}
	cfg.DNSRejectResponseCode, cfg.ToFQDNsMaxIPsPerHostname = dnsReject, maxIPs
	rc, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.RESTConfig = rc
	return agent.Run(ctrl.SetupSignalHandler(), cfg)
}
