package agent

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
)

// Defaults of [Config]; the namespaces and the proxy port default to
// v1alpha1's well-known ones.
const (
	DefaultBPFFS         = "/sys/fs/bpf"
	DefaultStateDir      = "/var/run/portcullis"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewInterval = 5 * time.Second
)

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
	obj v1alpha1.Policy
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
	// services are the ClusterIP ports programmed for each Service.
	services map[types.NamespacedName][]ServicePort
	booted   bool
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
	// tls holds the TLS material the proxy intercepts with (the
	// operator's copies in the secrets namespace); secretsMu serializes
	// its updates.
	tls       *tlsSecrets
	secretsMu sync.Mutex
	// fqdn learns toFQDNs addresses from the DNS proxy's answers; syncs
	// tells it which revision the datapath holds.
	fqdn  *fqdnLearner
	syncs syncNotifier

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
