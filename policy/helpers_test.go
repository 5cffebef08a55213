package policy_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"portcullis.dev/portcullis/policy"
	"portcullis.dev/portcullis/policy/l7"
	"portcullis.dev/portcullis/policy/policytest"
)

// load builds a repository from files and YAML snippets. Arguments that
// contain a newline are YAML; others are paths.
func load(t testing.TB, mode policy.Mode, inputs ...string) *policy.Repository {
	t.Helper()
	r := policy.NewRepository(policy.Options{})
	r.SetMode(mode, false)
	for _, in := range inputs {
		if strings.Contains(in, "\n") {
			policytest.Apply(t, r, in)
		} else {
			policytest.ApplyFiles(t, r, in)
		}
	}
	return r
}

// peer parses "ip:1.2.3.4", "entity:world" or labels "a=b,c=d".
func peer(t testing.TB, s string) policy.TracePeer {
	t.Helper()
	switch {
	case strings.HasPrefix(s, "ip:"):
		return policy.TracePeer{IP: netip.MustParseAddr(s[3:])}
	case strings.HasPrefix(s, "entity:"):
		return policy.TracePeer{Entity: s[7:]}
	}
	ls, err := policy.ParseLabels(s)
	if err != nil {
		t.Fatal(err)
	}
	return policy.TracePeer{Labels: ls}
}

// flow is a traced flow with an optional L7 request: http "METHOD PATH",
// kafka "apikey:topic[,topic]", dns name.
type flow struct {
	src, dst string
	port     uint16
	proto    uint8
	http     string
	header   http.Header
	kafka    string
	dns      string
	sni      string
}

func trace(t testing.TB, r *policy.Repository, f flow) *policy.TraceResult {
	t.Helper()
	req := policy.TraceRequest{Src: peer(t, f.src), Dst: peer(t, f.dst), Port: f.port, Proto: f.proto, DNS: f.dns, SNI: f.sni}
	if req.Proto == 0 {
		req.Proto = policy.ProtoTCP
	}
	if f.http != "" {
		m, p, _ := strings.Cut(f.http, " ")
		h := f.header
		if h == nil {
			h = http.Header{}
		}
		req.HTTP = &l7.HTTPRequest{Method: m, Path: p, Header: h}
	}
	if f.kafka != "" {
		k, topics, _ := strings.Cut(f.kafka, ":")
		key, ok := l7.KafkaAPIKeyByName(k)
		if !ok {
			t.Fatalf("unknown kafka api key %q", k)
		}
		req.Kafka = &l7.KafkaRequest{APIKey: key, ClientID: "test"}
		if topics != "" {
			req.Kafka.Topics = strings.Split(topics, ",")
		}
	}
	res, err := r.Trace(req)
	if err != nil {
		t.Fatalf("trace %+v: %v", f, err)
	}
	return res
}
