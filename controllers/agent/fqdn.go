package agent

import (
	"context"
	"net/netip"
	"sync"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"portcullis.dev/portcullis/proxy/dns"
)

// fqdnLearner is the agent's side of the DNS proxy: it takes what allowed
// answers teach (dns.Observer), keeps it per endpoint and name in a
// dns.Cache, feeds the union of each name's addresses to the engine
// (Repository.ObserveDNS) and waits until a sync pass has written the
// policy entries and ipcache entries that follow, so that the proxy
// releases the answer only when the client's first connection to a new
// address is allowed.
type fqdnLearner struct {
	a     *Agent
	cache *dns.Cache
	// mu orders cache updates with the engine's: two answers for one name
	// must not leave the engine with the older union.
	mu sync.Mutex
	// changedRev is the repository revision of the last change made here;
	// an answer that taught nothing new still waits until it is synced (an
	// earlier hold for the same address may have run out).
	changedRev uint64
	// dirty asks the state file's saver for a write.
	dirty chan struct{}
	// inUseWindow: see DefaultInUseWindow.
	inUseWindow time.Duration
}

func newFQDNLearner(a *Agent, minTTL time.Duration, maxIPs int) *fqdnLearner {
	return &fqdnLearner{a: a, cache: dns.NewCache(minTTL, maxIPs), dirty: make(chan struct{}, 1), inUseWindow: DefaultInUseWindow}
}

// Observe implements dns.Observer.
func (l *fqdnLearner) Observe(ctx context.Context, o dns.Observation) ([]string, error) {
	var names []string
	for _, n := range o.Names {
		if len(l.a.repo.FQDNSelectors(o.Identity, n)) > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	ep := o.Endpoint.Namespace + "/" + o.Endpoint.Name
	now := time.Now()
	l.mu.Lock()
	changed := false
	for _, n := range names {
		if l.cache.Update(ep, n, o.Addrs, o.TTL, now) {
			l.a.repo.ObserveDNS(n, l.cache.Addrs(n))
			changed = true
		}
	}
	if changed {
		l.changedRev = l.a.repo.Revision()
		l.changed()
	}
	rev := l.changedRev
	l.mu.Unlock()
	return names, l.a.waitSynced(ctx, rev)
}

// updateGauges sets portcullis_fqdn_learned from the cache.
func (l *fqdnLearner) updateGauges() {
	names := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for _, e := range l.cache.Entries() {
		names[e.Name], addrs[e.Addr] = true, true
	}
	FQDNLearned.WithLabelValues("names").Set(float64(len(names)))
	FQDNLearned.WithLabelValues("addresses").Set(float64(len(addrs)))
}

// DefaultInUseWindow is how recently the datapath must have seen a
// packet of a flow to an expired address for it to count as in use (the
// conntrack entries of closed connections linger until the LRU evicts
// them, so "has an entry" would keep every address forever).
const DefaultInUseWindow = time.Minute

// inUse returns the expired addresses that flows still use, by the
// datapath's conntrack.
func (l *fqdnLearner) inUse(expired map[netip.Addr]bool) map[netip.Addr]bool {
	if l.a.dp == nil {
		return nil
	}
	used, err := l.a.dp.RecentDestinations(expired, l.inUseWindow)
	if err != nil {
		ctrl.Log.WithName("fqdn").Error(err, "finding the connections to expired toFQDNs addresses: they are forgotten")
		return nil
	}
	return used
}

// expire forgets what has expired, except addresses connections still
// use, and teaches the engine the names whose addresses changed.
func (l *fqdnLearner) expire(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := l.cache.Expire(now, l.inUse)
	for _, n := range names {
		l.a.repo.ObserveDNS(n, l.cache.Addrs(n))
	}
	if len(names) > 0 {
		l.changedRev = l.a.repo.Revision()
		l.a.kick()
		l.changed()
	}
}

// fqdnExpiry runs the learner's expiry every second.
type fqdnExpiry struct{ l *fqdnLearner }

func (e *fqdnExpiry) Start(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			e.l.expire(now)
		}
	}
}

// FQDNCache lists what the DNS proxy's answers taught, by name, endpoint
// and address.
func (a *Agent) FQDNCache() []dns.CacheEntry {
	if a.fqdn == nil {
		return nil
	}
	return a.fqdn.cache.Entries()
}

// syncNotifier tells waiters which repository revision the last sync pass
// wrote.
type syncNotifier struct {
	mu   sync.Mutex
	rev  uint64
	done chan struct{}
}

// passed records that a pass wrote the repository as of rev.
func (n *syncNotifier) passed(rev uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if rev > n.rev {
		n.rev = rev
	}
	if n.done != nil {
		close(n.done)
	}
	n.done = make(chan struct{})
}

func (n *syncNotifier) state() (uint64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		n.done = make(chan struct{})
	}
	return n.rev, n.done
}

// waitSynced returns once a sync pass has written the repository as of
// revision rev (asking for one), or with ctx's error.
func (a *Agent) waitSynced(ctx context.Context, rev uint64) error {
	for {
		have, done := a.syncs.state()
		if have >= rev {
			return nil
		}
		a.kick()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
