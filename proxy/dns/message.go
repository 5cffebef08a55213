package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// query is a parsed client query.
type query struct {
	msg *mdns.Msg
	// name is the question's name, lower case, with its trailing dot.
	name  string
	qtype uint16
}

// typeString names a query type ("A", "AAAA", "TYPE65280").
func (q *query) typeString() string { return mdns.Type(q.qtype).String() }

// parseQuery parses a client's message. It refuses what a stub resolver
// never sends: a response, an opcode other than QUERY, not exactly one
// question, or a name the rules could not be matched against.
func parseQuery(b []byte) (*query, error) {
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, fmt.Errorf("malformed query (%d bytes): %w", len(b), err)
	}
	if m.Response {
		return nil, errors.New("a response, not a query")
	}
	if m.Opcode != mdns.OpcodeQuery {
		return nil, fmt.Errorf("opcode %s, not QUERY", opcodeString(m.Opcode))
	}
	if len(m.Question) != 1 {
		return nil, fmt.Errorf("%d questions, want 1", len(m.Question))
	}
	q := m.Question[0]
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return nil, fmt.Errorf("class %s, not IN", mdns.Class(q.Qclass))
	}
	return &query{msg: m, name: strings.ToLower(mdns.Fqdn(q.Name)), qtype: q.Qtype}, nil
}

func opcodeString(op int) string {
	if s, ok := mdns.OpcodeToString[op]; ok {
		return s
	}
	return fmt.Sprintf("%d", op)
}

// reply builds an answer to q with rcode alone: the query's ID, flags
// (RD) and question echoed, nothing else.
func reply(q *query, rcode int) ([]byte, error) {
	r := new(mdns.Msg)
	r.SetRcode(q.msg, rcode)
	r.RecursionAvailable = true
	return r.Pack()
}

// answer is a parsed server answer.
type answer struct {
	rcode int
	// names is the CNAME chain from the question's name (lower case,
	// trailing dot), the question's name first.
	names []string
	// addrs are the A/AAAA addresses at the end of the chain, in answer
	// order, and ttl the smallest TTL among their records.
	addrs []netip.Addr
	ttl   uint32
}

// maxCNAMEChain bounds the CNAME chain followed from the question's name.
const maxCNAMEChain = 16

// parseAnswer parses the server's answer to q (sent with id) and checks
// that it answers that question. Only the records on the CNAME chain from
// the question's name count: an address record for another name (a
// server's additional data, or a poisoning attempt) teaches nothing.
// Every name on the chain leads to the chain's addresses: a toFQDNs
// selector of the question's name or of an alias on the way selects them,
// as in Cilium.
func parseAnswer(b []byte, q *query, id uint16) (*answer, error) {
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, fmt.Errorf("malformed answer (%d bytes): %w", len(b), err)
	}
	if !m.Response {
		return nil, errors.New("the server sent a query, not an answer")
	}
	if m.Id != id {
		return nil, fmt.Errorf("answer ID %d, query ID %d", m.Id, id)
	}
	if len(m.Question) != 1 || !strings.EqualFold(mdns.Fqdn(m.Question[0].Name), q.name) || m.Question[0].Qtype != q.qtype {
		return nil, errors.New("the answer's question is not the query's")
	}
	a := &answer{rcode: m.Rcode}
	cname := map[string]string{}
	for _, rr := range m.Answer {
		if r, ok := rr.(*mdns.CNAME); ok {
			cname[strings.ToLower(mdns.Fqdn(r.Hdr.Name))] = strings.ToLower(mdns.Fqdn(r.Target))
		}
	}
	onChain := map[string]bool{}
	for n := q.name; len(a.names) < maxCNAMEChain && !onChain[n]; {
		onChain[n] = true
		a.names = append(a.names, n)
		next, ok := cname[n]
		if !ok {
			break
		}
		n = next
	}
	first := true
	for _, rr := range m.Answer {
		h := rr.Header()
		if !onChain[strings.ToLower(mdns.Fqdn(h.Name))] {
			continue
		}
		var ip netip.Addr
		switch r := rr.(type) {
		case *mdns.A:
			ip, _ = netip.AddrFromSlice(r.A.To4())
		case *mdns.AAAA:
			ip, _ = netip.AddrFromSlice(r.AAAA.To16())
		}
		if !ip.IsValid() {
			continue
		}
		if first || h.Ttl < a.ttl {
			a.ttl, first = h.Ttl, false
		}
		a.addrs = append(a.addrs, ip)
	}
	return a, nil
}

// setID rewrites a message's ID in place.
func setID(b []byte, id uint16) {
	b[0], b[1] = byte(id>>8), byte(id)
}

// messageID reads a message's ID.
func messageID(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
