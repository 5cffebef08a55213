package l7

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// Kafka roles.
const (
	KafkaRoleProduce = "produce"
	KafkaRoleConsume = "consume"
)

// kafkaAPIKeys is Cilium's name table (keys 0-33), extended with later
// Kafka API keys. Names are lower case without separators.
var kafkaAPIKeys = map[string]int16{
	"produce":              0,
	"fetch":                1,
	"offsets":              2,
	"metadata":             3,
	"leaderandisr":         4,
	"stopreplica":          5,
	"updatemetadata":       6,
	"controlledshutdown":   7,
	"offsetcommit":         8,
	"offsetfetch":          9,
	"findcoordinator":      10,
	"joingroup":            11,
	"heartbeat":            12,
	"leavegroup":           13,
	"syncgroup":            14,
	"describegroups":       15,
	"listgroups":           16,
	"saslhandshake":        17,
	"apiversions":          18,
	"createtopics":         19,
	"deletetopics":         20,
	"deleterecords":        21,
	"initproducerid":       22,
	"offsetforleaderepoch": 23,
	"addpartitionstotxn":   24,
	"addoffsetstotxn":      25,
	"endtxn":               26,
	"writetxnmarkers":      27,
	"txnoffsetcommit":      28,
	"describeacls":         29,
	"createacls":           30,
	"deleteacls":           31,
	"describeconfigs":      32,
	"alterconfigs":         33,
	// Beyond Cilium's table.
	"alterreplicalogdirs":          34,
	"describelogdirs":              35,
	"saslauthenticate":             36,
	"createpartitions":             37,
	"createdelegationtoken":        38,
	"renewdelegationtoken":         39,
	"expiredelegationtoken":        40,
	"describedelegationtoken":      41,
	"deletegroups":                 42,
	"electleaders":                 43,
	"incrementalalterconfigs":      44,
	"alterpartitionreassignments":  45,
	"listpartitionreassignments":   46,
	"offsetdelete":                 47,
	"describeclientquotas":         48,
	"alterclientquotas":            49,
	"describeuserscramcredentials": 50,
	"alteruserscramcredentials":    51,
	"describecluster":              60,
	"describeproducers":            61,
	"describetransactions":         65,
	"listtransactions":             66,
	"consumergroupheartbeat":       68,
}

var kafkaAPIKeyNames = func() map[int16]string {
	m := make(map[int16]string, len(kafkaAPIKeys))
	for n, k := range kafkaAPIKeys {
		m[k] = n
	}
	return m
}()

// The API keys each role stands for, exactly as in Cilium.
var (
	kafkaProduceKeys = []int16{0, 3, 18}
	kafkaConsumeKeys = []int16{1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18}
)

// kafkaTopicKeys lists the requests whose bodies name topics (or, for
// the configs keys, topic resources).
var kafkaTopicKeys = []int16{0, 1, 2, 3, 4, 5, 6, 8, 9, 19, 20, 21, 23, 24, 28, 32, 33, 34, 35, 37, 43, 44, 45, 46, 47}

// KafkaAPIKeyByName returns the API key for a name such as "produce" or
// "FindCoordinator" (case-insensitive).
func KafkaAPIKeyByName(name string) (int16, bool) {
	k, ok := kafkaAPIKeys[strings.ToLower(name)]
	return k, ok
}

// KafkaAPIKeyName returns the name of an API key, or its number for a key
// this package does not know.
func KafkaAPIKeyName(key int16) string {
	if n, ok := kafkaAPIKeyNames[key]; ok {
		return n
	}
	return strconv.Itoa(int(key))
}

// KafkaRoleAPIKeys returns the API keys a role (case-insensitive) stands
// for: produce is produce, metadata, apiversions; consume is fetch,
// offsets, metadata, offsetcommit, offsetfetch, findcoordinator,
// joingroup, heartbeat, leavegroup, syncgroup, apiversions.
func KafkaRoleAPIKeys(role string) ([]int16, bool) {
	switch strings.ToLower(role) {
	case KafkaRoleProduce:
		return slices.Clone(kafkaProduceKeys), true
	case KafkaRoleConsume:
		return slices.Clone(kafkaConsumeKeys), true
	}
	return nil, false
}

// KafkaAPIKeyHasTopics reports whether requests of this API key name
// topics. For these the proxy fills KafkaRequest.Topics from the request
// body; for every other key Topics stays empty. A request that names no
// topic (a metadata request for all topics, say) is decided without topics.
// Note that fetch v13+ names topics by ID, not by name: the proxy must map
// IDs to names or cap the fetch version it advertises.
func KafkaAPIKeyHasTopics(key int16) bool {
	return slices.Contains(kafkaTopicKeys, key)
}

// MaxKafkaTopicLength is the longest topic name Kafka allows.
const MaxKafkaTopicLength = 255

// KafkaRequest is what a Kafka rule looks at.
type KafkaRequest struct {
	APIKey     int16
	APIVersion int16
	ClientID   string
	// Topics are the topics the request names; see KafkaAPIKeyHasTopics.
	Topics []string
	// ServerName is the SNI of the TLS connection (after termination), or
	// "" for plaintext.
	ServerName string
}

// KafkaRule is one compiled Kafka rule.
type KafkaRule struct {
	// Origin names the rule, e.g. "default/p: ingress[0].toPorts[0].rules.kafka[0]".
	Origin string
	// ServerNames restricts the rule to TLS connections with a matching
	// SNI; empty means every connection. Set by CompilePortRule.
	ServerNames ServerNames

	spec v1alpha1.PortRuleKafka
	// apiKeys is sorted; nil means every key.
	apiKeys    []int16
	apiVersion int16
	anyVersion bool
	clientID   string
	topic      string
}

// CompileKafka compiles one Kafka rule; fld is its path, e.g.
// spec.ingress[0].toPorts[0].rules.kafka[0].
func CompileKafka(r v1alpha1.PortRuleKafka, origin string, fld *field.Path) (*KafkaRule, field.ErrorList) {
	var errs field.ErrorList
	rule := &KafkaRule{Origin: origin, spec: r, anyVersion: true, clientID: r.ClientID, topic: r.Topic}
	switch {
	case r.Role != "" && r.APIKey != "":
		errs = append(errs, field.Invalid(fld.Child("apiKey"), r.APIKey, "role and apiKey are mutually exclusive"))
	case r.Role != "":
		keys, ok := KafkaRoleAPIKeys(r.Role)
		if !ok {
			errs = append(errs, field.NotSupported(fld.Child("role"), r.Role, []string{KafkaRoleProduce, KafkaRoleConsume}))
		}
		rule.apiKeys = keys
	case r.APIKey != "":
		k, ok := KafkaAPIKeyByName(r.APIKey)
		if !ok {
			errs = append(errs, field.Invalid(fld.Child("apiKey"), r.APIKey, "unknown Kafka API key name"))
		}
		rule.apiKeys = []int16{k}
	}
	if r.APIVersion != "" {
		v, err := strconv.ParseInt(r.APIVersion, 10, 16)
		if err != nil || v < 0 {
			errs = append(errs, field.Invalid(fld.Child("apiVersion"), r.APIVersion, "must be a number from 0 to 32767"))
		}
		rule.apiVersion, rule.anyVersion = int16(v), false
	}
	if r.Topic != "" {
		if len(r.Topic) > MaxKafkaTopicLength || !validTopic(r.Topic) {
			errs = append(errs, field.Invalid(fld.Child("topic"), r.Topic, "must be at most 255 characters of [a-zA-Z0-9._-]"))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rule, nil
}

func validTopic(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c == '.' || c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			return false
		}
	}
	return true
}

// matchesHeader checks everything but the topic.
func (r *KafkaRule) matchesHeader(req *KafkaRequest) bool {
	if !r.ServerNames.admits(req.ServerName) {
		return false
	}
	if r.apiKeys != nil {
		if _, found := slices.BinarySearch(r.apiKeys, req.APIKey); !found {
			return false
		}
	}
	if !r.anyVersion && r.apiVersion != req.APIVersion {
		return false
	}
	return r.clientID == "" || r.clientID == req.ClientID
}

// APIKeys returns the API keys the rule allows, sorted; nil means every key.
func (r *KafkaRule) APIKeys() []int16 { return slices.Clone(r.apiKeys) }

// Topic returns the rule's topic; "" means every topic.
func (r *KafkaRule) Topic() string { return r.topic }

// Spec returns the rule as written.
func (r *KafkaRule) Spec() v1alpha1.PortRuleKafka { return r.spec }

// String describes the rule and its origin.
func (r *KafkaRule) String() string { return r.semanticKey() + " origin=" + quote(r.Origin) }

func (r *KafkaRule) semanticKey() string {
	keys := "*"
	if r.apiKeys != nil {
		ks := make([]string, len(r.apiKeys))
		for i, k := range r.apiKeys {
			ks[i] = strconv.Itoa(int(k))
		}
		keys = strings.Join(ks, ",")
	}
	version := "*"
	if !r.anyVersion {
		version = strconv.Itoa(int(r.apiVersion))
	}
	s := fmt.Sprintf("kafka{apiKeys=%s apiVersion=%s clientID=%s topic=%s", keys, version, quote(r.clientID), quote(r.topic))
	if len(r.ServerNames) > 0 {
		s += " serverNames=" + r.ServerNames.String()
	}
	return s + "}"
}

// KafkaVerdict is the decision on one Kafka request.
type KafkaVerdict struct {
	Allowed bool
	// Rule is the rule that completed the allow, nil when denied.
	Rule *KafkaRule
	// DeniedTopics lists, sorted, the request's topics that no rule
	// allows, so the proxy can fail just those (TOPIC_AUTHORIZATION_FAILED);
	// nil when allowed.
	DeniedTopics []string
}

// KafkaRules is a union of Kafka rules.
type KafkaRules []*KafkaRule

// Decide decides req with Cilium's semantics. A rule matches when the API
// key is one of its keys and its apiVersion and clientID, if given, are the
// request's. A rule without a topic, or any matching rule for a request
// that names no topics, allows the request. Otherwise a request is allowed
// only when every topic it names is allowed by some matching rule — not
// necessarily the same one. Nil rules are skipped.
func (rs KafkaRules) Decide(req KafkaRequest) KafkaVerdict {
	var uncovered map[string]struct{}
	if len(req.Topics) > 0 {
		uncovered = make(map[string]struct{}, len(req.Topics))
		for _, t := range req.Topics {
			uncovered[t] = struct{}{}
		}
	}
	for _, r := range rs {
		if r == nil || !r.matchesHeader(&req) {
			continue
		}
		if r.topic == "" || len(req.Topics) == 0 {
			return KafkaVerdict{Allowed: true, Rule: r}
		}
		if _, ok := uncovered[r.topic]; ok {
			delete(uncovered, r.topic)
			if len(uncovered) == 0 {
				return KafkaVerdict{Allowed: true, Rule: r}
			}
		}
	}
	var denied []string
	for t := range uncovered {
		denied = append(denied, t)
	}
	slices.Sort(denied)
	return KafkaVerdict{DeniedTopics: denied}
}
