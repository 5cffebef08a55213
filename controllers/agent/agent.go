package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// Defaults of [Config].
const (
	DefaultSystemNamespace  = "portcullis-system"
	DefaultSecretsNamespace = "portcullis-secrets"
	DefaultBPFFS            = "/sys/fs/bpf"
	DefaultProxyPort        = 15001
	DefaultLeaseDuration    = 15 * time.Second
	DefaultRenewInterval    = 5 * time.Second
)

// AuditAnnotation on a Namespace turns its endpoints' denials into audited
// allows.
const AuditAnnotation = "policy.portcullis.dev/audit-mode"

// Endpoint lifecycle states, as Cilium's, plus lockdown.
const (
	StateWaitingForIdentity = "waiting-for-identity"
	StateRegenerating       = "regenerating"
	StateReady              = "ready"
	StateDisconnecting      = "disconnecting"
	// StateLockdown: the endpoint's policy did not fit in the policy map;
	// every packet from and to it is dropped until a later sync succeeds.
	StateLockdown = "lockdown"
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
	// SecretsNamespace holds the TLS material (read by the proxy, which is
	// not wired yet); "" means portcullis-secrets.
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
	// ProxyMaxConnections bounds the connections the L7 proxy serves at
	// once (beyond it new ones are reset with an event); zero keeps
	// proxy.DefaultMaxConns.
	ProxyMaxConnections int
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
	// flow events, live trace: package agentapi); "" serves no API. Its
	// directory is created; a socket left by a dead agent is replaced.
	APISocket string
	// Ready, if set, is closed once the first full sync after start is done.
	Ready chan<- struct{}
	// Started, if set, receives the agent once it is built (before the
	// manager starts), e.g. to read its endpoint table.
	Started func(*Agent)
}

// EndpointInfo is a local endpoint as the agent tracks it.
type EndpointInfo struct {
	Namespace, Name string
	IP              netip.Addr
	// ID is the datapath's endpoint id (kept across restarts).
	ID       uint32
	Identity policy.NumericIdentity
	State    string
	Flags    bpf.EndpointFlags
	IfIndex  int
	// Message says why the endpoint is not ready.
	Message  string
	attached bool
}

type podRecord struct {
	ip     netip.Addr
	local  bool
	labels map[string]string
}

type policyRecord struct {
	obj client.Object
	// inForce is the generation in the repository; realized the one
	// written to the datapath; message the compile or sync error.
	inForce, realized int64
	message           string
	reported          *reportState
}

type reportState struct {
	gen int64
	msg string
}

// Agent is the node agent: reconcilers feed one policy.Repository; the sync
// loop writes its map state and the ipcache into the datapath.
type Agent struct {
	cfg      Config
	repo     *policy.Repository
	dp       *bpf.Datapath
	reader   client.Reader
	direct   client.Client
	recorder events.EventRecorder

	mu        sync.Mutex
	pods      map[string]*podRecord
	podsByIP  map[netip.Addr]string
	endpoints map[string]*EndpointInfo
	prevIDs   map[netip.Addr]uint32
	nextID    uint32
	ipcache   map[netip.Prefix]policy.NumericIdentity
	policies  map[policy.PolicyKey]*policyRecord
	booted    bool
	// syncErr is the first error of the last sync pass, "" if it wrote
	// everything.
	syncErr string

	// rules numbers the rules named by policy entries (bpf.Options.RuleID).
	rules *ruleTable

	// hub carries flow events (datapath verdicts, proxy access records)
	// to followers such as `portcullis monitor`.
	hub *monitor.Hub
	// proxy is the L7 proxy; each complete sync pass publishes a snapshot.
	proxy *nodeProxy

	trigger chan struct{}
	// reportTrigger wakes the reporter (coalesced), so that a slow
	// apiserver never delays the next map write.
	reportTrigger chan struct{}
	// synced is set once a sync pass after start wrote everything.
	synced atomic.Bool
}

// Endpoints lists the local endpoints, sorted by namespace and name.
func (a *Agent) Endpoints() []EndpointInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]EndpointInfo, 0, len(a.endpoints))
	for _, e := range a.endpoints {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Repository is the agent's engine.
func (a *Agent) Repository() *policy.Repository { return a.repo }

// Monitor returns the agent's flow-event hub.
func (a *Agent) Monitor() *monitor.Hub { return a.hub }

func (a *Agent) kick() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
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

// Run runs the agent until ctx is done. On return the pinned maps and the
// attached programs stay: enforcement continues without the agent.
func Run(ctx context.Context, cfg Config) error {
	log := ctrl.Log.WithName("agent")
	if cfg.NodeName == "" {
		return errors.New("agent: no node name")
	}
	if cfg.SystemNamespace == "" {
		cfg.SystemNamespace = DefaultSystemNamespace
	}
	if cfg.SecretsNamespace == "" {
		cfg.SecretsNamespace = DefaultSecretsNamespace
	}
	if cfg.BPFFS == "" {
		cfg.BPFFS = DefaultBPFFS
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = DefaultProxyPort
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
		trigger:       make(chan struct{}, 1),
		reportTrigger: make(chan struct{}, 1),
		hub:           monitor.NewHub(),
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
	// The proxy listens before the first sync writes a redirect entry.
	if a.proxy, err = a.startProxy(); err != nil {
		return err
	}
	defer a.proxy.stop()
	log.Info("datapath loaded", "pinPath", filepath.Join(cfg.BPFFS, "portcullis"), "pinnedEndpoints", len(prev), "mode", mode, "audit", cfg.AuditMode)

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

// endpointFlags are the datapath flags for an endpoint's policy.
func endpointFlags(pol *policy.EndpointPolicy) bpf.EndpointFlags {
	var f bpf.EndpointFlags
	if pol.Enforced[policy.Ingress] {
		f |= bpf.FlagEnforceIngress
	}
	if pol.Enforced[policy.Egress] {
		f |= bpf.FlagEnforceEgress
	}
	for _, s := range pol.State {
		if s != nil && s.Audit {
			f |= bpf.FlagAudit
		}
	}
	return f
}

// bootstrap feeds the repository from the synced caches before the first
// sync, so that the first write after a restart already has every policy
// (no window with a partial policy set), and detaches the pinned endpoints
// whose pods are gone.
func (a *Agent) bootstrap(ctx context.Context) error {
	var nss corev1.NamespaceList
	if err := a.reader.List(ctx, &nss); err != nil {
		return err
	}
	for _, ns := range nss.Items {
		if err := a.applyNamespace(ctx, ns.Name); err != nil {
			return err
		}
	}
	for _, k := range policyKinds {
		list := k.newList()
		if err := a.reader.List(ctx, list); err != nil {
			return err
		}
		for _, o := range k.items(list) {
			if err := a.applyPolicy(ctx, k, client.ObjectKeyFromObject(o)); err != nil {
				return err
			}
		}
	}
	var nodes corev1.NodeList
	if err := a.reader.List(ctx, &nodes); err != nil {
		return err
	}
	for _, n := range nodes.Items {
		if err := a.applyNode(ctx, n.Name); err != nil {
			return err
		}
	}
	var svcs corev1.ServiceList
	if err := a.reader.List(ctx, &svcs); err != nil {
		return err
	}
	for _, s := range svcs.Items {
		if err := a.applyService(ctx, client.ObjectKeyFromObject(&s)); err != nil {
			return err
		}
	}
	var pods corev1.PodList
	if err := a.reader.List(ctx, &pods); err != nil {
		return err
	}
	for _, p := range pods.Items {
		if err := a.applyPod(ctx, client.ObjectKeyFromObject(&p)); err != nil {
			return err
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	live := map[netip.Addr]bool{}
	for _, p := range a.pods {
		if p.local {
			live[p.ip] = true
		}
	}
	prev, err := a.dp.Endpoints()
	if err != nil {
		return err
	}
	for _, e := range prev {
		if live[e.IP] {
			// Identity numbers are not kept across restarts: until the
			// first sync has rewritten the ipcache and this endpoint's
			// entries, an old entry could meet a new number. Lock the
			// enforcing endpoints down for that moment (fail closed);
			// the first sync lifts it.
			if e.Flags&(bpf.FlagEnforceIngress|bpf.FlagEnforceEgress|bpf.FlagAudit) != 0 {
				if err := a.dp.SetEndpointFlags(e.IP, e.Flags|bpf.FlagLockdown); err != nil {
					return err
				}
			}
			continue
		}
		ctrl.Log.WithName("agent").Info("detaching the endpoint of a pod that is gone", "ip", e.IP, "id", e.ID)
		if err := a.dp.DetachEndpoint(e.IP); err != nil {
			return err
		}
		if err := a.dp.SyncEndpointPolicy(e.ID, nil); err != nil {
			return err
		}
		_ = a.dp.DeleteIPCache(netip.PrefixFrom(e.IP, 32))
	}
	a.booted = true
	return nil
}

// sync writes the repository's state into the datapath: ipcache additions
// first, then each local endpoint's policy entries (the diff writer writes
// only changed keys), its attachment and flags, then ipcache removals. It
// reports whether everything was written.
func (a *Agent) sync(ctx context.Context) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	log := ctrl.Log.WithName("agent")
	ok := true
	firstErr := ""
	note := func(what string, err error) {
		ok = false
		if firstErr == "" {
			firstErr = what + ": " + err.Error()
		}
	}

	want := map[netip.Prefix]policy.NumericIdentity{}
	for _, ident := range a.repo.Identities() {
		if !ident.IsCIDR() || ident.ID == policy.IdentityWorld {
			continue
		}
		for _, p := range ident.Prefixes {
			if p.Addr().Is4() {
				want[p.Masked()] = ident.ID
			}
		}
	}
	// Node addresses (host, remote-node) before pods: a pod's address wins.
	for ip, id := range a.repo.NodeAddrs() {
		if ip.Is4() {
			want[netip.PrefixFrom(ip, 32)] = id
		}
	}
	for _, p := range a.pods {
		want[netip.PrefixFrom(p.ip, 32)] = a.repo.IdentityOfIP(p.ip).ID
	}
	pols := make(map[*EndpointInfo]*policy.EndpointPolicy, len(a.endpoints))
	for _, ep := range a.endpoints {
		pol := a.repo.EndpointPolicy(ep.Namespace, ep.Name)
		if pol == nil {
			ep.State = StateWaitingForIdentity
			continue
		}
		ep.Identity = pol.Identity.ID
		if ep.State != StateLockdown {
			ep.State = StateRegenerating
		}
		err := a.dp.SyncEndpointPolicy(ep.ID, pol)
		if errors.Is(err, bpf.ErrMapFull) {
			note("endpoint "+ep.Namespace+"/"+ep.Name+" in lockdown", err)
			if ep.State != StateLockdown {
				lockdowns.Inc()
				a.podEvent(ctx, ep, corev1.EventTypeWarning, "Lockdown", "%v: every packet from and to the pod is dropped until its policy fits", err)
			}
			ep.State, ep.Message = StateLockdown, err.Error()
			if !ep.attached {
				if err := a.attach(ep, bpf.FlagLockdown); err != nil {
					ep.Message = err.Error()
				}
			}
			continue
		}
		if err != nil {
			note("writing the policy of "+ep.Namespace+"/"+ep.Name, err)
			ep.Message = err.Error()
			log.Error(err, "writing endpoint policy", "pod", ep.Namespace+"/"+ep.Name)
			continue
		}
		flags := endpointFlags(pol)
		if !ep.attached {
			err = a.attach(ep, flags)
		} else if flags != ep.Flags || ep.State == StateLockdown {
			err = a.dp.SetEndpointFlags(ep.IP, flags)
		}
		if err != nil {
			note("attaching "+ep.Namespace+"/"+ep.Name, err)
			ep.Message = err.Error()
			log.Error(err, "attaching endpoint", "pod", ep.Namespace+"/"+ep.Name)
			continue
		}
		if ep.State == StateLockdown {
			a.podEvent(ctx, ep, corev1.EventTypeNormal, "LockdownLifted", "the pod's policy fits in the policy map again")
		}
		ep.Flags, ep.State, ep.Message = flags, StateReady, ""
		pols[ep] = pol
	}

	// The ipcache changes after the policies: a new identity's entries are
	// in the policy map before any address maps to it, so a new peer never
	// meets the wildcard entries meant for identities no rule names (which
	// may allow what a rule denies to it).
	for p, id := range want {
		if have, found := a.ipcache[p]; found && have == id {
			continue
		}
		if err := a.dp.SetIPCache(p, id); err != nil {
			log.Error(err, "writing the ipcache", "prefix", p)
			note("writing the ipcache", err)
			continue
		}
		a.ipcache[p] = id
	}

	for p := range a.ipcache {
		if _, found := want[p]; found {
			continue
		}
		if err := a.dp.DeleteIPCache(p); err != nil {
			log.Error(err, "deleting from the ipcache", "prefix", p)
			note("deleting from the ipcache", err)
			continue
		}
		delete(a.ipcache, p)
	}

	a.syncErr = firstErr
	if ok {
		for _, rec := range a.policies {
			rec.realized = rec.inForce
		}
	}
	a.publishProxySnapshotLocked(pols)
	a.updateGaugesLocked()
	return ok
}

func (a *Agent) attach(ep *EndpointInfo, flags bpf.EndpointFlags) error {
	ifindex, err := bpf.HostInterface(ep.IP)
	if err != nil {
		return err
	}
	if err := a.dp.AttachEndpoint(ifindex, ep.IP, ep.ID, flags); err != nil {
		return err
	}
	ep.IfIndex, ep.attached, ep.Flags = ifindex, true, flags
	return nil
}

func (a *Agent) podEvent(ctx context.Context, ep *EndpointInfo, typ, reason, format string, args ...any) {
	if a.recorder == nil {
		return
	}
	var pod corev1.Pod
	if err := a.reader.Get(ctx, client.ObjectKey{Namespace: ep.Namespace, Name: ep.Name}, &pod); err != nil {
		return
	}
	a.recorder.Eventf(&pod, nil, typ, reason, "Regenerate", format, args...)
}

// syncLoop bootstraps and then syncs on every change, reporting after.
type syncLoop struct{ a *Agent }

func (s *syncLoop) Start(ctx context.Context) error {
	a := s.a
	log := ctrl.Log.WithName("agent")
	for {
		err := a.bootstrap(ctx)
		if err == nil {
			break
		}
		log.Error(err, "bootstrap")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	ready := a.cfg.Ready
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		ok := a.sync(ctx)
		if ok {
			a.synced.Store(true)
		}
		if ok && ready != nil {
			close(ready)
			ready = nil
		}
		a.kickReport()
		if !ok {
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.trigger:
		case <-retry.C:
		}
	}
}
