package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// Config configures [Run]; cmd/portcullis-agent fills it from its flags.
type Config struct {
	RESTConfig *rest.Config
	// NodeName is this node; pods with spec.nodeName == NodeName are local.
	NodeName string
	// EnforcementMode is default, always or never.
	EnforcementMode string
	// AuditMode turns every denial on this node into an audited allow.
	AuditMode bool
	// SecretsNamespace holds the TLS material the proxy intercepts with
	// (the operator's copies; the only Secrets the agent reads); ""
	// means portcullis-secrets.
	SecretsNamespace string
	// SystemNamespace holds the agent's Lease; "" means portcullis-system.
	SystemNamespace string
	// MetricsBindAddress and HealthProbeBindAddress; "0" disables.
	MetricsBindAddress, HealthProbeBindAddress string
	// BPFFS is the bpf filesystem; pins go to <BPFFS>/portcullis. If it is
	// not a bpffs, Run mounts one there (root only).
	BPFFS string
	// ProxyPort is the port of redirect entries.
	ProxyPort uint16
	// Uplinks name the node's interfaces to other nodes; from_uplink is
	// attached at their TC ingress so that an ingress L7 rule redirects a
	// remote client's flow to this node's proxy. None: remote clients of
	// an L7 rule are dropped (redirect-unsupported), as on one node.
	Uplinks []string
	// ProxyMaxConnections bounds the connections the L7 proxy serves at
	// once (at the limit the oldest connection without a request is
	// reset to make room, else new ones are, with an event); zero keeps
	// proxy.DefaultMaxConns.
	ProxyMaxConnections int
	// DNSRejectResponseCode answers denied DNS queries: "refused" (also
	// for "") or "nameError" (NXDOMAIN), as Cilium's flag.
	DNSRejectResponseCode string
	// DNSHoldTimeout bounds how long the DNS proxy holds an answer until
	// the datapath allows its addresses; zero: dns.DefaultHoldTimeout.
	DNSHoldTimeout time.Duration
	// ToFQDNsMinTTL is the shortest time a learned address stays selected
	// (zero: dns.DefaultMinTTL, one hour as in Cilium);
	// ToFQDNsMaxIPsPerHostname bounds the addresses per name and endpoint
	// (zero: 1000), the oldest evicted first.
	ToFQDNsMinTTL            time.Duration
	ToFQDNsMaxIPsPerHostname int
	// ToFQDNsInUseWindow: an expired address stays selected while the
	// datapath has seen a packet of a flow to it within this window (zero:
	// DefaultInUseWindow).
	ToFQDNsInUseWindow time.Duration
	// StateDir holds the agent's state files (the names and addresses the
	// DNS proxy learned, restored before the first sync after a restart).
	// "" means DefaultStateDir with the default BPFFS, and no state file
	// with another one (a test's own datapath must not read the node's
	// state).
	StateDir string
	// PolicyMapSize is the policy map's capacity; zero keeps the default
	// (65536). A pinned map of another size makes Run fail: changing it
	// needs the pins removed (and enforcement lapses meanwhile).
	PolicyMapSize uint32
	// LeaseDuration and RenewInterval of the agent's Lease; zero: defaults.
	LeaseDuration, RenewInterval time.Duration
	// OnEvent, if set, is called for every datapath event (after the metric
	// and before the event is published on the agent's monitor hub).
	OnEvent func(bpf.Event)
	// APISocket is the unix socket of the agent's local API (endpoint list,
	// flow events, live trace: package agentclient); "" serves no API. Its
	// directory is created; a socket left by a dead agent is replaced.
	APISocket string
	// Ready, if set, is closed once the first full sync after start is done.
	Ready chan<- struct{}
	// Started, if set, receives the agent once it is built (before the
	// manager starts), e.g. to read its endpoint table.
	Started func(*Agent)
}

// Run runs the agent until ctx is done. On return the pinned maps and the
// attached programs stay: enforcement continues without the agent.
func Run(ctx context.Context, cfg Config) error {
	log := ctrl.Log.WithName("agent")
	if cfg.NodeName == "" {
		return errors.New("agent: no node name")
	}
	if cfg.SystemNamespace == "" {
		cfg.SystemNamespace = v1alpha1.DefaultSystemNamespace
	}
	if cfg.SecretsNamespace == "" {
		cfg.SecretsNamespace = v1alpha1.DefaultSecretsNamespace
	}
	if cfg.BPFFS == "" {
		cfg.BPFFS = DefaultBPFFS
	}
	if cfg.StateDir == "" && cfg.BPFFS == DefaultBPFFS {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = v1alpha1.DefaultProxyPort
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewInterval == 0 {
		cfg.RenewInterval = DefaultRenewInterval
	}
	mode, err := policy.ParseMode(cfg.EnforcementMode)
	if err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("removing the memlock limit: %w", err)
	}
	if err := ensureBPFFS(cfg.BPFFS); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enabling ip_forward: %w", err)
	}
	// The teardown is not kept: redirects must keep working while the agent
	// is away, as the pinned programs do.
	if _, err := bpf.SetupProxyRouting(); err != nil {
		return fmt.Errorf("proxy routing: %w", err)
	}
	port := cfg.ProxyPort
	rules := &ruleTable{}
	dp, err := bpf.Load(bpf.Options{
		PinPath:       filepath.Join(cfg.BPFFS, "portcullis"),
		PolicyMapSize: cfg.PolicyMapSize,
		ProxyPort:     func(*policy.Decision) uint16 { return port },
		RuleID:        rules.id,
	})
	if err != nil {
		return err
	}
	defer dp.Close() // keeps pins and links: enforcement stays

	repo := policy.NewRepository(policy.Options{})
	repo.SetMode(mode, cfg.AuditMode)
	a := &Agent{
		cfg: cfg, repo: repo, dp: dp, rules: rules,
		pods:          map[string]*podRecord{},
		podsByIP:      map[netip.Addr]string{},
		endpoints:     map[string]*EndpointInfo{},
		prevIDs:       map[netip.Addr]uint32{},
		nextID:        1,
		ipcache:       map[netip.Prefix]policy.NumericIdentity{},
		policies:      map[policy.PolicyKey]*policyRecord{},
		services:      map[types.NamespacedName][]ServicePort{},
		trigger:       make(chan struct{}, 1),
		reportTrigger: make(chan struct{}, 1),
		hub:           monitor.NewHub(),
		tls:           newTLSSecrets(),
	}
	prev, err := dp.Endpoints()
	if err != nil {
		return fmt.Errorf("listing pinned endpoints: %w", err)
	}
	for _, e := range prev {
		a.prevIDs[e.IP] = e.ID
		if e.ID >= a.nextID {
			a.nextID = e.ID + 1
		}
	}
	// The pinned ipcache as the previous agent left it: the first sync,
	// which has the whole cluster from the caches (bootstrap), removes
	// the entries of pods, nodes and CIDRs that went away meanwhile.
	if a.ipcache, err = dp.IPCache(); err != nil {
		return err
	}
	a.fqdn = newFQDNLearner(a, cfg.ToFQDNsMinTTL, cfg.ToFQDNsMaxIPsPerHostname)
	if cfg.ToFQDNsInUseWindow > 0 {
		a.fqdn.inUseWindow = cfg.ToFQDNsInUseWindow
	}
	// Before the first sync pass: its ipcache and policy entries keep the
	// addresses learned before the restart.
	var fqdnPath string
	restored := 0
	if cfg.StateDir != "" {
		fqdnPath = filepath.Join(cfg.StateDir, fqdnStateFile)
		if restored, err = a.fqdn.restore(fqdnPath, time.Now()); err != nil {
			return err
		}
	}
	// The proxy listens before the first sync writes a redirect entry.
	if a.proxy, err = a.startProxy(); err != nil {
		return err
	}
	defer a.proxy.stop()
	for _, name := range cfg.Uplinks {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("uplink %s: %w", name, err)
		}
		if err := dp.AttachUplink(l.Attrs().Index); err != nil {
			return fmt.Errorf("uplink %s: %w", name, err)
		}
	}
	log.Info("datapath loaded", "pinPath", filepath.Join(cfg.BPFFS, "portcullis"), "pinnedEndpoints", len(prev), "mode", mode, "audit", cfg.AuditMode, "uplinks", cfg.Uplinks, "fqdnNamesRestored", restored)

	if cfg.Started != nil {
		cfg.Started(a)
	}
	mgr, err := newManager(cfg)
	if err != nil {
		return err
	}
	a.reader = mgr.GetClient()
	a.recorder = mgr.GetEventRecorder("portcullis-agent")
	a.direct, err = client.New(cfg.RESTConfig, client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	// Ready once the datapath holds the state of the whole cluster as the
	// caches saw it at start (a DaemonSet rollout waits for it).
	if err := mgr.AddReadyzCheck("datapath-synced", func(*http.Request) error {
		if !a.synced.Load() {
			return errors.New("the datapath is not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	if err := a.setupReconcilers(mgr); err != nil {
		return err
	}
	if err := mgr.Add(&reporter{a: a}); err != nil {
		return err
	}
	if err := mgr.Add(&syncLoop{a: a}); err != nil {
		return err
	}
	if err := mgr.Add(&leaseHolder{a: a}); err != nil {
		return err
	}
	if err := mgr.Add(&eventReader{a: a}); err != nil {
		return err
	}
	if err := mgr.Add(&fqdnExpiry{l: a.fqdn}); err != nil {
		return err
	}
	if fqdnPath != "" {
		if err := mgr.Add(&fqdnSaver{l: a.fqdn, path: fqdnPath}); err != nil {
			return err
		}
	}
	if cfg.APISocket != "" {
		// Listen before the manager starts, so that a socket in use (another
		// agent) is an error at start and not a log line.
		ln, err := listenAPI(cfg.APISocket)
		if err != nil {
			return err
		}
		if err := mgr.Add(&apiServer{a: a, ln: ln}); err != nil {
			_ = ln.Close()
			return err
		}
	}
	return mgr.Start(ctx)
}

// ensureBPFFS makes sure dir is on a bpf filesystem, mounting one there
// when it is not (as Cilium does).
func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is not a bpf filesystem and mounting one needs root", dir)
	}
	ctrl.Log.WithName("agent").Info("mounting a bpf filesystem", "path", dir)
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs on %s: %w", dir, err)
	}
	return nil
}
