package dns

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"portcullis.dev/portcullis/internal/dnstest"
	"portcullis.dev/portcullis/monitor"
)

// TestDig judges dig's queries, over UDP and TCP, in front of dnsmasq:
// allowed names are answered by dnsmasq (CNAME chains included), others
// are REFUSED by the proxy although dnsmasq has them.
func TestDig(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), records...)
	e := newEnv(t, up)
	for _, tc := range []struct {
		name, qname, status string
		want                []netip.Addr
		// event is the event's verdict and the words its reason has.
		verdict string
		reason  []string
	}{
		{"pattern", "api.example.com", "NOERROR", addrs("10.96.1.1"), monitor.VerdictForwarded, []string{"allowed by", "rules.dns[0]"}},
		{"case and trailing dot", "API.Example.COM.", "NOERROR", addrs("10.96.1.1"), monitor.VerdictForwarded, nil},
		{"matchName", "allowed.test", "NOERROR", addrs("10.96.1.3"), monitor.VerdictForwarded, []string{"rules.dns[1]"}},
		{"CNAME chain", "www.example.com", "NOERROR", addrs("10.96.1.2"), monitor.VerdictForwarded, nil},
		{"allowed name the server does not have", "nothere.example.com", "NXDOMAIN", nil, monitor.VerdictForwarded, nil},
		{"pattern is one label", "a.b.example.com", "REFUSED", nil, monitor.VerdictDenied, []string{"no DNS rule of the egress policy of default/client allows a.b.example.com."}},
		{"other name", "denied.test", "REFUSED", nil, monitor.VerdictDenied, nil},
		{"other domain", "db.example.org", "REFUSED", nil, monitor.VerdictDenied, nil},
		{"the pattern's parent", "example.com", "REFUSED", nil, monitor.VerdictDenied, nil},
	} {
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+transport, func(t *testing.T) {
				args := []string{tc.qname, "A"}
				if transport == "tcp" {
					args = append(args, "+tcp")
				}
				a := e.dig(t, args...)
				if a.Status != tc.status || !sameAddrs(a.Addrs, tc.want) {
					t.Fatalf("dig %s: status %q addrs %v, want %q %v\n%s", tc.qname, a.Status, a.Addrs, tc.status, tc.want, a.Output)
				}
				ev := e.events.wait(t, tc.verdict+" "+tc.qname, func(ev monitor.Event) bool {
					return ev.Verdict == tc.verdict && ev.L7 != nil && ev.L7.DNS != nil &&
						strings.EqualFold(ev.L7.DNS.Query, mdns.Fqdn(tc.qname)) && ev.Protocol == strings.ToUpper(transport)
				})
				if ev.L7.DNS.RCode != tc.status || ev.L7.DNS.Type != "A" || !hasAll(ev.Reason, tc.reason...) || ev.Policy != "TrafficPolicy default/dns" {
					t.Errorf("event %+v %+v: want rcode %s, type A, reason with %q, policy TrafficPolicy default/dns", ev, *ev.L7.DNS, tc.status, tc.reason)
				}
				if ev.Source.Pod != "client" || ev.Destination.Pod != "server" || ev.Destination.Port != 53 {
					t.Errorf("event endpoints %+v -> %+v: want default/client -> default/server:53", ev.Source, ev.Destination)
				}
			})
		}
	}
}

// TestTCPSeveralQueries sends several queries on one DNS-over-TCP
// connection (dig +keepopen): each is judged and answered in turn.
func TestTCPSeveralQueries(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), records...)
	e := newEnv(t, up)
	as := dnstest.DigAll(t, "@"+e.addr.Addr().String(), "-p", strings.TrimPrefix(e.addr.String(), "127.0.0.1:"), "+tcp", "+keepopen",
		"api.example.com", "A", "denied.test", "A", "allowed.test", "A")
	var got []string
	for _, a := range as {
		got = append(got, a.Status)
	}
	if strings.Join(got, ",") != "NOERROR,REFUSED,NOERROR" {
		t.Fatalf("statuses %v, want NOERROR,REFUSED,NOERROR", got)
	}
	first := e.events.query(t, "api.example.com.", monitor.VerdictForwarded)
	for _, n := range []struct{ name, verdict string }{{"denied.test.", monitor.VerdictDenied}, {"allowed.test.", monitor.VerdictForwarded}} {
		if ev := e.events.query(t, n.name, n.verdict); ev.Source.Port != first.Source.Port {
			t.Errorf("%s came from port %d, the first query from %d: want one connection", n.name, ev.Source.Port, first.Source.Port)
		}
	}
}

// TestRejectEchoes checks the rejection itself: the query's ID, question
// and RD flag echoed, REFUSED by default and NXDOMAIN with nameError,
// over both transports.
func TestRejectEchoes(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), records...)
	for _, tc := range []struct {
		name  string
		code  int
		rcode int
	}{
		{"default", 0, mdns.RcodeRefused},
		{"refused", mdns.RcodeRefused, mdns.RcodeRefused},
		{"nameError", mdns.RcodeNameError, mdns.RcodeNameError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, up, func(o *Options) { o.RejectCode = tc.code })
			for _, network := range []string{"udp", "tcp"} {
				m := new(mdns.Msg).SetQuestion("Denied.Test.", mdns.TypeAAAA)
				m.Id = 0x4242
				r, err := e.exchange(t, network, m)
				if err != nil {
					t.Fatalf("%s: %v", network, err)
				}
				if r.Id != 0x4242 || !r.Response || r.Rcode != tc.rcode || !r.RecursionDesired || len(r.Answer) != 0 ||
					len(r.Question) != 1 || r.Question[0].Name != "Denied.Test." || r.Question[0].Qtype != mdns.TypeAAAA {
					t.Errorf("%s: answer %v: want ID 0x4242, rcode %s, RD, the question echoed", network, r, mdns.RcodeToString[tc.rcode])
				}
			}
			if code, err := RejectCode(map[int]string{0: "refused", mdns.RcodeRefused: "refused", mdns.RcodeNameError: "nameError"}[tc.code]); err != nil || code != tc.rcode {
				t.Errorf("RejectCode: %d %v, want %d", code, err, tc.rcode)
			}
		})
	}
	if _, err := RejectCode("servfail"); err == nil || !strings.Contains(err.Error(), "want refused or nameError") {
		t.Errorf("RejectCode(servfail): %v, want an error naming the values", err)
	}
}

// TestServerSilent: a server that never answers gets the client a
// SERVFAIL after Timeout, over UDP and TCP.
func TestServerSilent(t *testing.T) {
	up := silentUDP(t)
	silentTCP(t, up)
	e := newEnv(t, up, func(o *Options) { o.Timeout = 300 * time.Millisecond })
	for _, transport := range []string{"+notcp", "+tcp"} {
		start := time.Now()
		a := e.dig(t, "api.example.com", "A", transport)
		took := time.Since(start)
		if a.Status != "SERVFAIL" || took > 2*time.Second {
			t.Errorf("dig %s: status %q after %s, want SERVFAIL within 2s\n%s", transport, a.Status, took, a.Output)
		}
	}
	ev := e.events.query(t, "api.example.com.", monitor.VerdictError)
	if ev.L7.DNS.RCode != "SERVFAIL" || !strings.Contains(ev.Reason, "no answer within 300ms") {
		t.Errorf("event %+v: want SERVFAIL, no answer within 300ms", ev)
	}
}

// TestMalformedDropped: garbage and truncated queries get no answer, and
// an event each; the proxy keeps serving.
func TestMalformedDropped(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), records...)
	e := newEnv(t, up)
	good, err := new(mdns.Msg).SetQuestion("api.example.com.", mdns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	resp := new(mdns.Msg).SetQuestion("api.example.com.", mdns.TypeA)
	resp.Response = true
	respB, _ := resp.Pack()
	two := new(mdns.Msg).SetQuestion("api.example.com.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	twoB, _ := two.Pack()
	for _, tc := range []struct {
		name   string
		pkt    []byte
		reason string
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), "malformed query"},
		{"short", good[:5], "malformed query"},
		{"truncated question", good[:len(good)-3], "malformed query"},
		{"a response", respB, "a response, not a query"},
		{"two questions", twoB, "2 questions, want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("udp", e.addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 512)
			if n, err := c.Read(buf); err == nil {
				t.Errorf("got a %d-byte answer, want none", n)
			}
			port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
			e.events.wait(t, "dropped "+tc.name, func(ev monitor.Event) bool {
				return ev.Verdict == monitor.VerdictDropped && ev.Source.Port == port && strings.Contains(ev.Reason, tc.reason)
			})
		})
	}
	if a := e.dig(t, "api.example.com"); a.Status != "NOERROR" {
		t.Errorf("after the garbage: %q, want NOERROR", a.Status)
	}
}

// TestNoSnapshot: before the agent's first snapshot queries get no
// answer (the client retries), never an unjudged one.
func TestNoSnapshot(t *testing.T) {
	up := dnstest.Dnsmasq(t, netip.AddrPortFrom(serverIP, 0), records...)
	e := newEnv(t, up)
	e.store.Set(nil)
	if a := e.dig(t, "api.example.com", "+time=1"); a.Status != "" {
		t.Fatalf("status %q without a snapshot, want no answer", a.Status)
	}
	ev := e.events.query(t, "api.example.com.", monitor.VerdictError)
	if !strings.Contains(ev.Reason, "no policy snapshot yet") {
		t.Errorf("event reason %q: want no policy snapshot yet", ev.Reason)
	}
}
