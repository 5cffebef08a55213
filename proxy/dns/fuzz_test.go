package dns

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"portcullis.dev/portcullis/proxy"
)

var (
	fuzzSrc = netip.AddrPortFrom(clientIP, 40000)
	fuzzDst = netip.AddrPortFrom(serverIP, 53)
)

func fuzzServer(f *testing.F) *Server {
	store := &proxy.Store{}
	store.Set(snapshot(f, dnsPolicy))
	s, err := New(Options{Resolver: store})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	return s
}

// checkReply fails unless out is nil or a DNS response to the query with
// ID id.
func checkReply(t *testing.T, out []byte, id uint16) {
	if out == nil {
		return
	}
	m := new(mdns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("the client got an unparsable message: %v", err)
	}
	if !m.Response || m.Id != id {
		t.Fatalf("the client got %v: want a response with ID %d", m, id)
	}
}

func seedQuery(name string, qtype uint16) []byte {
	b, _ := new(mdns.Msg).SetQuestion(name, qtype).Pack()
	return b
}

// FuzzQuery feeds hostile client packets to the query path: whatever
// comes, the proxy answers with a well-formed response carrying the
// query's ID, or drops it.
func FuzzQuery(f *testing.F) {
	for _, seed := range [][]byte{
		seedQuery("api.example.com.", mdns.TypeA),
		seedQuery("denied.test.", mdns.TypeAAAA),
		seedQuery("*.example.com.", mdns.TypeANY),
		{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, // a question whose name points at itself
		[]byte("\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
		{},
	} {
		f.Add(seed)
	}
	s := fuzzServer(f)
	ex := func(_ context.Context, _ netip.AddrPort, msg []byte, id uint16) ([]byte, error) {
		q := new(mdns.Msg)
		if err := q.Unpack(msg); err != nil {
			return nil, err
		}
		r := new(mdns.Msg).SetReply(q)
		r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: []byte{10, 96, 1, 1}})
		return r.Pack()
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		out := s.handle(context.Background(), pkt, fuzzSrc, fuzzDst, "UDP", ex)
		if out != nil {
			checkReply(t, out, messageID(pkt))
		}
	})
}

// FuzzAnswer feeds hostile server answers (compression loops, huge or
// truncated records, other IDs and questions) to the answer path for an
// allowed query: the client always gets a well-formed response with its
// own ID (the answer or SERVFAIL), and only addresses on the question's
// CNAME chain are reported.
func FuzzAnswer(f *testing.F) {
	q := new(mdns.Msg).SetQuestion("api.example.com.", mdns.TypeA)
	q.Id = 0x1234
	query, _ := q.Pack()
	good := new(mdns.Msg).SetReply(q)
	good.Answer = []mdns.RR{
		&mdns.CNAME{Hdr: mdns.RR_Header{Name: "api.example.com.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 60}, Target: "edge.example.net."},
		&mdns.A{Hdr: mdns.RR_Header{Name: "edge.example.net.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: []byte{10, 96, 1, 1}},
		&mdns.A{Hdr: mdns.RR_Header{Name: "other.example.org.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: []byte{10, 96, 9, 9}},
	}
	goodB, _ := good.Pack()
	loop := new(mdns.Msg).SetReply(q)
	loop.Answer = []mdns.RR{
		&mdns.CNAME{Hdr: mdns.RR_Header{Name: "api.example.com.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET}, Target: "b.example.com."},
		&mdns.CNAME{Hdr: mdns.RR_Header{Name: "b.example.com.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET}, Target: "api.example.com."},
	}
	loopB, _ := loop.Pack()
	huge := new(mdns.Msg).SetReply(q)
	for range 300 {
		huge.Answer = append(huge.Answer, &mdns.TXT{Hdr: mdns.RR_Header{Name: "api.example.com.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET}, Txt: []string{string(make([]byte, 200))}})
	}
	hugeB, _ := huge.Pack()
	compLoop := append(append([]byte(nil), goodB[:12]...), 0xc0, 12, 0, 1, 0, 1)
	for _, seed := range [][]byte{goodB, loopB, hugeB, compLoop, goodB[:len(goodB)-5], {}} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, ans []byte, matchID bool) {
		ans = append([]byte(nil), ans...)
		ex := func(_ context.Context, _ netip.AddrPort, _ []byte, id uint16) ([]byte, error) {
			if len(ans) == 0 {
				return nil, errors.New("no answer")
			}
			if matchID && len(ans) >= 2 {
				setID(ans, id)
			}
			return ans, nil
		}
		out := s.handle(context.Background(), query, fuzzSrc, fuzzDst, "UDP", ex)
		if out == nil {
			t.Fatal("no answer for the client")
		}
		checkReply(t, out, 0x1234)
	})
}

// TestParseAnswerChain: addresses count only on the question's CNAME
// chain, with the chain's smallest TTL; a CNAME loop ends.
func TestParseAnswerChain(t *testing.T) {
	q, _ := parseQuery(seedQuery("api.example.com.", mdns.TypeA))
	r := new(mdns.Msg).SetReply(q.msg)
	r.Answer = []mdns.RR{
		&mdns.CNAME{Hdr: mdns.RR_Header{Name: "API.example.com.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 60}, Target: "edge.example.net."},
		&mdns.A{Hdr: mdns.RR_Header{Name: "edge.example.net.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30}, A: []byte{10, 96, 1, 1}},
		&mdns.A{Hdr: mdns.RR_Header{Name: "edge.example.net.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 20}, A: []byte{10, 96, 1, 2}},
		&mdns.A{Hdr: mdns.RR_Header{Name: "other.example.org.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: []byte{10, 96, 9, 9}},
		&mdns.CNAME{Hdr: mdns.RR_Header{Name: "edge.example.net.", Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET}, Target: "api.example.com."},
	}
	b, _ := r.Pack()
	a, err := parseAnswer(b, q, q.msg.Id)
	if err != nil {
		t.Fatal(err)
	}
	if !sameAddrs(a.addrs, addrs("10.96.1.1", "10.96.1.2")) || a.ttl != 20 || len(a.names) != 2 || a.names[1] != "edge.example.net." {
		t.Errorf("answer %+v: want 10.96.1.1, 10.96.1.2 with TTL 20 on the chain api.example.com. → edge.example.net.", a)
	}
	if _, err := parseAnswer(b, q, q.msg.Id+1); err == nil {
		t.Error("an answer with another ID was accepted")
	}
}
