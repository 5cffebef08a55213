package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"portcullis.dev/portcullis/monitor"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/proxy"
	"portcullis.dev/portcullis/proxy/dns"
	proxyhttp "portcullis.dev/portcullis/proxy/http"
	proxykafka "portcullis.dev/portcullis/proxy/kafka"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// The standalone proxy places its two endpoints at documentation
// addresses (RFC 5737): they only name the flow for the policy engine.
var (
	standaloneSrcIP = netip.MustParseAddr("192.0.2.1")
	standaloneDstIP = netip.MustParseAddr("192.0.2.2")
)

// proxyFlags are the flags of `portcullis proxy`, as given.
type proxyFlags struct {
	files       []string
	listen      string
	upstream    string
	src, dst    string
	metricsAddr string
	output      string
	advertise   string
	dport       uint16
	maxConns    int
	kafkaMax    int
	// How paths and field names are interpreted (proxyhttp.Options).
	escapedSlashes         string
	noNormalize, noMerge   bool
	allowHeaderUnderscores bool
}

// standalone is a parsed `portcullis proxy` command line.
type standalone struct {
	files       []string
	listen      string
	upstream    netip.AddrPort
	upstreamArg string
	src, dst    *policy.Endpoint
	metricsAddr string
	json        bool
	maxConns    int
	// advertise is --advertise, "" for the default (see advertisedAddr).
	advertise string
	// kafkaMax is --kafka-max-request-bytes.
	kafkaMax int
	// dport is the flow's destination port: --dport, else the upstream's.
	dport uint16
	// interp carries the path and field-name flags into the HTTP server's
	// Options.
	interp proxyhttp.Options
}

func newProxyCommand() *cobra.Command {
	var f proxyFlags
	cmd := &cobra.Command{
		Use:   "proxy --policy FILE_OR_DIR --listen ADDR --upstream ADDR --src LABELS --dst LABELS",
		Short: "Run the L7 proxy standalone, in front of one upstream",
		Long: `Proxy runs the node proxy's HTTP (HTTP/1.1, h2c, gRPC), Kafka and DNS code paths
without a cluster or a kernel datapath. It loads the policy files, places a source
pod and a destination pod given by their labels (as in 'policy trace':
io.kubernetes.pod.namespace=NS sets the namespace, default "default"), and
treats every connection accepted on --listen as a flow from the source pod
to the destination pod on the port of --upstream (or --dport). Allowed requests go to
--upstream; denied ones are answered by the proxy (HTTP 403, gRPC status
7, Kafka's authorization error codes, DNS REFUSED). When the port's UDP
rules are DNS rules, --listen also takes DNS queries over UDP (and its TCP
side DNS over TCP), judged by name. When the rules on that port are
Kafka rules, the broker addresses in Metadata and FindCoordinator answers
are rewritten to --advertise (default: the --listen address), so that a
client's every connection passes the proxy. One access record per request goes to standard output, as text or as
JSON flow events (-o json). TLS: serverNames are judged on the ClientHello;
a terminatingTLS or originatingTLS takes its certificates from the Secret
objects (v1, data or stringData) in the --policy files, by the namespace and
name the policy names. It runs until interrupted.`,
		Example: `  portcullis proxy --policy examples/starwars --listen 127.0.0.1:8080 \
      --upstream 127.0.0.1:80 --src org=empire,class=tiefighter \
      --dst org=empire,class=deathstar`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := parseProxyFlags(&f)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return runProxy(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), in)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.files, "policy", nil, "policy file or directory (*.yaml, *.yml, *.json, read recursively); repeatable")
	fl.StringVar(&f.listen, "listen", "", "address to accept client connections on, HOST:PORT")
	fl.StringVar(&f.upstream, "upstream", "", "address of the upstream server, IP:PORT; its port is the flow's destination port")
	fl.StringVar(&f.src, "src", "", "source pod labels, k=v[,k=v...]")
	fl.StringVar(&f.dst, "dst", "", "destination pod labels, k=v[,k=v...]")
	fl.Uint16Var(&f.dport, "dport", 0, "destination port of the flow as the policy sees it (default: the port of --upstream)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on HOST:PORT at /metrics (default: off)")
	fl.StringVar(&f.advertise, "advertise", "", "Kafka: broker address given to clients, HOST:PORT (default: the --listen address; 127.0.0.1 for a wildcard host)")
	fl.IntVar(&f.kafkaMax, "kafka-max-request-bytes", proxykafka.DefaultMaxRequestBytes, "Kafka: largest request accepted; a larger one (or a negative size) closes the connection (Kafka's socket.request.max.bytes)")
	fl.StringVarP(&f.output, "output", "o", "text", "access log format: text or json")
	fl.IntVar(&f.maxConns, "max-connections", proxy.DefaultMaxConns, "connections served at once; at the limit the oldest one without a request is reset to make room, else new ones are (about 15 KiB and two file descriptors per idle connection)")
	fl.StringVar(&f.escapedSlashes, "escaped-slashes", "reject", "HTTP paths with %2F or %5C: reject (400) or keep (judged and forwarded as they are)")
	fl.BoolVar(&f.noNormalize, "no-normalize-path", false, "HTTP: judge and forward the path without decoding unreserved escapes or removing dot segments")
	fl.BoolVar(&f.noMerge, "no-merge-slashes", false, "HTTP: keep runs of slashes in the path")
	fl.BoolVar(&f.allowHeaderUnderscores, "allow-header-underscores", false, "HTTP: forward header fields whose names hold an underscore (default: 400)")
	for _, name := range []string{"policy", "listen", "upstream", "src", "dst"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// parseProxyFlags checks and parses the flags; its errors are usage errors.
func parseProxyFlags(f *proxyFlags) (*standalone, error) {
	in := &standalone{files: f.files, listen: f.listen, metricsAddr: f.metricsAddr, upstreamArg: f.upstream}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	up, err := netip.ParseAddrPort(strings.TrimSpace(f.upstream))
	if err != nil {
		return nil, fmt.Errorf("--upstream: %q is not IP:PORT: %w", f.upstream, err)
	}
	if up.Port() == 0 {
		return nil, fmt.Errorf("--upstream: port 0")
	}
	in.upstream = up
	in.dport = up.Port()
	if f.dport != 0 {
		in.dport = f.dport
	}
	if in.src, err = standaloneEndpoint("src", f.src, standaloneSrcIP); err != nil {
		return nil, err
	}
	if in.dst, err = standaloneEndpoint("dst", f.dst, standaloneDstIP); err != nil {
		return nil, err
	}
	if f.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(f.metricsAddr); err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	if f.advertise != "" {
		if err := checkHostPort(f.advertise); err != nil {
			return nil, fmt.Errorf("--advertise: %w", err)
		}
		in.advertise = f.advertise
	}
	if f.kafkaMax < 1 {
		return nil, fmt.Errorf("--kafka-max-request-bytes: %d, want at least 1", f.kafkaMax)
	}
	in.kafkaMax = f.kafkaMax
	if f.maxConns < 1 {
		return nil, fmt.Errorf("--max-connections: %d, want at least 1", f.maxConns)
	}
	in.maxConns = f.maxConns
	switch f.escapedSlashes {
	case "reject":
	case "keep":
		in.interp.EscapedSlashes = proxyhttp.EscapedSlashesKeep
	default:
		return nil, fmt.Errorf("--escaped-slashes: %q, want reject or keep", f.escapedSlashes)
	}
	in.interp.NoNormalizePath, in.interp.NoMergeSlashes, in.interp.AllowHeaderUnderscores = f.noNormalize, f.noMerge, f.allowHeaderUnderscores
	switch f.output {
	case "text":
	case "json":
		in.json = true
	default:
		return nil, fmt.Errorf("--output: unknown format %q (want text or json)", f.output)
	}
	return in, nil
}

// standaloneEndpoint turns --NAME LABELS into a pod named NAME at ip, with
// the namespace and service account labels of `policy trace`.
func standaloneEndpoint(name, labels string, ip netip.Addr) (*policy.Endpoint, error) {
	ls, err := policy.ParseLabels(labels)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("--%s: no labels", name)
	}
	ep := &policy.Endpoint{Namespace: "default", Name: name, Labels: map[string]string{}, IPs: []netip.Addr{ip}}
	for _, l := range ls {
		switch {
		case l.Source == policy.SourceReserved:
			return nil, fmt.Errorf("--%s: reserved label %s: the standalone proxy's peers are pods", name, l)
		case l.Key == policy.LabelNamespace:
			ep.Namespace = l.Value
		case l.Key == policy.LabelServiceAccount:
			ep.ServiceAccount = l.Value
		case l.Key == policy.LabelCluster:
		default:
			ep.Labels[l.Key] = l.Value
		}
	}
	return ep, nil
}

// runProxy serves until ctx is done or a signal arrives.
func runProxy(ctx context.Context, stdout, stderr io.Writer, in *standalone) error {
	repo := policy.NewRepository(policy.Options{})
	res, err := loadRepository(repo, in.files)
	if err != nil {
		return err
	}
	secrets := proxytls.NewSecrets()
	if _, err := loadSecrets(res, secrets); err != nil {
		return err
	}
	res.Warnings = withoutSecretWarnings(res.Warnings)
	printWarnings(stderr, res)
	snap := &proxy.Snapshot{Endpoints: map[netip.Addr]*proxy.Endpoint{}}
	for _, ep := range []*policy.Endpoint{in.src, in.dst} {
		repo.UpsertEndpoint(ep)
	}
	for _, ep := range []*policy.Endpoint{in.src, in.dst} {
		pol := repo.EndpointPolicy(ep.Namespace, ep.Name)
		if pol == nil {
			return inputErrorf("no policy for the %s endpoint %s", ep.Name, ep.Key())
		}
		snap.Endpoints[ep.IPs[0]] = &proxy.Endpoint{Namespace: ep.Namespace, Name: ep.Name, IP: ep.IPs[0], Policy: pol}
	}
	// The repository does not change from here on: its lookups are a
	// fixed view.
	snap.Revision = repo.Revision()
	snap.Identities = repo.IdentityOfIP
	var store proxy.Store
	store.Set(snap)

	reg := prometheus.NewRegistry()
	metrics, err := proxy.NewMetrics(reg)
	if err != nil {
		return inputErrorf("metrics: %v", err)
	}
	log := newAccessLog(stdout, accessFlushInterval)
	defer log.close()
	record := func(e monitor.Event) {
		metrics.Observe(e)
		log.write(formatAccess(e, in.json))
	}
	dialer := net.Dialer{Timeout: proxy.DefaultDialTimeout}
	dial := func(ctx context.Context, _, _ netip.AddrPort) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", in.upstream.String())
	}
	ho := in.interp
	ho.Resolver, ho.Dial, ho.Record = &store, dial, record
	hs := proxyhttp.New(ho)
	defer hs.Close()
	l, err := net.Listen("tcp", in.listen)
	if err != nil {
		return inputErrorf("--listen %s: %v", in.listen, err)
	}
	// Kafka clients connect to the brokers that Metadata and
	// FindCoordinator answers name: the proxy names itself, so that every
	// connection of the client passes it.
	advertise := in.advertise
	if advertise == "" {
		if advertise, err = advertisedAddr(in.listen, l.Addr()); err != nil {
			_ = l.Close()
			return err
		}
	}
	ks, err := proxykafka.New(proxykafka.Options{Resolver: &store, Dial: dial, Record: record, Advertise: advertise, MaxRequestBytes: in.kafkaMax})
	if err != nil {
		_ = l.Close()
		return inputErrorf("--listen %s: %v", in.listen, err)
	}
	defer ks.Close()
	dnsFlow := func(src, _ netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
		return netip.AddrPortFrom(standaloneSrcIP, src.Port()), netip.AddrPortFrom(standaloneDstIP, in.dport)
	}
	ds, err := dns.New(dns.Options{
		Resolver: &store, Record: record, Dial: dial, Flow: dnsFlow,
		Upstream: func(netip.AddrPort) netip.AddrPort { return in.upstream },
	})
	if err != nil {
		_ = l.Close()
		return inputErrorf("%v", err)
	}
	defer ds.Close()
	// DNS over UDP on the same address when the port's UDP rules are DNS
	// rules (the TCP listener serves DNS over TCP by the same dispatch as
	// HTTP and Kafka).
	var uc *net.UDPConn
	if parser, _ := store.Resolve(netip.AddrPortFrom(standaloneSrcIP, 1), netip.AddrPortFrom(standaloneDstIP, in.dport), policy.ProtoUDP).Parser(); parser == l7.ParserDNS {
		ua, err := net.ResolveUDPAddr("udp", l.Addr().String())
		if err == nil {
			uc, err = net.ListenUDP("udp", ua)
		}
		if err != nil {
			_ = l.Close()
			return inputErrorf("--listen %s (UDP, for DNS): %v", in.listen, err)
		}
		go func() { _ = ds.ServeUDP(uc) }()
	}
	srcPort := func(c net.Conn) uint16 {
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			return uint16(ta.Port)
		}
		return 0
	}
	ts, err := proxytls.New(proxytls.Options{Resolver: &store, Dial: dial, Record: record, HTTP: hs, Secrets: secrets})
	if err != nil {
		_ = l.Close()
		return inputErrorf("%v", err)
	}
	p, err := proxy.New(proxy.Options{
		Resolver: &store, HTTP: hs, Kafka: ks, DNS: ds, TLS: ts, Dial: dial, Record: record, MaxConns: in.maxConns,
		Flow: func(c net.Conn) (netip.AddrPort, netip.AddrPort) {
			return netip.AddrPortFrom(standaloneSrcIP, srcPort(c)), netip.AddrPortFrom(standaloneDstIP, in.dport)
		},
	})
	if err != nil {
		_ = l.Close()
		return inputErrorf("%v", err)
	}
	var ms *nethttp.Server
	if in.metricsAddr != "" {
		ml, err := net.Listen("tcp", in.metricsAddr)
		if err != nil {
			_ = l.Close()
			return inputErrorf("--metrics-addr %s: %v", in.metricsAddr, err)
		}
		mux := nethttp.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ms = &nethttp.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(ml) }()
		fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", ml.Addr())
	}
	transports := ""
	if uc != nil {
		transports = " (DNS over UDP and TCP)"
	}
	fmt.Fprintf(stderr, "proxy listening on %s: %s/%s -> %s/%s:%d via %s%s\n", l.Addr(),
		in.src.Namespace, in.src.Name, in.dst.Namespace, in.dst.Name, in.dport, in.upstream, transports)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	select {
	case <-ctx.Done():
	case err = <-done:
	}
	_ = p.Close()
	if ms != nil {
		_ = ms.Close()
	}
	if err != nil {
		return inputErrorf("serving %s: %v", in.listen, err)
	}
	return nil
}

// advertisedAddr is the address the standalone proxy gives Kafka clients
// for the broker: the host of --listen with the port actually bound (a
// --listen port 0 picks one). A wildcard host (":9092", "0.0.0.0:9092")
// names no address a client could dial, so the bound address's host is
// used only when it is specific; otherwise the loopback address of its
// family, which is right for clients on this host only.
func advertisedAddr(listen string, bound net.Addr) (string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen: %w", err)
	}
	ta, ok := bound.(*net.TCPAddr)
	if !ok {
		return "", inputErrorf("--listen %s: bound to %s, not a TCP address", listen, bound)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		lo := "127.0.0.1"
		if err == nil && ip.Is6() {
			lo = "::1"
		}
		host = lo
	}
	return net.JoinHostPort(host, fmt.Sprint(ta.Port)), nil
}

// checkHostPort checks a HOST:PORT with a non-empty host and a port 1-65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	return nil
}

// accessFlushInterval bounds how long an access line waits in the
// buffer before it reaches standard output.
const accessFlushInterval = 100 * time.Millisecond

// accessLog is the standalone proxy's access log: lines go into a buffer
// that is written out when full, on a short timer and when the proxy
// stops, instead of one write(2) per request (that write cost about 9% of
// the throughput, docs/benchmarks.md). A buffer rather than a channel to
// a writer goroutine: every line is kept and in order, none is dropped
// when the log falls behind (an access log with holes misleads); a
// request waits on the log only when standard output itself cannot keep
// up, as it did with a write per request.
type accessLog struct {
	mu     sync.Mutex
	w      io.Writer
	bw     *bufio.Writer
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

func newAccessLog(w io.Writer, every time.Duration) *accessLog {
	l := &accessLog{w: w, bw: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.mu.Lock()
				_ = l.bw.Flush()
				l.mu.Unlock()
			}
		}
	}()
	return l
}

func (l *accessLog) write(line string) {
	l.mu.Lock()
	if l.closed {
		_, _ = io.WriteString(l.w, line)
	} else {
		_, _ = l.bw.WriteString(line)
	}
	l.mu.Unlock()
}

// close writes out what is buffered and stops the timer; lines recorded
// later (connections still closing) go out unbuffered.
func (l *accessLog) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	_ = l.bw.Flush()
	l.mu.Unlock()
	close(l.stop)
	<-l.done
}

// formatAccess renders one access record: a JSON flow event, or a line
// of text.
func formatAccess(e monitor.Event, asJSON bool) string {
	if asJSON {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Sprintf("{\"error\":%q}\n", err.Error())
		}
		return string(b) + "\n"
	}
	var b strings.Builder
	b.WriteString(e.Time.UTC().Format(time.RFC3339Nano))
	b.WriteString(" " + e.Verdict)
	fmt.Fprintf(&b, " %s -> %s", endpointName(e.Source), endpointName(e.Destination))
	if e.L7 != nil {
		b.WriteString(" " + e.L7.Protocol)
		if e.L7.Method != "" {
			fmt.Fprintf(&b, " %s %s", e.L7.Method, e.L7.Path)
		}
		if e.L7.Status != 0 {
			fmt.Fprintf(&b, " %d", e.L7.Status)
		}
		if e.L7.GRPCStatus != nil {
			fmt.Fprintf(&b, " grpc-status=%d", *e.L7.GRPCStatus)
		}
		if e.L7.Kafka != nil {
			fmt.Fprintf(&b, " %s", e.L7.Kafka)
		}
		if e.L7.DNS != nil {
			fmt.Fprintf(&b, " %s", e.L7.DNS)
		}
		if e.L7.Latency > 0 {
			fmt.Fprintf(&b, " %s", e.L7.Latency.Round(time.Microsecond))
		}
	}
	if e.Policy != "" {
		fmt.Fprintf(&b, " policy=%q", e.Policy)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " reason=%q", e.Reason)
	}
	b.WriteByte('\n')
	return b.String()
}

func endpointName(e monitor.Endpoint) string {
	if e.Pod != "" {
		return fmt.Sprintf("%s/%s:%d", e.Namespace, e.Pod, e.Port)
	}
	return fmt.Sprintf("%s:%d", e.IP, e.Port)
}
