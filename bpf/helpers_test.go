package bpf

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netns"

	"portcullis.dev/portcullis/internal/netnstest"
	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/policytest"
)

// requireKernel skips unless the test runs as root on a kernel that loads
// the datapath.
func requireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF, network namespaces)")
	}
	_ = rlimit.RemoveMemlock()
}

// loadDP loads an unpinned datapath, skipping on kernels that cannot.
func loadDP(t testing.TB, opts Options) *Datapath {
	t.Helper()
	requireKernel(t)
	d, err := Load(opts)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel cannot load the datapath: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

const hostAddr = "10.244.0.1"

type testPod struct {
	name   string
	ns     netns.NsHandle
	ip     netip.Addr
	ifidx  int
	labels map[string]string
}

// testNet is a node namespace (standing in for the root namespace) and
// pods joined to it by veth pairs (netnstest.Node).
type testNet struct {
	node netns.NsHandle
	pods map[string]*testPod
}

func newTestNet(t testing.TB, pods ...*testPod) *testNet {
	t.Helper()
	requireKernel(t)
	ips := make([]netip.Addr, len(pods))
	for i, p := range pods {
		ips[i] = p.ip
	}
	node, links := netnstest.Node(t, netip.MustParseAddr(hostAddr), ips...)
	tn := &testNet{node: node, pods: map[string]*testPod{}}
	for i, p := range pods {
		p.ns, p.ifidx = links[i].NS, links[i].HostIfindex
		tn.pods[p.name] = p
	}
	return tn
}

// listen opens a listener (tcp or udp) inside ns, closed on cleanup.
func listenTCP(t testing.TB, ns netns.NsHandle, lc *net.ListenConfig, addr string) net.Listener {
	t.Helper()
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	var l net.Listener
	if err := netnstest.Run(ns, func() (err error) {
		l, err = lc.Listen(t.Context(), "tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// echo serves l: every connection gets its bytes back.
func echo(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
}

// dial connects from inside ns.
func dial(ns netns.NsHandle, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netnstest.Run(ns, func() (err error) {
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// roundTrip writes a line and waits for it to come back.
func roundTrip(c net.Conn, msg string, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// events collects verdict events in the background.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
	new chan struct{}
}

func collectEvents(t testing.TB, d *Datapath) *eventLog {
	t.Helper()
	rd, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	el := &eventLog{new: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			e, err := rd.Read()
			if err != nil {
				return
			}
			el.mu.Lock()
			el.evs = append(el.evs, e)
			el.mu.Unlock()
			select {
			case el.new <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { _ = rd.Close(); <-done })
	return el
}

// wait returns the first event (from the start of the log) that match
// accepts, failing the test after a second.
func (el *eventLog) wait(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.After(time.Second)
	for {
		el.mu.Lock()
		for _, e := range el.evs {
			if match(e) {
				el.mu.Unlock()
				return e
			}
		}
		seen := make([]string, 0, len(el.evs))
		for _, e := range el.evs {
			seen = append(seen, e.String())
		}
		el.mu.Unlock()
		select {
		case <-el.new:
		case <-deadline:
			t.Fatalf("no %s event; got:\n%s", what, strings.Join(seen, "\n"))
		}
	}
}

// count counts the events so far that match accepts.
func (el *eventLog) count(match func(Event) bool) int {
	el.mu.Lock()
	defer el.mu.Unlock()
	n := 0
	for _, e := range el.evs {
		if match(e) {
			n++
		}
	}
	return n
}

// reset forgets the events seen so far.
func (el *eventLog) reset() {
	el.mu.Lock()
	el.evs = nil
	el.mu.Unlock()
}

// engine is a policy repository with the pods as endpoints in namespace
// "default", and numbered rules.
type engine struct {
	repo  *policy.Repository
	ids   map[string]policy.NumericIdentity
	rules map[policy.RuleRef]uint32
	mu    sync.Mutex
}

func newEngine(t testing.TB, pods []*testPod, yamls ...string) *engine {
	t.Helper()
	e := &engine{repo: policy.NewRepository(policy.Options{}), ids: map[string]policy.NumericIdentity{}, rules: map[policy.RuleRef]uint32{}}
	e.repo.UpsertNamespace("default", nil, false)
	for _, p := range pods {
		e.ids[p.name] = e.repo.UpsertEndpoint(&policy.Endpoint{Namespace: "default", Name: p.name, Labels: p.labels, IPs: []netip.Addr{p.ip}})
	}
	for _, y := range yamls {
		e.apply(t, y)
	}
	return e
}

func (e *engine) apply(t testing.TB, y string) {
	t.Helper()
	policytest.Apply(t, e.repo, y)
}

// ruleID numbers rules in order of first use; the zero RuleRef (a
// default) is 0.
func (e *engine) ruleID(r policy.RuleRef) uint32 {
	if r == (policy.RuleRef{}) {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.rules[r]
	if !ok {
		id = uint32(len(e.rules) + 1)
		e.rules[r] = id
	}
	return id
}

func (e *engine) ruleIDByPath(t *testing.T, path string) uint32 {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for r, id := range e.rules {
		if strings.HasSuffix(r.Path, path) {
			return id
		}
	}
	t.Fatalf("no rule %s among %v", path, e.rules)
	return 0
}

// sync writes every pod's policy to the datapath.
func (e *engine) sync(t testing.TB, d *Datapath, pods map[string]*testPod, epIDs map[string]uint32) {
	t.Helper()
	for name := range pods {
		ep := e.repo.EndpointPolicy("default", name)
		if ep == nil {
			t.Fatalf("no endpoint policy for %s", name)
		}
		if err := d.SyncEndpointPolicy(epIDs[name], ep); err != nil {
			t.Fatal(err)
		}
	}
}

// ping sends one ICMP echo request from ns and waits for the reply.
func ping(ns netns.NsHandle, dst netip.Addr, id uint16, timeout time.Duration) error {
	return netnstest.Run(ns, func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		tv := syscall.NsecToTimeval(timeout.Nanoseconds())
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'p', 'c'}
		var sum uint32
		for i := 0; i < len(msg); i += 2 {
			sum += uint32(msg[i])<<8 | uint32(msg[i+1])
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		cs := ^uint16(sum)
		msg[2], msg[3] = byte(cs>>8), byte(cs)
		if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrInet4{Addr: dst.As4()}); err != nil {
			return err
		}
		deadline := time.Now().Add(timeout)
		buf := make([]byte, 1500)
		for time.Now().Before(deadline) {
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				return err
			}
			if n < 28 {
				continue
			}
			ic := buf[(buf[0]&0xf)*4:]
			if ic[0] == 0 && uint16(ic[4])<<8|uint16(ic[5]) == id {
				return nil
			}
		}
		return os.ErrDeadlineExceeded
	})
}
