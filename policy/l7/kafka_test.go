package l7

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

var kafkaPath = field.NewPath("spec", "ingress").Index(0).Child("toPorts").Index(0).Child("rules", "kafka").Index(0)

func mustKafka(t testing.TB, rs ...v1alpha1.PortRuleKafka) KafkaRules {
	t.Helper()
	var out KafkaRules
	for i, r := range rs {
		k, errs := CompileKafka(r, "kafka["+string(rune('0'+i))+"]", kafkaPath)
		if errs != nil {
			t.Fatalf("CompileKafka(%+v): %v", r, errs.ToAggregate())
		}
		out = append(out, k)
	}
	return out
}

// Kafka API keys used below.
const (
	kProduce     = 0
	kFetch       = 1
	kOffsets     = 2
	kMetadata    = 3
	kOffsetFetch = 9
	kFindCoord   = 10
	kJoinGroup   = 11
	kHeartbeat   = 12
	kAPIVersions = 18
	kCreateTopic = 19
)

func TestKafkaDecide(t *testing.T) {
	produceAnnounce := v1alpha1.PortRuleKafka{Role: "produce", Topic: "empire-announce"}
	consumeAnnounce := v1alpha1.PortRuleKafka{Role: "consume", Topic: "empire-announce"}
	tests := []struct {
		name   string
		rules  []v1alpha1.PortRuleKafka
		req    KafkaRequest
		want   bool
		denied []string
	}{
		// Cilium's Kafka "empire" demo.
		{"produce to empire-announce", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kProduce, Topics: []string{"empire-announce"}}, true, nil},
		{"produce to deathstar-plans", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kProduce, Topics: []string{"deathstar-plans"}}, false, []string{"deathstar-plans"}},
		{"produce two topics, one allowed", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kProduce, Topics: []string{"empire-announce", "deathstar-plans"}}, false, []string{"deathstar-plans"}},
		{"produce role has no fetch", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kFetch, Topics: []string{"empire-announce"}}, false, []string{"empire-announce"}},
		{"produce role has metadata", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kMetadata, Topics: []string{"empire-announce"}}, true, nil},
		{"produce role has apiversions", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kAPIVersions}, true, nil},
		{"metadata for all topics", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kMetadata}, true, nil},
		{"consume fetch", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kFetch, Topics: []string{"empire-announce"}}, true, nil},
		{"consume joingroup (no topics)", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kJoinGroup}, true, nil},
		{"consume heartbeat", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kHeartbeat}, true, nil},
		{"consume findcoordinator", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kFindCoord}, true, nil},
		{"consume offsetfetch", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kOffsetFetch, Topics: []string{"empire-announce"}}, true, nil},
		{"consume no produce", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kProduce, Topics: []string{"empire-announce"}}, false, []string{"empire-announce"}},
		{"consume other topic", []v1alpha1.PortRuleKafka{consumeAnnounce}, KafkaRequest{APIKey: kFetch, Topics: []string{"deathstar-plans"}}, false, []string{"deathstar-plans"}},
		{"Role is case-insensitive", []v1alpha1.PortRuleKafka{{Role: "Consume"}}, KafkaRequest{APIKey: kOffsets}, true, nil},
		// Topics covered by different rules.
		{"two topics, two rules", []v1alpha1.PortRuleKafka{produceAnnounce, {Role: "produce", Topic: "deathstar-plans"}},
			KafkaRequest{APIKey: kProduce, Topics: []string{"empire-announce", "deathstar-plans"}}, true, nil},
		{"duplicate topic in request", []v1alpha1.PortRuleKafka{produceAnnounce}, KafkaRequest{APIKey: kProduce, Topics: []string{"empire-announce", "empire-announce"}}, true, nil},
		{"rule without topic covers all", []v1alpha1.PortRuleKafka{{APIKey: "produce"}}, KafkaRequest{APIKey: kProduce, Topics: []string{"a", "b"}}, true, nil},
		{"topic in other rule with other key does not count", []v1alpha1.PortRuleKafka{produceAnnounce, {APIKey: "fetch", Topic: "b"}},
			KafkaRequest{APIKey: kProduce, Topics: []string{"empire-announce", "b"}}, false, []string{"b"}},
		// apiKey, apiVersion, clientID.
		{"apiKey by name", []v1alpha1.PortRuleKafka{{APIKey: "CreateTopics"}}, KafkaRequest{APIKey: kCreateTopic, Topics: []string{"x"}}, true, nil},
		{"apiKey other", []v1alpha1.PortRuleKafka{{APIKey: "createtopics"}}, KafkaRequest{APIKey: kProduce}, false, nil},
		{"apiVersion match", []v1alpha1.PortRuleKafka{{APIKey: "produce", APIVersion: "3"}}, KafkaRequest{APIKey: kProduce, APIVersion: 3}, true, nil},
		{"apiVersion mismatch", []v1alpha1.PortRuleKafka{{APIKey: "produce", APIVersion: "3"}}, KafkaRequest{APIKey: kProduce, APIVersion: 4}, false, nil},
		{"clientID match", []v1alpha1.PortRuleKafka{{ClientID: "rebel"}}, KafkaRequest{APIKey: 42, ClientID: "rebel"}, true, nil},
		{"clientID mismatch", []v1alpha1.PortRuleKafka{{ClientID: "rebel"}}, KafkaRequest{APIKey: 42, ClientID: "empire"}, false, nil},
		{"empty rule allows all", []v1alpha1.PortRuleKafka{{}}, KafkaRequest{APIKey: -1, APIVersion: -7, Topics: []string{"x"}}, true, nil},
		{"no rules", nil, KafkaRequest{APIKey: kProduce}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustKafka(t, tt.rules...)
			v := rs.Decide(tt.req)
			if v.Allowed != tt.want {
				t.Fatalf("Decide(%+v).Allowed = %v, want %v", tt.req, v.Allowed, tt.want)
			}
			if v.Allowed != (v.Rule != nil) {
				t.Errorf("Rule = %v with Allowed = %v", v.Rule, v.Allowed)
			}
			if !slices.Equal(v.DeniedTopics, tt.denied) {
				t.Errorf("DeniedTopics = %q, want %q", v.DeniedTopics, tt.denied)
			}
		})
	}
}

func TestKafkaDecideNilAndServerNames(t *testing.T) {
	rs := mustKafka(t, v1alpha1.PortRuleKafka{})
	sn, _ := CompileServerNames([]string{"kafka.example.com"}, field.NewPath("serverNames"))
	rs[0].ServerNames = sn
	rs = append(KafkaRules{nil}, rs...)
	if v := rs.Decide(KafkaRequest{APIKey: kProduce}); v.Allowed {
		t.Error("plaintext request allowed by a rule with serverNames")
	}
	if v := rs.Decide(KafkaRequest{APIKey: kProduce, ServerName: "kafka.example.com"}); !v.Allowed {
		t.Error("request on the named server denied")
	}
}

func TestCompileKafkaErrors(t *testing.T) {
	tests := []struct {
		name  string
		rule  v1alpha1.PortRuleKafka
		field string
	}{
		{"role and apiKey", v1alpha1.PortRuleKafka{Role: "produce", APIKey: "fetch"}, "apiKey"},
		{"unknown role", v1alpha1.PortRuleKafka{Role: "admin"}, "role"},
		{"unknown apiKey", v1alpha1.PortRuleKafka{APIKey: "fetchall"}, "apiKey"},
		{"bad apiVersion", v1alpha1.PortRuleKafka{APIVersion: "x"}, "apiVersion"},
		{"apiVersion out of range", v1alpha1.PortRuleKafka{APIVersion: "40000"}, "apiVersion"},
		{"negative apiVersion", v1alpha1.PortRuleKafka{APIVersion: "-1"}, "apiVersion"},
		{"bad topic", v1alpha1.PortRuleKafka{Topic: "a/b"}, "topic"},
		{"long topic", v1alpha1.PortRuleKafka{Topic: strings.Repeat("t", 256)}, "topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := CompileKafka(tt.rule, "o", kafkaPath)
			if r != nil || len(errs) == 0 {
				t.Fatalf("CompileKafka = %v, %v; want an error", r, errs)
			}
			if want := kafkaPath.Child(tt.field).String(); errs[0].Field != want {
				t.Errorf("error field = %q, want %q", errs[0].Field, want)
			}
		})
	}
	if _, errs := CompileKafka(v1alpha1.PortRuleKafka{Topic: strings.Repeat("t", 255)}, "o", kafkaPath); errs != nil {
		t.Errorf("255-character topic rejected: %v", errs)
	}
}

func TestKafkaAPIKeyNames(t *testing.T) {
	cilium := []string{"produce", "fetch", "offsets", "metadata", "leaderandisr", "stopreplica", "updatemetadata",
		"controlledshutdown", "offsetcommit", "offsetfetch", "findcoordinator", "joingroup", "heartbeat", "leavegroup",
		"syncgroup", "describegroups", "listgroups", "saslhandshake", "apiversions", "createtopics", "deletetopics",
		"deleterecords", "initproducerid", "offsetforleaderepoch", "addpartitionstotxn", "addoffsetstotxn", "endtxn",
		"writetxnmarkers", "txnoffsetcommit", "describeacls", "createacls", "deleteacls", "describeconfigs", "alterconfigs"}
	for i, n := range cilium {
		k, ok := KafkaAPIKeyByName(strings.ToUpper(n))
		if !ok || k != int16(i) {
			t.Errorf("KafkaAPIKeyByName(%q) = %d, %v; want %d", n, k, ok, i)
		}
		if got := KafkaAPIKeyName(int16(i)); got != n {
			t.Errorf("KafkaAPIKeyName(%d) = %q, want %q", i, got, n)
		}
	}
	if got := KafkaAPIKeyName(9999); got != "9999" {
		t.Errorf("KafkaAPIKeyName(9999) = %q", got)
	}
	if !KafkaAPIKeyHasTopics(kProduce) || KafkaAPIKeyHasTopics(kHeartbeat) {
		t.Error("KafkaAPIKeyHasTopics is wrong for produce or heartbeat")
	}
	produce, _ := KafkaRoleAPIKeys("PRODUCE")
	consume, _ := KafkaRoleAPIKeys("consume")
	if !slices.Equal(produce, []int16{0, 3, 18}) || !slices.Equal(consume, []int16{1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18}) {
		t.Errorf("roles: produce %v, consume %v", produce, consume)
	}
}
