package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/agentclient"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
)

// traceFlags are the flags of `policy trace`, as given.
type traceFlags struct {
	files                 []string
	src, srcIP, srcEntity string
	dst, dstIP, dstEntity string
	dport                 string
	http, httpHost        string
	httpHeaders           []string
	kafka, kafkaClientID  string
	kafkaAPIVersion       int16
	dns, sni              string
	fqdns                 []string
	mode                  string
	audit                 bool
	output                string
	live                  bool
	socket                string
}

// peerSpec is a traced peer as given on the command line.
type peerSpec struct {
	// Kind is "pod", "ip", "entity" or "service" (--dst svc:NS/NAME, live
	// only).
	Kind  string
	Value string
	Peer  policy.TracePeer
}

// traceInput is a parsed trace command line.
type traceInput struct {
	src, dst peerSpec
	req      policy.TraceRequest
	mode     policy.Mode
	audit    bool
	json     bool
	// fqdns are DNS answers to record before the trace, from --fqdn.
	fqdns []fqdnAnswer
}

// fqdnAnswer is one --fqdn NAME=IP[,IP...].
type fqdnAnswer struct {
	name string
	ips  []netip.Addr
}

func newTraceCommand() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "trace (-f FILE_OR_DIR | --live) (--src LABELS | --src-ip IP | --src-entity NAME) (--dst LABELS | --dst-ip IP | --dst-entity NAME) --dport PORT[/PROTO]",
		Short: "Explain whether a flow (and an L7 request) is allowed",
		Long: `Trace loads the policy files, places the source and the destination (pods
given by labels, addresses or entities) and explains, side by side, what
the source's egress policy and the destination's ingress policy decide for
the flow: at L4 (allow, deny or redirect to the proxy) and, for a
redirected port, for the L7 request given by --http, --kafka, --dns or
--sni. A port whose rules require a TLS server name refuses a connection
without one: without --sni (or with --sni '') the trace answers for such a
connection.

--fqdn NAME=IP[,IP...] records that NAME resolved to the addresses, as if
the source had looked it up through an allowed DNS rule, so that toFQDNs
rules select them: trace a --dst-ip with it to answer as the agent would
after the lookup.

LABELS is a comma-separated list of key=value (a k8s: prefix is optional).
io.kubernetes.pod.namespace=NS puts the pod in namespace NS (default
"default") and io.cilium.k8s.policy.serviceaccount=SA gives its service
account. A pod given by labels is a local endpoint; an address is one only
if it belongs to a local endpoint, and an entity never is.

With --live, the flow is traced against the policy of the agent running
on this node (its API socket, --socket), instead of files: its policies,
namespaces, pods and enforcement mode as they are in force. A pod given
by labels is then the pod the agent knows that has them (a local one
first; io.kubernetes.pod.namespace=NS narrows it to a namespace, any
namespace otherwise), and the output names it. --dst svc:NS/NAME (live
only) is a Service: the flow is traced as the datapath translates it, to
the first ready backend of the Service's port --dport, at its target port
(the output names the backend and the port traced); a Service port with
no ready backend is refused, as the datapath refuses it.

The last line of the text output is "Final verdict: ALLOWED", "DENIED" or
"AUDITED". The exit status is 0 whatever the verdict, 1 for bad input
files, 2 for a bad command line.`,
		Example: `  portcullis policy trace -f examples/starwars \
      --src org=empire,class=tiefighter --dst org=empire,class=deathstar \
      --dport 80 --http 'PUT /v1/exhaust-port'
  portcullis policy trace -f examples/kafka --src app=empire-hq --dst app=kafka \
      --dport 9092 --kafka produce:empire-announce -o json
  portcullis policy trace --live --src class=xwing --dst class=deathstar --dport 80
  portcullis policy trace --live --src class=tiefighter --dst svc:default/deathstar --dport 80`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := parseTraceFlags(cmd, &f)
			if err != nil {
				return err
			}
			if f.live {
				return runLiveTrace(cmd.Context(), cmd.OutOrStdout(), f.socket, in)
			}
			return runTrace(cmd.OutOrStdout(), cmd.ErrOrStderr(), f.files, in)
		},
	}
	fl := cmd.Flags()
	// -f is required unless --live (checked in parseTraceFlags).
	fl.StringArrayVarP(&f.files, "filename", "f", nil,
		"policy file or directory (*.yaml, *.yml, *.json, read recursively); - reads standard input; repeatable; required unless --live")
	fl.BoolVar(&f.live, "live", false, "trace against the policy of the running agent on this node (through its API socket) instead of files; pods given by labels must be pods the agent knows")
	addSocketFlag(cmd, &f.socket)
	fl.StringVar(&f.src, "src", "", "source pod labels, k=v[,k=v...]")
	fl.StringVar(&f.srcIP, "src-ip", "", "source address")
	fl.StringVar(&f.srcEntity, "src-entity", "", "source entity (host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress)")
	fl.StringVar(&f.dst, "dst", "", "destination pod labels, k=v[,k=v...], or with --live a Service, svc:NAMESPACE/NAME")
	fl.StringVar(&f.dstIP, "dst-ip", "", "destination address")
	fl.StringVar(&f.dstEntity, "dst-entity", "", "destination entity (as --src-entity)")
	fl.StringVar(&f.dport, "dport", "", "destination port and protocol, PORT[/TCP|UDP|SCTP|ICMP|ICMPv6] (default TCP; for ICMP the port is the ICMP type), or VRRP or IGMP, which have no ports")
	fl.StringVar(&f.http, "http", "", "HTTP request to trace, 'METHOD PATH' (a gRPC call is 'POST /package.Service/Method')")
	fl.StringVar(&f.httpHost, "http-host", "", "Host header of the HTTP request")
	fl.StringArrayVar(&f.httpHeaders, "http-header", nil, "header of the HTTP request, 'Name: value'; repeatable")
	fl.StringVar(&f.kafka, "kafka", "", "Kafka request to trace, 'APIKEY[:TOPIC[,TOPIC...]]'; APIKEY is a name (produce, fetch, metadata, ...), a number, or a role (produce, consume = fetch)")
	fl.StringVar(&f.kafkaClientID, "kafka-client-id", "", "client ID of the Kafka request")
	fl.Int16Var(&f.kafkaAPIVersion, "kafka-api-version", 0, "API version of the Kafka request")
	fl.StringVar(&f.dns, "dns", "", "DNS name looked up, for a port redirected to the DNS proxy")
	fl.StringVar(&f.sni, "sni", "", "TLS server name (SNI) of the connection; '' for a connection without one")
	fl.StringArrayVar(&f.fqdns, "fqdn", nil, "DNS answer to assume, NAME=IP[,IP...], for toFQDNs rules; repeatable")
	fl.StringVar(&f.mode, "mode", string(policy.ModeDefault), "enforcement mode: default (allow what no policy selects), always (deny it) or never (enforce nothing)")
	fl.BoolVar(&f.audit, "audit", false, "global audit mode: report denials as AUDITED and allow the flow")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("dport")
	cmd.MarkFlagsMutuallyExclusive("src", "src-ip", "src-entity")
	cmd.MarkFlagsOneRequired("src", "src-ip", "src-entity")
	cmd.MarkFlagsMutuallyExclusive("dst", "dst-ip", "dst-entity")
	cmd.MarkFlagsOneRequired("dst", "dst-ip", "dst-entity")
	cmd.MarkFlagsMutuallyExclusive("http", "kafka", "dns")
	return cmd
}

// parseTraceFlags checks and parses the flags; its errors are usage
// errors.
func parseTraceFlags(cmd *cobra.Command, f *traceFlags) (*traceInput, error) {
	in := &traceInput{audit: f.audit}
	var err error
	changed := cmd.Flags().Changed
	switch {
	case f.live && changed("filename"):
		return nil, errors.New("--live traces the agent's policy: -f cannot be used with it")
	case f.live && (changed("mode") || changed("audit")):
		return nil, errors.New("--live uses the agent's enforcement and audit mode: --mode and --audit cannot be used with it")
	case !f.live && changed("socket"):
		return nil, errors.New("--socket needs --live")
	case !f.live && len(f.files) == 0:
		return nil, errors.New(`required flag(s) "filename" not set`)
	}
	if in.src, err = parsePeer(cmd, "src", f.src, f.srcIP, f.srcEntity); err != nil {
		return nil, err
	}
	if in.dst, err = parsePeer(cmd, "dst", f.dst, f.dstIP, f.dstEntity); err != nil {
		return nil, err
	}
	if in.src.Kind == "service" {
		return nil, errors.New("--src: a Service is a destination only")
	}
	if in.dst.Kind == "service" && !f.live {
		return nil, errors.New("--dst svc:NS/NAME needs --live: the agent knows the Service's backends")
	}
	in.req.Src, in.req.Dst = in.src.Peer, in.dst.Peer
	if in.req.Port, in.req.Proto, err = parsePort(f.dport); err != nil {
		return nil, fmt.Errorf("--dport: %w", err)
	}
	if (changed("http-host") || changed("http-header")) && !changed("http") {
		return nil, errors.New("--http-host and --http-header need --http")
	}
	if (changed("kafka-client-id") || changed("kafka-api-version")) && !changed("kafka") {
		return nil, errors.New("--kafka-client-id and --kafka-api-version need --kafka")
	}
	if changed("http") {
		if in.req.HTTP, err = parseHTTP(f.http, f.httpHost, f.httpHeaders); err != nil {
			return nil, err
		}
	}
	if changed("kafka") {
		if in.req.Kafka, err = parseKafka(f.kafka); err != nil {
			return nil, fmt.Errorf("--kafka: %w", err)
		}
		in.req.Kafka.ClientID = f.kafkaClientID
		if f.kafkaAPIVersion < 0 {
			return nil, fmt.Errorf("--kafka-api-version: %d is negative", f.kafkaAPIVersion)
		}
		in.req.Kafka.APIVersion = f.kafkaAPIVersion
	}
	if changed("dns") {
		if strings.TrimSpace(f.dns) == "" {
			return nil, errors.New("--dns: empty name")
		}
		in.req.DNS = strings.TrimSpace(f.dns)
	}
	if changed("sni") {
		// --sni '' is a connection without SNI, the same as no --sni.
		in.req.SNI = strings.TrimSpace(f.sni)
		if in.req.HTTP != nil {
			in.req.HTTP.ServerName = in.req.SNI
		}
	}
	if f.live && changed("fqdn") {
		return nil, errors.New("--live uses the DNS answers the agent has seen: --fqdn cannot be used with it")
	}
	for _, a := range f.fqdns {
		ans, err := parseFQDN(a)
		if err != nil {
			return nil, fmt.Errorf("--fqdn %q: %w", a, err)
		}
		in.fqdns = append(in.fqdns, ans)
	}
	if in.mode, err = policy.ParseMode(f.mode); err != nil {
		return nil, fmt.Errorf("--mode: %w", err)
	}
	switch f.output {
	case "text":
	case "json":
		in.json = true
	default:
		return nil, fmt.Errorf("--output: unknown format %q (want text or json)", f.output)
	}
	return in, nil
}

// parsePeer reads the one flag of --NAME, --NAME-ip and --NAME-entity
// that was given.
func parsePeer(cmd *cobra.Command, name, labels, ip, entity string) (peerSpec, error) {
	changed := cmd.Flags().Changed
	switch {
	case changed(name) && strings.HasPrefix(strings.TrimSpace(labels), servicePrefix):
		ref := strings.TrimPrefix(strings.TrimSpace(labels), servicePrefix)
		if !strings.Contains(ref, "/") {
			ref = "default/" + ref
		}
		ns, svc, _ := strings.Cut(ref, "/")
		if ns == "" || svc == "" || strings.Contains(svc, "/") {
			return peerSpec{}, fmt.Errorf("--%s: %q is not svc:NAMESPACE/NAME", name, labels)
		}
		return peerSpec{Kind: "service", Value: ref}, nil
	case changed(name):
		ls, err := policy.ParseLabels(labels)
		if err != nil {
			return peerSpec{}, fmt.Errorf("--%s: %w", name, err)
		}
		for _, l := range ls {
			if l.Source == policy.SourceReserved {
				return peerSpec{}, fmt.Errorf("--%s: reserved label %s: use --%s-entity instead", name, l, name)
			}
		}
		return peerSpec{Kind: "pod", Value: labels, Peer: policy.TracePeer{Labels: ls}}, nil
	case changed(name + "-ip"):
		a, err := netip.ParseAddr(strings.TrimSpace(ip))
		if err != nil {
			return peerSpec{}, fmt.Errorf("--%s-ip: %w", name, err)
		}
		return peerSpec{Kind: "ip", Value: a.String(), Peer: policy.TracePeer{IP: a}}, nil
	case changed(name + "-entity"):
		e := strings.TrimSpace(entity)
		if _, ok := policy.ReservedIdentityByName(e); !ok {
			return peerSpec{}, fmt.Errorf("--%s-entity: unknown entity %q (want host, world, unmanaged, health, init, remote-node, kube-apiserver or ingress)", name, entity)
		}
		return peerSpec{Kind: "entity", Value: e, Peer: policy.TracePeer{Entity: e}}, nil
	}
	return peerSpec{}, fmt.Errorf("one of --%[1]s, --%[1]s-ip or --%[1]s-entity is required", name)
}

// servicePrefix starts a --dst that names a Service.
const servicePrefix = "svc:"

// parsePort parses PORT[/PROTO]; for ICMP and ICMPv6 the port is the
// message type. VRRP and IGMP have no ports: they are given alone (or as
// 0/VRRP, 0/IGMP) and traced as port 0, as the datapath looks them up.
func parsePort(s string) (uint16, uint8, error) {
	s = strings.TrimSpace(s)
	switch strings.ToUpper(s) {
	case "VRRP", "IGMP":
		s = "0/" + s
	}
	ps, protoName, hasProto := strings.Cut(s, "/")
	proto := policy.ProtoTCP
	if hasProto {
		var err error
		switch strings.ToUpper(protoName) {
		case "TCP", "UDP", "SCTP", "ICMP", "ICMPV6", "VRRP", "IGMP":
			proto, err = policy.ParseProto(protoName)
		default:
			err = fmt.Errorf("unknown protocol %q (want TCP, UDP, SCTP, ICMP, ICMPv6, VRRP or IGMP)", protoName)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if !policy.HasPorts(proto) {
		if ps != "0" {
			return 0, 0, fmt.Errorf("%s has no ports: give --dport %s (or 0/%s)", policy.ProtoName(proto), policy.ProtoName(proto), policy.ProtoName(proto))
		}
		return 0, proto, nil
	}
	if proto == policy.ProtoICMP || proto == policy.ProtoICMPv6 {
		n, err := strconv.ParseUint(ps, 10, 8)
		if err != nil {
			return 0, 0, fmt.Errorf("ICMP type %q is not a number from 0 to 255", ps)
		}
		return uint16(n), proto, nil
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("port %q is not a number from 1 to 65535", ps)
	}
	return uint16(n), proto, nil
}

// parseHTTP builds the HTTP request of --http 'METHOD PATH', --http-host
// and --http-header 'Name: value'.
func parseHTTP(reqLine, host string, headers []string) (*l7.HTTPRequest, error) {
	method, path, _ := strings.Cut(strings.TrimSpace(reqLine), " ")
	path = strings.TrimSpace(path)
	if method == "" || path == "" || strings.ContainsAny(path, " \t") {
		return nil, fmt.Errorf("--http: %q is not 'METHOD PATH'", reqLine)
	}
	req := &l7.HTTPRequest{Method: method, Path: path, Host: host, Header: http.Header{}}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("--http-header: %q is not 'Name: value'", h)
		}
		req.Header.Add(name, strings.TrimSpace(value))
	}
	return req, nil
}

// parseKafka parses 'APIKEY[:TOPIC[,TOPIC...]]': APIKEY is an API key name
// or number, or a role (produce is the produce key, consume the fetch key).
func parseKafka(s string) (*l7.KafkaRequest, error) {
	keyName, topics, _ := strings.Cut(strings.TrimSpace(s), ":")
	keyName = strings.TrimSpace(keyName)
	var key int16
	if n, err := strconv.ParseInt(keyName, 10, 16); err == nil {
		if n < 0 {
			return nil, fmt.Errorf("API key %d is negative", n)
		}
		key = int16(n)
	} else if k, ok := l7.KafkaAPIKeyByName(keyName); ok {
		key = k
	} else if strings.EqualFold(keyName, l7.KafkaRoleConsume) {
		key, _ = l7.KafkaAPIKeyByName("fetch")
	} else {
		return nil, fmt.Errorf("unknown API key or role %q (want a name such as produce, fetch or metadata, a number, or the role consume)", keyName)
	}
	req := &l7.KafkaRequest{APIKey: key}
	if topics != "" {
		for _, t := range strings.Split(topics, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				return nil, fmt.Errorf("empty topic in %q", topics)
			}
			req.Topics = append(req.Topics, t)
		}
	}
	return req, nil
}

// parseFQDN parses NAME=IP[,IP...].
func parseFQDN(s string) (fqdnAnswer, error) {
	name, ips, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.TrimSpace(ips) == "" {
		return fqdnAnswer{}, errors.New("want NAME=IP[,IP...]")
	}
	ans := fqdnAnswer{name: name}
	for _, ip := range strings.Split(ips, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(ip))
		if err != nil {
			return fqdnAnswer{}, err
		}
		ans.ips = append(ans.ips, a)
	}
	return ans, nil
}

// runTrace loads the files, traces the flow and writes the explanation.
func runTrace(stdout, stderr io.Writer, files []string, in *traceInput) error {
	repo := policy.NewRepository(policy.Options{})
	repo.SetMode(in.mode, in.audit)
	res, err := loadRepository(repo, files)
	if err != nil {
		return err
	}
	printWarnings(stderr, res)
	for _, a := range in.fqdns {
		repo.ObserveDNS(a.name, a.ips)
	}
	tr, err := repo.Trace(in.req)
	if err != nil {
		return inputErrorf("tracing: %v", err)
	}
	var out []byte
	if in.json {
		out, err = renderJSON(in, tr)
		if err != nil {
			return inputErrorf("rendering the trace: %v", err)
		}
	} else {
		out = renderText(in, tr)
	}
	if _, err := stdout.Write(out); err != nil {
		return inputErrorf("writing the trace: %v", err)
	}
	return nil
}

// runLiveTrace traces the flow against the agent's live repository and
// writes the explanation as runTrace does; the peers are shown as the
// agent resolved them.
func runLiveTrace(ctx context.Context, stdout io.Writer, socket string, in *traceInput) error {
	req := agentclient.TraceRequest{
		Src: livePeer(in.src), Dst: livePeer(in.dst), Proto: in.req.Proto, Port: in.req.Port,
		HTTP: wireHTTPRequest(in.req.HTTP), Kafka: wireKafkaRequest(in.req.Kafka), DNS: in.req.DNS, SNI: in.req.SNI,
	}
	resp, err := agentclient.NewClient(socket).Trace(ctx, req)
	if err != nil {
		return agentError(err)
	}
	tr, err := engineTraceResult(resp.Result)
	if err != nil {
		return inputErrorf("agent at %s: %v", socket, err)
	}
	live := *in
	live.src = peerSpec{Kind: resp.Src.Kind, Value: resp.Src.Value}
	live.dst = peerSpec{Kind: resp.Dst.Kind, Value: resp.Dst.Value}
	live.audit = resp.Audit
	if resp.Port != 0 {
		live.req.Port = resp.Port
	}
	if live.mode, err = policy.ParseMode(resp.Mode); err != nil {
		return inputErrorf("agent at %s: %v", socket, err)
	}
	var out []byte
	if in.json {
		if out, err = renderJSON(&live, tr); err != nil {
			return inputErrorf("rendering the trace: %v", err)
		}
	} else {
		out = renderText(&live, tr)
	}
	if _, err := stdout.Write(out); err != nil {
		return inputErrorf("writing the trace: %v", err)
	}
	return nil
}

// livePeer is a command-line peer as the agent's API takes it.
func livePeer(p peerSpec) agentclient.TracePeer {
	switch p.Kind {
	case "ip":
		return agentclient.TracePeer{IP: p.Value}
	case "entity":
		return agentclient.TracePeer{Entity: p.Value}
	case "service":
		return agentclient.TracePeer{Service: p.Value}
	}
	ls := p.Peer.Labels.Sorted()
	out := agentclient.TracePeer{Labels: make([]agentclient.Label, len(ls))}
	for i, l := range ls {
		out.Labels[i] = agentclient.Label{Source: l.Source, Key: l.Key, Value: l.Value}
	}
	return out
}

func wireHTTPRequest(r *l7.HTTPRequest) *agentclient.HTTPRequest {
	if r == nil {
		return nil
	}
	return &agentclient.HTTPRequest{Method: r.Method, Path: r.Path, Host: r.Host, Header: r.Header, ServerName: r.ServerName}
}

func wireKafkaRequest(r *l7.KafkaRequest) *agentclient.KafkaRequest {
	if r == nil {
		return nil
	}
	return &agentclient.KafkaRequest{APIKey: r.APIKey, APIVersion: r.APIVersion, ClientID: r.ClientID, Topics: r.Topics, ServerName: r.ServerName}
}

// engineTraceResult turns the agent's trace into the engine's terms, so
// that a live trace is rendered by the code that renders one from files.
// A redirect's L7 policy comes back as its parser alone.
func engineTraceResult(tr *agentclient.TraceResult) (*policy.TraceResult, error) {
	src, err := engineIdentity(tr.Src)
	if err != nil {
		return nil, fmt.Errorf("source identity: %w", err)
	}
	dst, err := engineIdentity(tr.Dst)
	if err != nil {
		return nil, fmt.Errorf("destination identity: %w", err)
	}
	out := &policy.TraceResult{Src: src, Dst: dst, Verdict: tr.Verdict}
	if out.Egress, err = engineTraceSide(&tr.Egress); err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	if out.Ingress, err = engineTraceSide(&tr.Ingress); err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	return out, nil
}

func engineIdentity(id *agentclient.Identity) (*policy.Identity, error) {
	if id == nil {
		return nil, errors.New("missing")
	}
	out := &policy.Identity{ID: policy.NumericIdentity(id.ID), Labels: policy.Labels{}}
	for _, l := range id.Labels {
		out.Labels.Add(l.Source, l.Key, l.Value)
	}
	for _, s := range id.Prefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out.Prefixes = append(out.Prefixes, p)
	}
	return out, nil
}

func engineTraceSide(s *agentclient.TraceSide) (policy.TraceSide, error) {
	out := policy.TraceSide{
		Endpoint: s.Endpoint, Applies: s.Applies, Enforced: s.Enforced, Audit: s.Audit, Verdict: s.Verdict,
	}
	var err error
	if out.Direction, err = byName(s.Direction, policy.Ingress, policy.Egress); err != nil {
		return out, fmt.Errorf("direction: %w", err)
	}
	for _, k := range s.SelectedBy {
		out.SelectedBy = append(out.SelectedBy, enginePolicyKey(k))
	}
	if out.Decision, err = engineDecision(&s.Decision); err != nil {
		return out, err
	}
	if v := s.L7; v != nil {
		out.L7 = &policy.L7Verdict{Parser: v.Parser, Allowed: v.Allowed, Rule: v.Rule, Reason: v.Reason, Actions: v.Actions}
	}
	return out, nil
}

func engineDecision(d *agentclient.Decision) (policy.Decision, error) {
	out := policy.Decision{Rule: engineRuleRef(d.Rule), DefaultDeny: d.DefaultDeny, Reason: d.Reason}
	var err error
	if out.Verdict, err = byName(d.Verdict, policy.Allow, policy.Deny, policy.Redirect); err != nil {
		return out, fmt.Errorf("L4 verdict: %w", err)
	}
	if out.Tier, err = byName(d.Tier, policy.TierNone, policy.TierAdmin, policy.TierNamespace, policy.TierBaseline, policy.TierDefault); err != nil {
		return out, fmt.Errorf("tier: %w", err)
	}
	for _, r := range d.Rules {
		out.Rules = append(out.Rules, engineRuleRef(r))
	}
	if d.Parser != "" {
		p, err := byName(d.Parser, l7.ParserNone, l7.ParserHTTP, l7.ParserKafka, l7.ParserDNS)
		if err != nil {
			return out, fmt.Errorf("L7 parser: %w", err)
		}
		out.L7 = &l7.Policy{Parser: p}
	}
	if d.PassedBy != nil {
		r := engineRuleRef(*d.PassedBy)
		out.PassedBy = &r
	}
	return out, nil
}

func engineRuleRef(r agentclient.RuleRef) policy.RuleRef {
	return policy.RuleRef{Policy: enginePolicyKey(r.Policy), Path: r.Path}
}

func enginePolicyKey(k agentclient.PolicyRef) policy.PolicyKey {
	return policy.PolicyKey{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
}

// byName is the value among values whose String is name: the engine's
// names are the wire's, so they are looked up rather than listed twice.
func byName[T fmt.Stringer](name string, values ...T) (T, error) {
	for _, v := range values {
		if v.String() == name {
			return v, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("unknown value %q", name)
}
