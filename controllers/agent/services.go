package agent

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/policy"
)

// ServicePort is one programmed ClusterIP port of a Service.
type ServicePort struct {
	Key bpf.ServiceKey
	// Name is the Service port's name ("" for a single unnamed port).
	Name     string
	Backends []bpf.Backend
}

// translation is what the datapath translates for a Service: each port of
// each IPv4 ClusterIP (TCP and UDP; SCTP is not translated) to the ready
// endpoints of its EndpointSlices, at the port the slice gives for that
// Service port (a named target port is resolved per pod by whoever writes
// the slices). A headless Service or one without a ClusterIP has none.
func translation(svc *corev1.Service, sls []discoveryv1.EndpointSlice) []ServicePort {
	var ips []netip.Addr
	for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() && !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	var out []ServicePort
	for _, ip := range ips {
		for _, sp := range svc.Spec.Ports {
			proto := protoNumber(sp.Protocol)
			if proto != policy.ProtoTCP && proto != policy.ProtoUDP || sp.Port <= 0 || sp.Port > 0xffff {
				continue
			}
			p := ServicePort{Key: bpf.ServiceKey{Addr: ip, Port: uint16(sp.Port), Proto: proto}, Name: sp.Name}
			for _, sl := range sls {
				if sl.AddressType != discoveryv1.AddressTypeIPv4 {
					continue
				}
				for _, ep := range sl.Ports {
					if ep.Port == nil || *ep.Port <= 0 || *ep.Port > 0xffff || ptrOr(ep.Name, "") != sp.Name || protoNumber(ptrOr(ep.Protocol, corev1.ProtocolTCP)) != proto {
						continue
					}
					for _, e := range sl.Endpoints {
						if e.Conditions.Ready != nil && !*e.Conditions.Ready {
							continue
						}
						for _, addr := range e.Addresses {
							if a, err := netip.ParseAddr(addr); err == nil && a.Is4() {
								p.Backends = append(p.Backends, bpf.Backend{Addr: a, Port: uint16(*ep.Port)})
							}
						}
					}
				}
			}
			slices.SortFunc(p.Backends, func(x, y bpf.Backend) int {
				return cmp.Or(x.Addr.Compare(y.Addr), cmp.Compare(x.Port, y.Port))
			})
			p.Backends = slices.Compact(p.Backends)
			out = append(out, p)
		}
	}
	return out
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// programServiceLocked makes the datapath translate exactly ports for the
// Service (nil: none), and records them for the service list and live
// traces. Each port is one SetService, which never leaves it half-written.
func (a *Agent) programServiceLocked(key types.NamespacedName, ports []ServicePort) error {
	var errs []error
	want := map[bpf.ServiceKey]bool{}
	for _, p := range ports {
		want[p.Key] = true
		if err := a.dp.SetService(p.Key, p.Backends); err != nil {
			errs = append(errs, fmt.Errorf("programming service %s port %s: %w", key, p.Key, err))
		}
	}
	for _, old := range a.services[key] {
		if want[old.Key] {
			continue
		}
		if err := a.dp.DeleteService(old.Key); err != nil {
			errs = append(errs, fmt.Errorf("removing service %s port %s: %w", key, old.Key, err))
		}
	}
	if len(ports) == 0 {
		delete(a.services, key)
	} else {
		a.services[key] = ports
	}
	return errors.Join(errs...)
}

// pruneServicesLocked removes the translations that no known Service has
// (left in pinned maps by an agent that missed a deletion).
func (a *Agent) pruneServicesLocked() error {
	want := map[bpf.ServiceKey]bool{}
	for _, ports := range a.services {
		for _, p := range ports {
			want[p.Key] = true
		}
	}
	var errs []error
	for _, s := range a.dp.Services() {
		if !want[s.Key] {
			errs = append(errs, a.dp.DeleteService(s.Key))
		}
	}
	return errors.Join(errs...)
}

// serviceName names the Service programmed at a ClusterIP port:
// "namespace/name addr:port", or the address alone.
func (a *Agent) serviceName(front netip.AddrPort, proto uint8) string {
	key := bpf.ServiceKey{Addr: front.Addr(), Port: front.Port(), Proto: proto}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, ports := range a.services {
		for _, p := range ports {
			if p.Key == key {
				return k.String() + " " + front.String()
			}
		}
	}
	return front.String()
}

// ServiceInfo is a Service as the agent has programmed it.
type ServiceInfo struct {
	Namespace, Name string
	Ports           []ServicePort
}

// Services lists the programmed Services, sorted by namespace and name.
func (a *Agent) Services() []ServiceInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ServiceInfo, 0, len(a.services))
	for k, ports := range a.services {
		out = append(out, ServiceInfo{Namespace: k.Namespace, Name: k.Name, Ports: slices.Clone(ports)})
	}
	slices.SortFunc(out, func(x, y ServiceInfo) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	return out
}
