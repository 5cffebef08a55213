package main

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"

	"portcullis.dev/portcullis/policy"
)

// The key and value layouts of bpf/datapath.c, mirrored because the
// bpf package keeps its generated types unexported: the benchmark reads
// the pinned maps as any other process would, with its own handles, so
// that "the map holds the entry" means what the kernel sees.
type (
	ipcacheKey struct {
		Prefixlen uint32
		Addr      [4]byte
	}
	endpointInfo struct {
		EpID, Flags, IfIndex uint32
	}
	policyKey struct {
		Prefixlen uint32
		EpID      uint32
		Identity  uint32
		Dir       uint8
		Proto     uint8
		Port      [2]byte // network order
	}
	policyValue struct {
		Verdict   uint8
		Pad       uint8
		ProxyPort [2]byte
		RuleID    uint32
	}
)

// policyPrefixFull covers endpoint, identity, direction, protocol and port.
const policyPrefixFull = 96

// pinnedMaps are read-only handles on the agent's pinned maps.
type pinnedMaps struct {
	ipcache, endpoints, policy *ebpf.Map
}

func openPinnedMaps(dir string) (*pinnedMaps, error) {
	m := &pinnedMaps{}
	for name, dst := range map[string]**ebpf.Map{"ipcache": &m.ipcache, "endpoints": &m.endpoints, "policy": &m.policy} {
		mp, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			m.close()
			return nil, fmt.Errorf("opening pinned map %s: %w", name, err)
		}
		*dst = mp
	}
	return m, nil
}

func (m *pinnedMaps) close() {
	for _, mp := range []*ebpf.Map{m.ipcache, m.endpoints, m.policy} {
		if mp != nil {
			_ = mp.Close()
		}
	}
}

// identity returns the identity the ipcache gives addr's /32 (longest
// prefix match, as the program does), or false on a miss.
func (m *pinnedMaps) identity(addr netip.Addr) (uint32, bool, error) {
	var id uint32
	err := m.ipcache.Lookup(ipcacheKey{Prefixlen: 32, Addr: addr.As4()}, &id)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, nil
	}
	return id, err == nil, err
}

// endpoint returns the endpoint record of a local pod address.
func (m *pinnedMaps) endpoint(addr netip.Addr) (endpointInfo, bool, error) {
	var ep endpointInfo
	err := m.endpoints.Lookup(addr.As4(), &ep)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return ep, false, nil
	}
	return ep, err == nil, err
}

// verdict looks up (endpoint, direction, identity, proto, port) with the
// full prefix, as the program's first lookup does, and returns the verdict
// of the longest match, or false on a miss.
func (m *pinnedMaps) verdict(epID uint32, dir policy.Direction, identity uint32, proto uint8, port uint16) (policy.Verdict, bool, error) {
	k := policyKey{Prefixlen: policyPrefixFull, EpID: epID, Identity: identity, Dir: uint8(dir), Proto: proto, Port: [2]byte{byte(port >> 8), byte(port)}}
	var v policyValue
	err := m.policy.Lookup(k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, nil
	}
	return policy.Verdict(v.Verdict), err == nil, err
}

// policyEntries counts the policy map's entries (a full iteration).
func (m *pinnedMaps) policyEntries() (int, error) {
	var k policyKey
	var v policyValue
	n := 0
	it := m.policy.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}

// dump describes the policy map's entries of one endpoint, for errors.
func (m *pinnedMaps) dump(epID uint32) string {
	var k policyKey
	var v policyValue
	var b strings.Builder
	it := m.policy.Iterate()
	for it.Next(&k, &v) {
		if epID == 0 || k.EpID == epID {
			fmt.Fprintf(&b, "\n  /%d dir %d identity %d proto %d port %d: verdict %d", k.Prefixlen, k.Dir, k.Identity, k.Proto, int(k.Port[0])<<8|int(k.Port[1]), v.Verdict)
		}
	}
	return b.String()
}
