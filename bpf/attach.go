package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostInterface returns the index of the interface that the route to a pod
// address leaves by: the host side of the pod's veth. It looks in the
// calling thread's network namespace.
func HostInterface(podIP netip.Addr) (int, error) {
	routes, err := netlink.RouteGet(net.IP(podIP.AsSlice()))
	if err != nil {
		return 0, fmt.Errorf("route to %s: %w", podIP, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return 0, fmt.Errorf("route to %s: no interface", podIP)
	}
	return routes[0].LinkIndex, nil
}

// AttachEndpoint records a local pod (its address, endpoint id and flags)
// and attaches the programs to the host side of its veth: from_pod at TCX
// ingress (the pod's egress policy), to_pod at TCX egress (its ingress
// policy). The interface index is resolved in the calling thread's network
// namespace. Attaching again updates the flags and replaces the programs
// in place (also those a previous agent pinned), so traffic never passes
// unchecked. With enforce flags set, a direction with no policy written
// drops everything: write the policy (SyncEndpointPolicy) first.
func (d *Datapath) AttachEndpoint(ifindex int, podIP netip.Addr, epID uint32, flags EndpointFlags) error {
	if !podIP.Is4() {
		return fmt.Errorf("%s: %w", podIP, ErrNotIPv4)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := addrU32(podIP)
	v := datapathEndpointInfo{EpId: epID, Flags: uint32(flags), Ifindex: uint32(ifindex)}
	if err := d.objs.Endpoints.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("endpoints map: %w", err)
	}
	a := d.links[ifindex]
	if a == nil {
		a = &attachment{}
	}
	var err error
	if !a.clsact {
		if a.from, err = d.attachTCX(a.from, ifindex, d.objs.FromPod, ebpf.AttachTCXIngress, "from_pod"); err == nil {
			a.to, err = d.attachTCX(a.to, ifindex, d.objs.ToPod, ebpf.AttachTCXEgress, "to_pod")
		}
		if errors.Is(err, ebpf.ErrNotSupported) && a.from == nil {
			a.clsact = true
		} else if err != nil {
			d.links[ifindex] = a
			return err
		}
	}
	if a.clsact {
		if err := attachClsact(ifindex, d.objs.FromPod, d.objs.ToPod); err != nil {
			return err
		}
	}
	d.links[ifindex] = a
	return nil
}

// AttachUplink attaches from_uplink at TCX ingress of a node's uplink
// (ifindex in the calling thread's namespace): traffic from other nodes
// to a local pod whose ingress policy redirects it to the proxy is handed
// to the proxy's socket there, where bpf_sk_assign works; all other
// traffic passes on unchanged (to_pod judges it). Attaching again replaces
// the program in place; the link is pinned like the endpoints' links, so
// it stays while the agent is away. It needs TCX (Linux 6.6).
func (d *Datapath) AttachUplink(ifindex int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, err := d.attachTCX(d.uplinks[ifindex], ifindex, d.objs.FromUplink, ebpf.AttachTCXIngress, "from_uplink")
	if err != nil {
		delete(d.uplinks, ifindex)
		return err
	}
	d.uplinks[ifindex] = l
	return nil
}

func (d *Datapath) linkPin(ifindex int, name string) string {
	if d.opts.PinPath == "" {
		return ""
	}
	return filepath.Join(d.opts.PinPath, "links", strconv.Itoa(ifindex)+"-"+name)
}

// attachTCX replaces the program of a held or pinned link, else attaches.
func (d *Datapath) attachTCX(held link.Link, ifindex int, prog *ebpf.Program, at ebpf.AttachType, name string) (link.Link, error) {
	if held != nil {
		if err := held.Update(prog); err == nil {
			return held, nil
		}
		_ = held.Unpin()
		_ = held.Close()
	}
	pin := d.linkPin(ifindex, name)
	if pin != "" {
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			if err := l.Update(prog); err == nil {
				return l, nil
			}
			// A link whose device went away (and whose index is reused).
			_ = l.Unpin()
			_ = l.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(pin)
		}
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: at})
	if err != nil {
		return nil, fmt.Errorf("attaching %s to ifindex %d: %w", name, ifindex, err)
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("pinning %s link: %w", name, err)
		}
	}
	return l, nil
}

// attachClsact is the fallback for kernels without TCX (before 6.6).
func attachClsact(ifindex int, from, to *ebpf.Program) error {
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("clsact on ifindex %d: %w", ifindex, err)
	}
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{{netlink.HANDLE_MIN_INGRESS, from, "from_pod"}, {netlink.HANDLE_MIN_EGRESS, to, "to_pod"}} {
		filter := &netlink.BpfFilter{
			FilterAttrs:  netlink.FilterAttrs{LinkIndex: ifindex, Parent: f.parent, Handle: 1, Protocol: unix.ETH_P_ALL, Priority: 1},
			Fd:           f.prog.FD(),
			Name:         "portcullis-" + f.name,
			DirectAction: true,
		}
		if err := netlink.FilterReplace(filter); err != nil {
			return fmt.Errorf("clsact filter %s on ifindex %d: %w", f.name, ifindex, err)
		}
	}
	return nil
}

func detachClsact(ifindex int) error {
	q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
	if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// DetachEndpoint detaches the programs from the pod's interface and forgets
// the pod's address. The endpoint's policy entries stay until
// SyncEndpointPolicy(epID, nil), since other addresses may share the id.
func (d *Datapath) DetachEndpoint(podIP netip.Addr) error {
	if !podIP.Is4() {
		return fmt.Errorf("%s: %w", podIP, ErrNotIPv4)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := addrU32(podIP)
	var v datapathEndpointInfo
	if err := d.objs.Endpoints.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("endpoints map: %w", err)
	}
	err := d.detachLocked(int(v.Ifindex))
	if derr := d.objs.Endpoints.Delete(&k); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
		err = errors.Join(err, derr)
	}
	return err
}

func (d *Datapath) detachLocked(ifindex int) error {
	var errs []error
	a := d.links[ifindex]
	delete(d.links, ifindex)
	if a != nil && a.clsact {
		errs = append(errs, detachClsact(ifindex))
	}
	for _, name := range []string{"from_pod", "to_pod"} {
		var l link.Link
		if a != nil {
			l = a.from
			if name == "to_pod" {
				l = a.to
			}
		}
		if l == nil && d.linkPin(ifindex, name) != "" {
			l, _ = link.LoadPinnedLink(d.linkPin(ifindex, name), nil)
		}
		if l == nil {
			continue
		}
		if d.opts.PinPath != "" {
			errs = append(errs, ignoreMissing(l.Unpin()))
		}
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// SetEndpointFlags replaces a recorded pod's flags.
func (d *Datapath) SetEndpointFlags(podIP netip.Addr, flags EndpointFlags) error {
	if !podIP.Is4() {
		return fmt.Errorf("%s: %w", podIP, ErrNotIPv4)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := addrU32(podIP)
	var v datapathEndpointInfo
	if err := d.objs.Endpoints.Lookup(&k, &v); err != nil {
		return fmt.Errorf("endpoint %s: %w", podIP, err)
	}
	v.Flags = uint32(flags)
	if err := d.objs.Endpoints.Update(&k, &v, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("endpoint %s: %w", podIP, err)
	}
	return nil
}

// Endpoint is a recorded local pod.
type Endpoint struct {
	IP      netip.Addr
	ID      uint32
	Flags   EndpointFlags
	IfIndex int
}

// Endpoints lists the recorded pods (also those a previous agent recorded
// in pinned maps), for reconciliation at start.
func (d *Datapath) Endpoints() ([]Endpoint, error) {
	var k uint32
	var v datapathEndpointInfo
	var out []Endpoint
	it := d.objs.Endpoints.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Endpoint{IP: u32Addr(k), ID: v.EpId, Flags: EndpointFlags(v.Flags), IfIndex: int(v.Ifindex)})
	}
	return out, it.Err()
}
