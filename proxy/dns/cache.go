package dns

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Defaults of the Cache.
const (
	// DefaultMinTTL is the shortest time an address learned from an answer
	// stays selected, whatever the answer's TTL: Cilium's
	// --tofqdns-min-ttl default. Applications keep addresses longer than
	// the TTL says (Java caches them for the life of the JVM by default,
	// connection pools reuse them), and dropping their connections then
	// would be an outage the TTL did not announce.
	DefaultMinTTL = time.Hour
	// DefaultMaxIPsPerName bounds the addresses kept per name and
	// endpoint: Cilium's --tofqdns-max-ips-per-hostname default.
	DefaultMaxIPsPerName = 1000
)

// Cache is what the DNS proxy's answers taught: for each endpoint and
// name, the addresses with their expiry. Names are per endpoint, as in
// Cilium; the engine learns the union over endpoints (Addrs).
type Cache struct {
	minTTL time.Duration
	maxIPs int

	mu sync.Mutex
	// names maps a name to the endpoints that learned it.
	names map[string]map[string]*learned
}

// learned are one endpoint's addresses for one name.
type learned struct {
	ips map[netip.Addr]*ipEntry
}

type ipEntry struct {
	expires time.Time
	// seen is when an answer last named the address: the oldest is
	// evicted first beyond the per-name bound.
	seen time.Time
}

// NewCache returns an empty cache; minTTL and maxIPs of 0 take the
// defaults.
func NewCache(minTTL time.Duration, maxIPs int) *Cache {
	if minTTL <= 0 {
		minTTL = DefaultMinTTL
	}
	if maxIPs <= 0 {
		maxIPs = DefaultMaxIPsPerName
	}
	return &Cache{minTTL: minTTL, maxIPs: maxIPs, names: map[string]map[string]*learned{}}
}

// Update records that endpoint ep (namespace/name) got addrs for name
// with ttl at now. It reports whether the union of name's addresses over
// the endpoints changed (an address is new, or one was evicted), which is
// when the engine must learn it again.
func (c *Cache) Update(ep, name string, addrs []netip.Addr, ttl time.Duration, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.unionLocked(name)
	byEP := c.names[name]
	if byEP == nil {
		byEP = map[string]*learned{}
		c.names[name] = byEP
	}
	l := byEP[ep]
	if l == nil {
		l = &learned{ips: map[netip.Addr]*ipEntry{}}
		byEP[ep] = l
	}
	exp := now.Add(max(ttl, c.minTTL))
	for i, a := range addrs {
		// Answer order breaks ties: the first address is the newest.
		seen := now.Add(-time.Duration(i))
		if e := l.ips[a]; e != nil {
			e.expires = later(e.expires, exp)
			e.seen = seen
			continue
		}
		l.ips[a] = &ipEntry{expires: exp, seen: seen}
	}
	for len(l.ips) > c.maxIPs {
		var oldest netip.Addr
		var at time.Time
		for a, e := range l.ips {
			if !oldest.IsValid() || e.seen.Before(at) {
				oldest, at = a, e.seen
			}
		}
		delete(l.ips, oldest)
	}
	return !sameSet(before, c.unionLocked(name))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Expire forgets the addresses expired at now and returns the names whose
// union changed, sorted. inUse, if set, is asked once with every expired
// address and returns those still in use (open connections): they are
// kept until the next Expire, as Cilium keeps such "zombies".
func (c *Cache) Expire(now time.Time, inUse func(map[netip.Addr]bool) map[netip.Addr]bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keep map[netip.Addr]bool
	if inUse != nil {
		expired := map[netip.Addr]bool{}
		for _, byEP := range c.names {
			for _, l := range byEP {
				for a, e := range l.ips {
					if !now.Before(e.expires) {
						expired[a] = true
					}
				}
			}
		}
		if len(expired) > 0 {
			keep = inUse(expired)
		}
	}
	var changed []string
	for name, byEP := range c.names {
		gone := false
		for ep, l := range byEP {
			for a, e := range l.ips {
				if !now.Before(e.expires) && !keep[a] {
					delete(l.ips, a)
					gone = true
				}
			}
			if len(l.ips) == 0 {
				delete(byEP, ep)
			}
		}
		if len(byEP) == 0 {
			delete(c.names, name)
		}
		if gone {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed
}

// Addrs is the union of name's addresses over the endpoints, sorted.
func (c *Cache) Addrs(name string) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unionLocked(name)
}

func (c *Cache) unionLocked(name string) []netip.Addr {
	set := map[netip.Addr]struct{}{}
	for _, l := range c.names[name] {
		for a := range l.ips {
			set[a] = struct{}{}
		}
	}
	out := make([]netip.Addr, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func sameSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CacheEntry is one learned address, for listings.
type CacheEntry struct {
	// Endpoint is the namespace/name of the endpoint whose lookup taught it.
	Endpoint string
	Name     string
	Addr     netip.Addr
	Expires  time.Time
}

// Entries lists what the cache holds, by name, endpoint and address.
func (c *Cache) Entries() []CacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []CacheEntry
	for name, byEP := range c.names {
		for ep, l := range byEP {
			for a, e := range l.ips {
				out = append(out, CacheEntry{Endpoint: ep, Name: name, Addr: a, Expires: e.expires})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		if x.Endpoint != y.Endpoint {
			return x.Endpoint < y.Endpoint
		}
		return x.Addr.Less(y.Addr)
	})
	return out
}

// Restore puts entries back (those of a state file written before a
// restart), dropping the ones expired at now; it returns the names
// restored.
func (c *Cache) Restore(entries []CacheEntry, now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		if !now.Before(e.Expires) || !e.Addr.IsValid() {
			continue
		}
		byEP := c.names[e.Name]
		if byEP == nil {
			byEP = map[string]*learned{}
			c.names[e.Name] = byEP
		}
		l := byEP[e.Endpoint]
		if l == nil {
			l = &learned{ips: map[netip.Addr]*ipEntry{}}
			byEP[e.Endpoint] = l
		}
		if len(l.ips) >= c.maxIPs {
			continue
		}
		l.ips[e.Addr] = &ipEntry{expires: e.Expires, seen: now}
		if !seen[e.Name] {
			seen[e.Name] = true
			names = append(names, e.Name)
		}
	}
	sort.Strings(names)
	return names
}
