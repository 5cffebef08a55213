package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"

	mdns "github.com/miekg/dns"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/dns"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
	proxykafka "portcullis.dev/portcullis/proxy/kafka"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// nodeProxy is the agent's L7 proxy: the transparent listener the
// datapath's redirects reach, and the snapshot store it judges by.
type nodeProxy struct {
	store proxy.Store
	proxy *proxy.Proxy
	// closers close the protocol servers after the proxy.
	closers []func() error
}

// startProxy opens the proxy's transparent listener on 0.0.0.0:ProxyPort
// and serves it. It runs before the first sync writes a redirect entry,
// so no redirected flow finds the port closed (reason no-proxy). Until
// the first complete sync publishes a snapshot every connection is
// refused (fail closed).
func (a *Agent) startProxy() (*nodeProxy, error) {
	m, err := proxy.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	np := &nodeProxy{}
	log := ctrl.Log.WithName("proxy")
	record := func(e monitor.Event) {
		e.Node = a.cfg.NodeName
		m.Observe(e)
		a.hub.Publish(e)
	}
	dialer := &proxy.Dialer{
		Mark: bpf.MarkFromProxy,
		// The upstream sees the client pod's address when the client is
		// local and the server a local pod (its replies pass its from_pod,
		// which hands them to the proxy's socket: bpf assign_proxy_leg) or,
		// with uplinks attached, a pod on another node (its replies come in
		// by an uplink, whose from_uplink does the same), so that the
		// server's node judges the client's own identity. Elsewhere replies
		// would be routed to the client pod, so the node's address is used.
		Transparent: func(src, dst netip.AddrPort) bool {
			s := np.store.Load()
			if s == nil || s.Endpoints[src.Addr()] == nil {
				return false
			}
			if s.Endpoints[dst.Addr()] != nil {
				return true
			}
			return len(a.cfg.Uplinks) > 0 && s.Identities != nil && remotePod(s.Identities(dst.Addr()))
		},
		Fallback: func(src, dst netip.AddrPort, err error) {
			log.Info("upstream leg uses the node's address: transparent bind failed", "src", src, "dst", dst, "error", err.Error())
		},
	}
	hs := proxyhttp.New(proxyhttp.Options{Resolver: &np.store, Dial: dialer.DialContext, Record: record, Node: a.cfg.NodeName})
	// No Advertise rewrite: clients connect to the broker pods' own
	// addresses, and the datapath redirects those connections here too.
	ks, err := proxykafka.New(proxykafka.Options{Resolver: &np.store, Dial: dialer.DialContext, Record: record, Node: a.cfg.NodeName})
	if err != nil {
		_ = hs.Close()
		return nil, fmt.Errorf("kafka proxy: %w", err)
	}
	np.closers = []func() error{hs.Close, ks.Close}
	ds, err := a.newDNSProxy(&np.store, dialer, record)
	if err != nil {
		_ = hs.Close()
		_ = ks.Close()
		return nil, err
	}
	np.closers = append(np.closers, ds.Close)
	ts, err := proxytls.New(proxytls.Options{Resolver: &np.store, Dial: dialer.DialContext, Record: record, HTTP: hs, Secrets: a.tls.store})
	if err != nil {
		for _, c := range np.closers {
			_ = c()
		}
		return nil, fmt.Errorf("TLS proxy: %w", err)
	}
	if np.proxy, err = proxy.New(proxy.Options{Resolver: &np.store, HTTP: hs, Kafka: ks, DNS: ds, TLS: ts, Dial: dialer.DialContext, Record: record, MaxConns: a.cfg.ProxyMaxConnections}); err != nil {
		for _, c := range np.closers {
			_ = c()
		}
		return nil, err
	}
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(int(a.cfg.ProxyPort)))
	l, err := proxy.ListenTransparent(context.Background(), addr)
	if err != nil {
		np.stop()
		return nil, err
	}
	// DNS over UDP: the datapath assigns redirected packets to a UDP
	// socket on the same port.
	uc, err := dns.ListenUDP(context.Background(), addr)
	if err != nil {
		_ = l.Close()
		np.stop()
		return nil, err
	}
	go func() {
		if err := ds.ServeUDP(uc); err != nil {
			log.Error(err, "the DNS proxy stopped reading queries")
		}
	}()
	go func() {
		// Serve returns nil once stopped; an accept error leaves redirected
		// flows unanswered (they time out), so it is logged loudly.
		if err := np.proxy.Serve(l); err != nil {
			log.Error(err, "the proxy stopped accepting connections")
		}
	}()
	log.Info("proxy listening", "addr", addr)
	return np, nil
}

// newDNSProxy builds the DNS proxy: queries judged by the snapshot,
// answers held until the fqdn learner has the datapath allow their
// addresses.
func (a *Agent) newDNSProxy(store *proxy.Store, dialer *proxy.Dialer, record func(monitor.Event)) (*dns.Server, error) {
	code := mdns.RcodeRefused
	if a.cfg.DNSRejectResponseCode != "" {
		var err error
		if code, err = dns.RejectCode(a.cfg.DNSRejectResponseCode); err != nil {
			return nil, err
		}
	}
	m, err := dns.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("DNS proxy metrics: %w", err)
	}
	return dns.New(dns.Options{
		Resolver:    store,
		Record:      record,
		Node:        a.cfg.NodeName,
		RejectCode:  code,
		Mark:        bpf.MarkFromProxy,
		Dial:        dialer.DialContext,
		Observer:    a.fqdn,
		HoldTimeout: a.cfg.DNSHoldTimeout,
		Metrics:     m,
	})
}

// remotePod reports whether id is a pod's identity (not a reserved or a
// CIDR one): an address the ipcache has from a Pod object.
func remotePod(id *policy.Identity) bool {
	return id != nil && !id.IsReserved() && !id.IsCIDR()
}

// stop closes the listener and the open connections.
func (np *nodeProxy) stop() {
	_ = np.proxy.Close()
	for _, c := range np.closers {
		_ = c()
	}
}

// publishProxySnapshotLocked hands the proxy what a sync pass wrote: the
// local endpoints whose policy was written in full, with that policy, and
// the ipcache as written (an immutable copy). It runs after every pass,
// also one that failed somewhere: waiting for a pass that wrote everything
// would leave the proxy judging by older policies than the kernel's while
// one endpoint is in lockdown. An endpoint whose write failed is left out,
// so connections from or to it are refused (fail closed) until a pass
// writes it (it stays in the snapshot, without a policy: a missing
// endpoint would look like a remote peer whose side needs no check).
func (a *Agent) publishProxySnapshotLocked(pols map[*EndpointInfo]*policy.EndpointPolicy) {
	if a.proxy == nil {
		return
	}
	s := &proxy.Snapshot{Revision: a.repo.Revision(), Endpoints: make(map[netip.Addr]*proxy.Endpoint, len(a.endpoints))}
	for _, ep := range a.endpoints {
		// pols lacks the endpoints not written in full: their nil policy
		// makes the proxy refuse their connections.
		s.Endpoints[ep.IP] = &proxy.Endpoint{Namespace: ep.Namespace, Name: ep.Name, IP: ep.IP, Policy: pols[ep]}
	}
	s.Identities = newIPCacheView(a.ipcache, a.repo.Identity).lookup
	a.proxy.store.Set(s)
}

// ipcacheView answers address → identity as the datapath's ipcache does
// (longest prefix, a miss is world), from a copy that never changes.
type ipcacheView struct {
	hosts    map[netip.Addr]*policy.Identity
	prefixes []prefixIdentity // longest first
	world    *policy.Identity
}

type prefixIdentity struct {
	p  netip.Prefix
	id *policy.Identity
}

func newIPCacheView(ipcache map[netip.Prefix]policy.NumericIdentity, identity func(policy.NumericIdentity) *policy.Identity) *ipcacheView {
	v := &ipcacheView{hosts: map[netip.Addr]*policy.Identity{}, world: identity(policy.IdentityWorld)}
	byID := map[policy.NumericIdentity]*policy.Identity{}
	get := func(n policy.NumericIdentity) *policy.Identity {
		id, ok := byID[n]
		if !ok {
			id = identity(n)
			if id == nil {
				id = &policy.Identity{ID: n}
			}
			byID[n] = id
		}
		return id
	}
	for p, n := range ipcache {
		if p.IsSingleIP() {
			v.hosts[p.Addr()] = get(n)
			continue
		}
		v.prefixes = append(v.prefixes, prefixIdentity{p, get(n)})
	}
	sort.Slice(v.prefixes, func(i, j int) bool { return v.prefixes[i].p.Bits() > v.prefixes[j].p.Bits() })
	return v
}

func (v *ipcacheView) lookup(a netip.Addr) *policy.Identity {
	if id, ok := v.hosts[a]; ok {
		return id
	}
	for _, pi := range v.prefixes {
		if pi.p.Contains(a) {
			return pi.id
		}
	}
	return v.world
}

// ProxyRequestCount reads portcullis_proxy_requests_total{protocol,verdict}
// from controller-runtime's registry (0 when absent), for tests.
func ProxyRequestCount(protocol, verdict string) float64 {
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "portcullis_proxy_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var p, v string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "protocol":
					p = l.GetValue()
				case "verdict":
					v = l.GetValue()
				}
			}
			if p == protocol && v == verdict {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
