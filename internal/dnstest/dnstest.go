// Package dnstest runs real DNS software for tests: dnsmasq as an
// authoritative-only server (it never forwards: --no-resolv, --no-hosts,
// only the records a test gives) and dig as the client, with its answer
// parsed.
package dnstest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Record is one dnsmasq record option without its leading dashes, such
// as "address=/api.example.com/10.96.1.1",
// "host-record=db.example.com,10.96.1.2" or
// "cname=www.example.com,api.example.com".
type Record string

// Dnsmasq starts dnsmasq on addr (UDP and TCP; port 0 picks a free one)
// serving only records, and stops it when the test ends. It skips the
// test when dnsmasq is not installed. It returns the address it serves.
func Dnsmasq(t testing.TB, addr netip.AddrPort, records ...Record) netip.AddrPort {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq not installed (Debian package dnsmasq)")
	}
	if addr.Port() == 0 {
		addr = FreePort(t, addr.Addr())
	}
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
		"--pid-file=", "--user=" + currentUser(), "--bind-interfaces", "--except-interface=*",
		"--listen-address=" + addr.Addr().String(), fmt.Sprintf("--port=%d", addr.Port()),
		"--log-facility=-", "--cache-size=0",
	}
	for _, r := range records {
		args = append(args, "--"+string(r))
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr.String(), 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq on %s not up after 5s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func currentUser() string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		return "root"
	}
	return strings.TrimSpace(string(out))
}

// FreePort finds a port free for both UDP and TCP on a.
func FreePort(t testing.TB, a netip.Addr) netip.AddrPort {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
		if err != nil {
			t.Fatalf("finding a free port on %s: %v", a, err)
		}
		ap := netip.MustParseAddrPort(l.Addr().String())
		u, err := net.ListenPacket("udp", ap.String())
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return ap
		}
	}
	t.Fatalf("no port free for UDP and TCP on %s", a)
	return netip.AddrPort{}
}

// Answer is what dig printed for one query.
type Answer struct {
	// Status is the response code ("NOERROR", "REFUSED", "NXDOMAIN",
	// "SERVFAIL"); empty when dig got no answer.
	Status string
	// Addrs are the A and AAAA records of the answer section.
	Addrs []netip.Addr
	// Output is dig's whole output.
	Output string
}

// Dig runs dig with args (e.g. "@127.0.0.1", "-p", "5353", "+tcp",
// "api.example.com", "A") and parses the first answer; several queries on
// one command line are parsed with DigAll. A failure to run dig fails the
// test; no answer is an Answer with an empty Status.
func Dig(t testing.TB, args ...string) Answer {
	t.Helper()
	as := DigAll(t, args...)
	if len(as) == 0 {
		return Answer{}
	}
	return as[0]
}

// DigAll is Dig for a command line with several queries: one Answer per
// answer dig printed, in order.
func DigAll(t testing.TB, args ...string) []Answer {
	t.Helper()
	out, err := DigCommand(args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		t.Fatalf("dig %s: %v", strings.Join(args, " "), err)
	}
	return ParseDig(string(out))
}

// DigCommand is the dig command for args (DigArgv), with no .digrc.
func DigCommand(args ...string) *exec.Cmd {
	argv := DigArgv(args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"HOME=/nonexistent"}
	return cmd
}

// DigArgv is dig's command line for args: one try, a 3 s timeout (later
// args override both), no search list, the header and the answer section
// printed, for ParseDig. Run it in a pod with Pod.Command(argv...).
func DigArgv(args ...string) []string {
	return append([]string{"dig", "+tries=1", "+time=3", "+nosearch", "+noall", "+comments", "+answer"}, args...)
}

// ParseDig parses dig's output: one Answer per ";; ->>HEADER<<-" line.
// Output without one (a timeout) gives no Answer.
func ParseDig(out string) []Answer {
	var as []Answer
	var cur *Answer
	var start int
	lines := strings.Split(out, "\n")
	pos := 0
	for _, l := range lines {
		if i := strings.Index(l, "status: "); strings.Contains(l, "->>HEADER<<-") && i >= 0 {
			if cur != nil {
				cur.Output = out[start:pos]
			}
			as = append(as, Answer{})
			cur = &as[len(as)-1]
			start = pos
			st := l[i+len("status: "):]
			if j := strings.IndexByte(st, ','); j >= 0 {
				st = st[:j]
			}
			cur.Status = st
		} else if cur != nil && !strings.HasPrefix(l, ";") {
			f := strings.Fields(l)
			if len(f) >= 5 && (f[3] == "A" || f[3] == "AAAA") {
				if a, err := netip.ParseAddr(f[4]); err == nil {
					cur.Addrs = append(cur.Addrs, a)
				}
			}
		}
		pos += len(l) + 1
	}
	if cur != nil {
		cur.Output = out[start:min(pos, len(out))]
	}
	return as
}
