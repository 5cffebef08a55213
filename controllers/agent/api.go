package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/bpf"
	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
)

// monitorBuffer is how many events a monitor follower may lag behind
// before it loses events (and is told so).
const monitorBuffer = 4096

// listenAPI listens on the API's unix socket: its directory is created
// (0700), a socket file that nothing serves (left by an agent that died)
// is replaced, and a live one is an error. The socket is 0600 and is
// removed when the listener closes.
func listenAPI(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("API socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("API socket %s: the file exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("API socket %s: another agent is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale API socket: %w", err)
		}
		ctrl.Log.WithName("agent").Info("replaced a stale API socket", "path", path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("API socket: %w", err)
	}
	return ln, nil
}

// apiServer serves the local API (package agentclient) until the manager
// stops.
type apiServer struct {
	a  *Agent
	ln net.Listener
}

func (s *apiServer) Start(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.a.APIHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		// Requests end with the agent (monitor streams included).
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	ctrl.Log.WithName("agent").Info("serving the API", "socket", s.ln.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-done:
		return fmt.Errorf("API server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-done
	return nil
}

// APIHandler is the agent's local API (served on Config.APISocket).
func (a *Agent) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentclient.PathEndpoints, a.serveEndpoints)
	mux.HandleFunc("GET "+agentclient.PathMonitor, a.serveMonitor)
	mux.HandleFunc("POST "+agentclient.PathTrace, a.serveTrace)
	mux.HandleFunc("GET "+agentclient.PathServices, a.serveServices)
	mux.HandleFunc("GET "+agentclient.PathFQDNCache, a.serveFQDNCache)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, agentclient.Error{Error: fmt.Sprintf(format, args...)})
}

// APIEndpoints is the endpoint table in the API's terms.
func (a *Agent) APIEndpoints() []agentclient.Endpoint {
	eps := a.Endpoints()
	out := make([]agentclient.Endpoint, 0, len(eps))
	for _, e := range eps {
		ae := agentclient.Endpoint{
			ID: e.ID, Namespace: e.Namespace, Pod: e.Name, IP: e.IP.String(),
			Identity: uint32(e.Identity), State: e.State,
			IngressEnforced: e.Flags&bpf.FlagEnforceIngress != 0,
			EgressEnforced:  e.Flags&bpf.FlagEnforceEgress != 0,
			Audit:           e.Flags&bpf.FlagAudit != 0,
			IfIndex:         e.IfIndex, Message: e.Message,
		}
		if ident := a.repo.Identity(e.Identity); ident != nil && e.Identity != 0 {
			ae.Labels = monitor.Labels(ident.Labels)
		}
		out = append(out, ae)
	}
	return out
}

func (a *Agent) serveEndpoints(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.APIEndpoints())
}

// serveMonitor streams flow events as NDJSON until the client goes or the
// agent stops. A follower that falls behind loses events (the hub never
// blocks the datapath reader or a proxy) and gets a notice line saying
// how many.
func (a *Agent) serveMonitor(w http.ResponseWriter, r *http.Request) {
	sub := a.hub.Subscribe(monitorBuffer)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	var reported uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			if lost := sub.Lost(); lost > reported {
				notice := agentclient.Event{Time: time.Now(), Node: a.cfg.NodeName, Type: agentclient.TypeLost}
				if enc.Encode(agentclient.MonitorLine{Event: notice, Lost: lost - reported}) != nil {
					return
				}
				reported = lost
			}
			if enc.Encode(agentclient.MonitorLine{Event: wireEvent(ev)}) != nil {
				return
			}
			// Flush when the backlog is drained, not per event.
			if len(sub.C) == 0 && rc.Flush() != nil {
				return
			}
		}
	}
}

// serveTrace traces a flow against the live repository. Peers are resolved
// to addresses first (a pod by name or by labels must be one the agent
// knows), so the trace never adds endpoints to the running engine.
func (a *Agent) serveTrace(w http.ResponseWriter, r *http.Request) {
	var req agentclient.TraceRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "decoding the trace request: %v", err)
		return
	}
	resp, status, err := a.Trace(req)
	if err != nil {
		writeError(w, status, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// Trace runs a live trace; status is the HTTP status for an error.
func (a *Agent) Trace(req agentclient.TraceRequest) (resp *agentclient.TraceResponse, status int, err error) {
	switch {
	case !policy.HasPorts(req.Proto):
		if req.Port != 0 {
			return nil, http.StatusBadRequest, fmt.Errorf("port: %s has no ports; give port 0", policy.ProtoName(req.Proto))
		}
	case req.Port == 0 && req.Proto != policy.ProtoICMP && req.Proto != policy.ProtoICMPv6:
		return nil, http.StatusBadRequest, errors.New("port: 0 is not a port")
	}
	if req.Src.Service != "" {
		return nil, http.StatusBadRequest, errors.New("source: a Service is a destination only")
	}
	src, srcPeer, err := a.resolvePeer(req.Src)
	if err != nil {
		return nil, http.StatusNotFound, fmt.Errorf("source: %w", err)
	}
	var dst agentclient.ResolvedPeer
	var dstPeer policy.TracePeer
	port, translated := req.Port, uint16(0)
	if req.Dst.Service != "" {
		if dst, dstPeer, port, status, err = a.resolveService(req.Dst, req.Proto, req.Port); err != nil {
			return nil, status, fmt.Errorf("destination: %w", err)
		}
		translated = port
	} else if dst, dstPeer, err = a.resolvePeer(req.Dst); err != nil {
		return nil, http.StatusNotFound, fmt.Errorf("destination: %w", err)
	}
	tr, err := a.repo.Trace(policy.TraceRequest{
		Src: srcPeer, Dst: dstPeer, Proto: req.Proto, Port: port,
		HTTP: engineHTTPRequest(req.HTTP), Kafka: engineKafkaRequest(req.Kafka), DNS: req.DNS, SNI: req.SNI,
	})
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("tracing: %w", err)
	}
	mode, audit := a.repo.Mode()
	return &agentclient.TraceResponse{
		Node: a.cfg.NodeName, Mode: string(mode), Audit: audit, Src: src, Dst: dst, Port: translated,
		Result: wireTraceResult(tr),
	}, http.StatusOK, nil
}

// resolvePeer turns a live trace peer into an address or entity.
func (a *Agent) resolvePeer(p agentclient.TracePeer) (agentclient.ResolvedPeer, policy.TracePeer, error) {
	set := 0
	for _, given := range []bool{p.Pod != "", p.Labels != nil, p.IP != "", p.Entity != "", p.Service != ""} {
		if given {
			set++
		}
	}
	if set != 1 {
		return agentclient.ResolvedPeer{}, policy.TracePeer{}, errors.New("give exactly one of a pod, labels, an address, an entity or a Service")
	}
	switch {
	case p.Entity != "":
		if _, ok := policy.ReservedIdentityByName(p.Entity); !ok {
			return agentclient.ResolvedPeer{}, policy.TracePeer{}, fmt.Errorf("unknown entity %q", p.Entity)
		}
		return agentclient.ResolvedPeer{Kind: "entity", Value: p.Entity}, policy.TracePeer{Entity: p.Entity}, nil
	case p.IP != "":
		ip, err := netip.ParseAddr(p.IP)
		if err != nil {
			return agentclient.ResolvedPeer{}, policy.TracePeer{}, err
		}
		return agentclient.ResolvedPeer{Kind: "ip", Value: ip.String()}, policy.TracePeer{IP: ip}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := p.Pod
	if p.Labels != nil {
		var err error
		if key, err = a.podByLabelsLocked(engineLabels(p.Labels)); err != nil {
			return agentclient.ResolvedPeer{}, policy.TracePeer{}, err
		}
	}
	rec := a.pods[key]
	if rec == nil {
		return agentclient.ResolvedPeer{}, policy.TracePeer{}, fmt.Errorf("pod %q: not a running pod with an IPv4 address that the agent on node %s knows", key, a.cfg.NodeName)
	}
	return agentclient.ResolvedPeer{Kind: "pod", Value: key + " (" + rec.ip.String() + ")"}, policy.TracePeer{IP: rec.ip}, nil
}

// resolveService finds what the datapath translates a Service's port to:
// the backend a trace follows (the first ready one; the datapath picks one
// per connection) and its target port. A port with no ready backend is an
// error that says connections are refused, as the datapath does.
func (a *Agent) resolveService(p agentclient.TracePeer, proto uint8, port uint16) (agentclient.ResolvedPeer, policy.TracePeer, uint16, int, error) {
	ns, name, ok := strings.Cut(p.Service, "/")
	if !ok || ns == "" || name == "" {
		return agentclient.ResolvedPeer{}, policy.TracePeer{}, 0, http.StatusBadRequest, fmt.Errorf("service %q: want namespace/name", p.Service)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ports, found := a.services[types.NamespacedName{Namespace: ns, Name: name}]
	if !found {
		return agentclient.ResolvedPeer{}, policy.TracePeer{}, 0, http.StatusNotFound, fmt.Errorf("service %s: not a Service with a ClusterIP that the agent on node %s has programmed", p.Service, a.cfg.NodeName)
	}
	var have []string
	for _, sp := range ports {
		have = append(have, fmt.Sprintf("%d/%s", sp.Key.Port, policy.ProtoName(sp.Key.Proto)))
		if sp.Key.Port != port || sp.Key.Proto != proto {
			continue
		}
		front := fmt.Sprintf("%s/%s", netip.AddrPortFrom(sp.Key.Addr, sp.Key.Port), policy.ProtoName(proto))
		if len(sp.Backends) == 0 {
			return agentclient.ResolvedPeer{}, policy.TracePeer{}, 0, http.StatusConflict,
				fmt.Errorf("service %s has no ready backend: the datapath refuses connections to %s", p.Service, front)
		}
		be := sp.Backends[0]
		target := netip.AddrPortFrom(be.Addr, be.Port).String()
		if key, ok := a.podsByIP[be.Addr]; ok {
			target = key + " (" + target + ")"
		}
		return agentclient.ResolvedPeer{Kind: "service", Value: fmt.Sprintf("%s %s -> %s, backend 1 of %d", p.Service, front, target, len(sp.Backends))},
			policy.TracePeer{IP: be.Addr}, be.Port, http.StatusOK, nil
	}
	return agentclient.ResolvedPeer{}, policy.TracePeer{}, 0, http.StatusNotFound,
		fmt.Errorf("service %s has no port %d/%s (it has %s)", p.Service, port, policy.ProtoName(proto), strings.Join(have, ", "))
}

// APIServices is the programmed Services in the API's terms, one entry per
// port.
func (a *Agent) APIServices() []agentclient.Service {
	svcs := a.Services()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []agentclient.Service{}
	for _, s := range svcs {
		for _, sp := range s.Ports {
			as := agentclient.Service{Namespace: s.Namespace, Name: s.Name, PortName: sp.Name,
				Frontend: netip.AddrPortFrom(sp.Key.Addr, sp.Key.Port).String(), Protocol: policy.ProtoName(sp.Key.Proto),
				Backends: make([]agentclient.ServiceBackend, 0, len(sp.Backends))}
			for _, be := range sp.Backends {
				as.Backends = append(as.Backends, agentclient.ServiceBackend{Address: netip.AddrPortFrom(be.Addr, be.Port).String(), Pod: a.podsByIP[be.Addr]})
			}
			out = append(out, as)
		}
	}
	return out
}

func (a *Agent) serveServices(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.APIServices())
}

func (a *Agent) serveFQDNCache(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.APIFQDNCache(time.Now()))
}

// APIFQDNCache is the toFQDNs cache in the API's terms, with the TTLs
// left at now.
func (a *Agent) APIFQDNCache(now time.Time) []agentclient.FQDNCacheEntry {
	es := a.FQDNCache()
	out := make([]agentclient.FQDNCacheEntry, 0, len(es))
	for _, e := range es {
		out = append(out, agentclient.FQDNCacheEntry{Name: e.Name, Endpoint: e.Endpoint, IP: e.Addr.String(),
			Expires: e.Expires.UTC(), TTL: int64(max(e.Expires.Sub(now), 0) / time.Second)})
	}
	return out
}

// podByLabelsLocked picks the pod that has every label of ls: a local pod
// before a remote one, then the first by namespace/name.
func (a *Agent) podByLabelsLocked(ls policy.Labels) (string, error) {
	var matches []string
	for key, rec := range a.pods {
		ns, _, _ := strings.Cut(key, "/")
		ok := true
		for _, l := range ls {
			switch {
			case l.Key == policy.LabelNamespace:
				ok = ns == l.Value
			case l.Source == policy.SourceReserved:
				ok = false
			default:
				v, has := rec.labels[l.Key]
				ok = has && v == l.Value
			}
			if !ok {
				break
			}
		}
		if ok {
			matches = append(matches, key)
		}
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("no running pod that the agent on node %s knows has the labels %s", a.cfg.NodeName, ls)
	}
	sort.Slice(matches, func(i, j int) bool {
		li, lj := a.pods[matches[i]].local, a.pods[matches[j]].local
		if li != lj {
			return li
		}
		return matches[i] < matches[j]
	})
	return matches[0], nil
}

// The conversions between the engine's types and the API's wire types
// (package agentclient). They are written out field by field on purpose:
// a change to an engine type must be met here, and the wire format stays
// what agentclient's golden files pin.

// wireEvent is a flow event as the monitor stream carries it.
func wireEvent(e monitor.Event) agentclient.Event {
	out := agentclient.Event{
		Time: e.Time, Node: e.Node, Type: e.Type, Verdict: e.Verdict, Reason: e.Reason,
		Direction: e.Direction, Protocol: e.Protocol,
		Source: wireFlowEndpoint(e.Source), Destination: wireFlowEndpoint(e.Destination),
		Policy: e.Policy, Service: e.Service,
	}
	if l := e.L7; l != nil {
		out.L7 = &agentclient.FlowL7{
			Protocol: l.Protocol, Method: l.Method, Path: l.Path, Host: l.Host,
			Status: l.Status, GRPCStatus: l.GRPCStatus, Latency: l.Latency,
		}
		if k := l.Kafka; k != nil {
			out.L7.Kafka = &agentclient.FlowKafka{APIKey: k.APIKey, APIVersion: k.APIVersion, ClientID: k.ClientID, Topics: k.Topics, ErrorCode: k.ErrorCode}
		}
		if d := l.DNS; d != nil {
			out.L7.DNS = &agentclient.FlowDNS{Query: d.Query, Type: d.Type, RCode: d.RCode, Answers: d.Answers, Observed: d.Observed}
		}
	}
	return out
}

func wireFlowEndpoint(e monitor.Endpoint) agentclient.FlowEndpoint {
	return agentclient.FlowEndpoint{
		IP: e.IP, Port: e.Port, Identity: e.Identity,
		Namespace: e.Namespace, Pod: e.Pod, Labels: e.Labels,
	}
}

// wireTraceResult is a trace as the API sends it. Each side's compiled L7
// policy is reduced to its parser.
func wireTraceResult(tr *policy.TraceResult) *agentclient.TraceResult {
	return &agentclient.TraceResult{
		Src: wireIdentity(tr.Src), Dst: wireIdentity(tr.Dst),
		Egress: wireTraceSide(&tr.Egress), Ingress: wireTraceSide(&tr.Ingress),
		Verdict: tr.Verdict,
	}
}

func wireIdentity(id *policy.Identity) *agentclient.Identity {
	if id == nil {
		return nil
	}
	out := &agentclient.Identity{ID: uint32(id.ID), Labels: wireLabels(id.Labels)}
	for _, p := range id.Prefixes {
		out.Prefixes = append(out.Prefixes, p.String())
	}
	return out
}

// wireLabels are the labels in a stable order (a Labels is a map).
func wireLabels(ls policy.Labels) []agentclient.Label {
	sorted := ls.Sorted()
	out := make([]agentclient.Label, len(sorted))
	for i, l := range sorted {
		out[i] = agentclient.Label{Source: l.Source, Key: l.Key, Value: l.Value}
	}
	return out
}

func wireTraceSide(s *policy.TraceSide) agentclient.TraceSide {
	out := agentclient.TraceSide{
		Direction: s.Direction.String(), Endpoint: s.Endpoint, Applies: s.Applies, Enforced: s.Enforced,
		Decision: wireDecision(&s.Decision), Audit: s.Audit, Verdict: s.Verdict,
	}
	for _, k := range s.SelectedBy {
		out.SelectedBy = append(out.SelectedBy, wirePolicyRef(k))
	}
	if v := s.L7; v != nil {
		out.L7 = &agentclient.L7Verdict{Parser: v.Parser, Allowed: v.Allowed, Rule: v.Rule, Reason: v.Reason, Actions: v.Actions}
	}
	return out
}

func wireDecision(d *policy.Decision) agentclient.Decision {
	out := agentclient.Decision{
		Verdict: d.Verdict.String(), Tier: d.Tier.String(), Rule: wireRuleRef(d.Rule),
		DefaultDeny: d.DefaultDeny, Reason: d.Reason,
	}
	for _, r := range d.Rules {
		out.Rules = append(out.Rules, wireRuleRef(r))
	}
	if d.L7 != nil {
		out.Parser = d.L7.Parser.String()
	}
	if d.PassedBy != nil {
		r := wireRuleRef(*d.PassedBy)
		out.PassedBy = &r
	}
	return out
}

func wireRuleRef(r policy.RuleRef) agentclient.RuleRef {
	return agentclient.RuleRef{Policy: wirePolicyRef(r.Policy), Path: r.Path}
}

func wirePolicyRef(k policy.PolicyKey) agentclient.PolicyRef {
	return agentclient.PolicyRef{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
}

// engineLabels are a trace request's labels in the engine's terms.
func engineLabels(ls []agentclient.Label) policy.Labels {
	out := policy.Labels{}
	for _, l := range ls {
		out.Add(l.Source, l.Key, l.Value)
	}
	return out
}

func engineHTTPRequest(r *agentclient.HTTPRequest) *l7.HTTPRequest {
	if r == nil {
		return nil
	}
	return &l7.HTTPRequest{Method: r.Method, Path: r.Path, Host: r.Host, Header: http.Header(r.Header), ServerName: r.ServerName}
}

func engineKafkaRequest(r *agentclient.KafkaRequest) *l7.KafkaRequest {
	if r == nil {
		return nil
	}
	return &l7.KafkaRequest{APIKey: r.APIKey, APIVersion: r.APIVersion, ClientID: r.ClientID, Topics: r.Topics, ServerName: r.ServerName}
}
