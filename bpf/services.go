package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ErrServicesFull is returned by SetService when no service id or backend
// id is left, or a map is full.
var ErrServicesFull = errors.New("bpf: service maps full")

// ServiceKey is one port of a Service address: what a client sends to.
type ServiceKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (k ServiceKey) String() string {
	return fmt.Sprintf("%s/%d", netip.AddrPortFrom(k.Addr, k.Port), k.Proto)
}

// Backend is a ready backend of a Service port: a pod address and the
// port (the Service's target port, resolved for that pod).
type Backend struct {
	Addr netip.Addr
	Port uint16
}

// Service is one programmed Service port.
type Service struct {
	Key ServiceKey
	// ID numbers the service port in the datapath (per-connection state
	// remembers it, so a port deleted and made again starts afresh).
	ID       uint16
	Backends []Backend
}

// svcState mirrors one service port's entries: its id and its backends'
// ids, in slot order.
type svcState struct {
	id       uint16
	backends []Backend
	ids      []uint32
}

func serviceMapKey(k ServiceKey, slot uint16) datapathServiceKey {
	return datapathServiceKey{Addr: addrU32(k.Addr), Port: htons(k.Port), Proto: k.Proto, Slot: slot}
}

// SetService programs a Service port with exactly these backends (in any
// order; duplicates are ignored). None makes the datapath refuse
// connections to it (TCP reset, ICMP port unreachable). The update is
// ordered so that every lookup meets a complete set of backends that
// exist: new backends and slots first, then the count, then what is no
// longer used. A backend that leaves has its id removed, so its
// established TCP connections are reset and its UDP flows move; the
// other connections keep their backends.
func (d *Datapath) SetService(key ServiceKey, backends []Backend) error {
	if !key.Addr.Is4() {
		return fmt.Errorf("service %s: %w", key, ErrNotIPv4)
	}
	want := slices.Clone(backends)
	for _, b := range want {
		if !b.Addr.Is4() {
			return fmt.Errorf("service %s backend %s: %w", key, b.Addr, ErrNotIPv4)
		}
	}
	slices.SortFunc(want, func(a, b Backend) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
	})
	want = slices.Compact(want)
	if len(want) > 0xffff {
		return fmt.Errorf("service %s: %d backends: %w", key, len(want), ErrServicesFull)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.services[key]
	st := &svcState{backends: want, ids: make([]uint32, len(want))}
	if old != nil {
		st.id = old.id
	} else {
		id, err := d.freeServiceIDLocked()
		if err != nil {
			return fmt.Errorf("service %s: %w", key, err)
		}
		st.id = id
	}
	oldIDs := map[Backend]uint32{}
	if old != nil {
		for i, b := range old.backends {
			oldIDs[b] = old.ids[i]
		}
	}
	for i, b := range want {
		if id, ok := oldIDs[b]; ok {
			st.ids[i] = id
			continue
		}
		d.nextBackendID++
		if d.nextBackendID == 0 {
			d.nextBackendID = 1
		}
		id := d.nextBackendID
		v := datapathBackend{Addr: addrU32(b.Addr), Port: htons(b.Port)}
		if err := d.objs.Backends.Update(&id, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("service %s backend %s: %w", key, netip.AddrPortFrom(b.Addr, b.Port), mapErr(err))
		}
		st.ids[i] = id
	}
	for i, id := range st.ids {
		k := serviceMapKey(key, uint16(i+1))
		v := datapathServiceValue{BackendId: id}
		if err := d.objs.Services.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("service %s slot %d: %w", key, i+1, mapErr(err))
		}
	}
	k := serviceMapKey(key, 0)
	v := datapathServiceValue{Count: uint16(len(want)), SvcId: st.id}
	if err := d.objs.Services.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("service %s: %w", key, mapErr(err))
	}
	d.services[key] = st
	if old == nil {
		return nil
	}
	var errs []error
	for slot := len(want) + 1; slot <= len(old.ids); slot++ {
		k := serviceMapKey(key, uint16(slot))
		errs = append(errs, ignoreNotExist(d.objs.Services.Delete(&k)))
	}
	kept := map[uint32]bool{}
	for _, id := range st.ids {
		kept[id] = true
	}
	for _, id := range old.ids {
		if !kept[id] {
			errs = append(errs, ignoreNotExist(d.objs.Backends.Delete(&id)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("service %s: removing old backends: %w", key, err)
	}
	return nil
}

// DeleteService removes a Service port: its address is no longer
// translated. A port that is not programmed is not an error.
func (d *Datapath) DeleteService(key ServiceKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.services[key]
	if st == nil {
		return nil
	}
	var errs []error
	k := serviceMapKey(key, 0)
	errs = append(errs, ignoreNotExist(d.objs.Services.Delete(&k)))
	for slot := range st.ids {
		k := serviceMapKey(key, uint16(slot+1))
		errs = append(errs, ignoreNotExist(d.objs.Services.Delete(&k)))
	}
	for _, id := range st.ids {
		errs = append(errs, ignoreNotExist(d.objs.Backends.Delete(&id)))
	}
	delete(d.services, key)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting service %s: %w", key, err)
	}
	return nil
}

// Services lists the programmed Service ports (also those a previous
// agent left in pinned maps), sorted by address, port and protocol.
func (d *Datapath) Services() []Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Service, 0, len(d.services))
	for k, st := range d.services {
		out = append(out, Service{Key: k, ID: st.id, Backends: slices.Clone(st.backends)})
	}
	slices.SortFunc(out, func(a, b Service) int {
		return cmp.Or(a.Key.Addr.Compare(b.Key.Addr), cmp.Compare(a.Key.Port, b.Key.Port), cmp.Compare(a.Key.Proto, b.Key.Proto))
	})
	return out
}

// freeServiceIDLocked picks an unused service id (never 0).
func (d *Datapath) freeServiceIDLocked() (uint16, error) {
	used := make(map[uint16]bool, len(d.services))
	for _, st := range d.services {
		used[st.id] = true
	}
	for range 0xffff {
		d.nextServiceID++
		if d.nextServiceID == 0 {
			d.nextServiceID = 1
		}
		if !used[d.nextServiceID] {
			return d.nextServiceID, nil
		}
	}
	return 0, ErrServicesFull
}

// loadServices rebuilds the mirror from pinned maps. Slots or backends
// that no complete service refers to (an agent that died mid-update) are
// deleted.
func (d *Datapath) loadServices() error {
	var k datapathServiceKey
	var v datapathServiceValue
	slots := map[datapathServiceKey]uint32{}
	for it := d.objs.Services.Iterate(); it.Next(&k, &v); {
		if k.Slot == 0 {
			key := ServiceKey{Addr: u32Addr(k.Addr), Port: htons(k.Port), Proto: k.Proto}
			d.services[key] = &svcState{id: v.SvcId, ids: make([]uint32, v.Count), backends: make([]Backend, v.Count)}
			if v.SvcId > d.nextServiceID {
				d.nextServiceID = v.SvcId
			}
			continue
		}
		slots[k] = v.BackendId
	}
	var id uint32
	var b datapathBackend
	bes := map[uint32]Backend{}
	for it := d.objs.Backends.Iterate(); it.Next(&id, &b); {
		bes[id] = Backend{Addr: u32Addr(b.Addr), Port: htons(b.Port)}
		d.nextBackendID = max(d.nextBackendID, id)
	}
	used := map[uint32]bool{}
	var errs []error
	for key, st := range d.services {
		for i := range st.ids {
			sk := serviceMapKey(key, uint16(i+1))
			bid, ok := slots[sk]
			be, found := bes[bid]
			if !ok || !found {
				// Incomplete: let the agent program it again.
				errs = append(errs, ignoreNotExist(d.objs.Services.Delete(new(serviceMapKey(key, 0)))))
				delete(d.services, key)
				break
			}
			st.ids[i], st.backends[i] = bid, be
		}
	}
	for key, st := range d.services {
		for i := range st.ids {
			used[st.ids[i]] = true
			delete(slots, serviceMapKey(key, uint16(i+1)))
		}
	}
	for sk := range slots {
		errs = append(errs, ignoreNotExist(d.objs.Services.Delete(&sk)))
	}
	for id := range bes {
		if !used[id] {
			errs = append(errs, ignoreNotExist(d.objs.Backends.Delete(&id)))
		}
	}
	return errors.Join(errs...)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// mapErr marks a full map as ErrServicesFull.
func mapErr(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
		return fmt.Errorf("%w: %v", ErrServicesFull, err)
	}
	return err
}
