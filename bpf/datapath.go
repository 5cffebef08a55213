package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
	"portcullis.dev/portcullis/policy"
)

// DefaultPinPath is where the agent pins maps and links.
const DefaultPinPath = "/sys/fs/bpf/portcullis"

// DefaultProxyPort is the proxy port of redirects when Options.ProxyPort is nil.
const DefaultProxyPort = v1alpha1.DefaultProxyPort

// ErrMapFull is returned by SyncEndpointPolicy when the endpoint's entries
// do not fit in the policy map. The endpoint has then been put in lockdown.
var ErrMapFull = errors.New("bpf: policy map full")

// ErrNotIPv4 is returned for IPv6 addresses and prefixes (not implemented).
var ErrNotIPv4 = errors.New("bpf: only IPv4 is implemented")

// Options configure Load. The zero value loads unpinned maps of default size.
type Options struct {
	// PinPath is the bpffs directory that maps and links are pinned in
	// (DefaultPinPath for the agent). Maps already pinned there are reused,
	// not wiped. Empty: nothing is pinned, and Close detaches everything.
	PinPath string
	// Map sizes; zero keeps the defaults of datapath.c (policy 65536,
	// ipcache 65536, endpoints 4096, conntrack 262144, events 1 MiB;
	// services (one entry per port and backend) 65536, backends 65536,
	// per-connection Service state 262144).
	PolicyMapSize, IPCacheSize, EndpointsSize, ConntrackSize, EventsBytes uint32
	ServicesSize, BackendsSize, LBFlowsSize                               uint32
	// RuleID numbers the rule that decided an entry, for events; nil gives 0.
	RuleID func(policy.RuleRef) uint32
	// ProxyPort is the proxy port of a redirect entry; nil gives DefaultProxyPort.
	ProxyPort func(*policy.Decision) uint16
}

// Datapath is the loaded programs and maps. Its methods are safe for
// concurrent use.
type Datapath struct {
	mu   sync.Mutex
	opts Options
	objs datapathObjects
	// links are the attachments this process holds, by interface.
	links map[int]*attachment
	// uplinks are the from_uplink attachments this process holds.
	uplinks map[int]link.Link
	// policy mirrors the policy map's entries per endpoint id.
	policy      map[uint32]map[policyKey]policyValue
	policyCount int
	policyMax   int
	// services mirrors the service and backend maps.
	services      map[ServiceKey]*svcState
	nextServiceID uint16
	nextBackendID uint32
	closed        bool
}

type attachment struct {
	from, to link.Link // TCX links; nil with clsact
	clsact   bool
}

// Load loads the programs and creates (or reuses pinned) maps.
func Load(opts Options) (*Datapath, error) {
	spec, err := loadDatapath()
	if err != nil {
		return nil, fmt.Errorf("loading spec: %w", err)
	}
	sizes := map[string]uint32{"policy": opts.PolicyMapSize, "ipcache": opts.IPCacheSize,
		"endpoints": opts.EndpointsSize, "conntrack": opts.ConntrackSize, "events": opts.EventsBytes,
		"services": opts.ServicesSize, "backends": opts.BackendsSize, "lb_flows": opts.LBFlowsSize}
	for name, n := range sizes {
		ms := spec.Maps[name]
		if n != 0 {
			ms.MaxEntries = n
		}
		if opts.PinPath != "" {
			ms.Pinning = ebpf.PinByName
		}
	}
	if opts.PinPath != "" {
		if err := os.MkdirAll(filepath.Join(opts.PinPath, "links"), 0o700); err != nil {
			return nil, fmt.Errorf("creating pin path: %w", err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(opts.PinPath, &st); err != nil {
			return nil, fmt.Errorf("statfs %s: %w", opts.PinPath, err)
		}
		if st.Type != unix.BPF_FS_MAGIC {
			return nil, fmt.Errorf("pin path %s is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)", opts.PinPath)
		}
	}
	d := &Datapath{opts: opts, links: map[int]*attachment{}, uplinks: map[int]link.Link{}, policy: map[uint32]map[policyKey]policyValue{},
		services: map[ServiceKey]*svcState{}, policyMax: int(spec.Maps["policy"].MaxEntries)}
	if err := spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinPath}}); err != nil {
		// ebpf.ErrMapIncompatible: a pinned map from another layout; the
		// caller decides whether to Remove it (enforcement would lapse).
		return nil, fmt.Errorf("loading objects: %w", err)
	}
	// Reconcile with what pinned maps already hold.
	var k policyKey
	var v policyValue
	it := d.objs.Policy.Iterate()
	for it.Next(&k, &v) {
		m := d.policy[k.EpId]
		if m == nil {
			m = map[policyKey]policyValue{}
			d.policy[k.EpId] = m
		}
		m[k] = v
		d.policyCount++
	}
	if err := it.Err(); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("reading pinned policy map: %w", err)
	}
	if err := d.loadServices(); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("reading pinned service maps: %w", err)
	}
	return d, nil
}

// Close releases the objects. Pinned maps and links stay, so enforcement
// continues; without pinning the programs are detached.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for ifindex, a := range d.links {
		if a.clsact && d.opts.PinPath == "" {
			errs = append(errs, detachClsact(ifindex))
		}
		for _, l := range []link.Link{a.from, a.to} {
			if l != nil {
				errs = append(errs, l.Close())
			}
		}
	}
	d.links = map[int]*attachment{}
	for _, l := range d.uplinks {
		errs = append(errs, l.Close())
	}
	d.uplinks = map[int]link.Link{}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// Remove detaches every program this datapath attached or finds pinned,
// unpins the maps and closes everything: the teardown of a node.
func (d *Datapath) Remove() error {
	d.mu.Lock()
	var errs []error
	for ifindex := range d.links {
		errs = append(errs, d.detachLocked(ifindex))
	}
	if d.opts.PinPath != "" {
		entries, _ := os.ReadDir(filepath.Join(d.opts.PinPath, "links"))
		for _, e := range entries {
			p := filepath.Join(d.opts.PinPath, "links", e.Name())
			if l, err := link.LoadPinnedLink(p, nil); err == nil {
				errs = append(errs, l.Unpin(), l.Close())
			} else {
				errs = append(errs, os.Remove(p))
			}
		}
	}
	d.mu.Unlock()
	errs = append(errs, d.Unpin(), d.Close())
	return errors.Join(errs...)
}

// Unpin removes the maps' pins and the pin directory (if empty); the maps
// live on while this process or attached programs hold them.
func (d *Datapath) Unpin() error {
	if d.opts.PinPath == "" {
		return nil
	}
	var errs []error
	for _, m := range []*ebpf.Map{d.objs.Policy, d.objs.Ipcache, d.objs.Endpoints, d.objs.Conntrack, d.objs.Events,
		d.objs.Services, d.objs.Backends, d.objs.LbFlows} {
		if m.IsPinned() {
			errs = append(errs, m.Unpin())
		}
	}
	_ = os.Remove(filepath.Join(d.opts.PinPath, "links"))
	_ = os.Remove(d.opts.PinPath)
	return errors.Join(errs...)
}

// SetIPCache maps an IPv4 prefix to a security identity.
func (d *Datapath) SetIPCache(prefix netip.Prefix, id policy.NumericIdentity) error {
	k, err := ipcacheKey(prefix)
	if err != nil {
		return err
	}
	v := uint32(id)
	if err := d.objs.Ipcache.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("ipcache %s: %w", prefix, err)
	}
	return nil
}

// DeleteIPCache removes a prefix; a missing prefix is not an error.
func (d *Datapath) DeleteIPCache(prefix netip.Prefix) error {
	k, err := ipcacheKey(prefix)
	if err != nil {
		return err
	}
	if err := d.objs.Ipcache.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ipcache %s: %w", prefix, err)
	}
	return nil
}

// IPCache returns the ipcache's entries: after a restart, the pinned map's
// as the previous agent left it.
func (d *Datapath) IPCache() (map[netip.Prefix]policy.NumericIdentity, error) {
	return readIPCache(d.objs.Ipcache)
}

// ReadPinnedIPCache returns the entries of the ipcache pinned under
// pinPath (an agent's <bpffs>/portcullis) without loading the datapath:
// what that node's programs look sources up in.
func ReadPinnedIPCache(pinPath string) (map[netip.Prefix]policy.NumericIdentity, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, "ipcache"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("opening the pinned ipcache: %w", err)
	}
	defer m.Close()
	return readIPCache(m)
}

func readIPCache(m *ebpf.Map) (map[netip.Prefix]policy.NumericIdentity, error) {
	out := map[netip.Prefix]policy.NumericIdentity{}
	var k datapathIpcacheKey
	var v uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[netip.PrefixFrom(u32Addr(k.Addr), int(k.Prefixlen))] = policy.NumericIdentity(v)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the ipcache: %w", err)
	}
	return out, nil
}

func ipcacheKey(prefix netip.Prefix) (datapathIpcacheKey, error) {
	if !prefix.Addr().Is4() {
		return datapathIpcacheKey{}, fmt.Errorf("%s: %w", prefix, ErrNotIPv4)
	}
	p := prefix.Masked()
	return datapathIpcacheKey{Prefixlen: uint32(p.Bits()), Addr: addrU32(p.Addr())}, nil
}

// addrU32 is an IPv4 address as the uint32 whose little-endian memory holds
// it in network order.
func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

// SyncEndpointPolicy makes the policy map hold exactly ep's entries for
// the endpoint id, writing only the differences: new and changed keys
// first, then stale keys are deleted, so no lookup ever misses in between.
// A nil ep removes the endpoint's entries. If the entries would not fit,
// every endpoint with this id is put in lockdown and ErrMapFull returned;
// the agent clears the lockdown with SetEndpointFlags after a later
// successful sync.
func (d *Datapath) SyncEndpointPolicy(epID uint32, ep *policy.EndpointPolicy) error {
	ruleID := d.opts.RuleID
	if ruleID == nil {
		ruleID = func(policy.RuleRef) uint32 { return 0 }
	}
	proxyPort := d.opts.ProxyPort
	if proxyPort == nil {
		proxyPort = func(*policy.Decision) uint16 { return DefaultProxyPort }
	}
	want := policyEntries(epID, ep, ruleID, proxyPort)

	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.policy[epID]
	if cur == nil {
		cur = map[policyKey]policyValue{}
		d.policy[epID] = cur
	}
	var addKeys []policyKey
	var addVals []policyValue
	added := 0
	for k, v := range want {
		old, ok := cur[k]
		if ok && old == v {
			continue
		}
		if !ok {
			added++
		}
		addKeys = append(addKeys, k)
		addVals = append(addVals, v)
	}
	if d.policyCount+added > d.policyMax {
		return d.mapFullLocked(epID, fmt.Errorf("%w: endpoint %d needs %d more entries, %d of %d used", ErrMapFull, epID, added, d.policyCount, d.policyMax))
	}
	for i := range addKeys {
		if err := d.objs.Policy.Update(&addKeys[i], &addVals[i], ebpf.UpdateAny); err != nil {
			if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
				return d.mapFullLocked(epID, fmt.Errorf("%w: endpoint %d: %v", ErrMapFull, epID, err))
			}
			return fmt.Errorf("policy map update: %w", err)
		}
		if _, ok := cur[addKeys[i]]; !ok {
			d.policyCount++
		}
		cur[addKeys[i]] = addVals[i]
	}
	for k := range cur {
		if _, ok := want[k]; ok {
			continue
		}
		if err := d.objs.Policy.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("policy map delete: %w", err)
		}
		delete(cur, k)
		d.policyCount--
	}
	if len(cur) == 0 {
		delete(d.policy, epID)
	}
	return nil
}

// mapFullLocked puts every endpoint with the id in lockdown: a half-written
// policy must never leave the endpoint open.
func (d *Datapath) mapFullLocked(epID uint32, err error) error {
	var k uint32
	var v datapathEndpointInfo
	var keys []uint32
	var vals []datapathEndpointInfo
	it := d.objs.Endpoints.Iterate()
	for it.Next(&k, &v) {
		if v.EpId == epID {
			v.Flags |= uint32(FlagLockdown)
			keys = append(keys, k)
			vals = append(vals, v)
		}
	}
	for i := range keys {
		if uerr := d.objs.Endpoints.Update(&keys[i], &vals[i], ebpf.UpdateExist); uerr != nil {
			err = errors.Join(err, fmt.Errorf("setting lockdown: %w", uerr))
		}
	}
	return err
}

// PolicyEntries returns how many policy map entries are in use and the
// map's capacity (for a map pressure gauge).
func (d *Datapath) PolicyEntries() (used, capacity int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.policyCount, d.policyMax
}
