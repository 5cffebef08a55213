package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Label sources, as in Cilium. A selector key without a source, or with
// "any", matches a label of any source.
const (
	SourceK8s      = "k8s"
	SourceReserved = "reserved"
	SourceCIDR     = "cidr"
	SourceUnspec   = "unspec"
	SourceAny      = "any"
)

// Identity-relevant label keys that Portcullis derives, named as in Cilium
// so that Cilium selectors keep working.
const (
	LabelNamespace       = "io.kubernetes.pod.namespace"
	LabelNamespaceLabels = "io.cilium.k8s.namespace.labels."
	LabelServiceAccount  = "io.cilium.k8s.policy.serviceaccount"
	LabelCluster         = "io.cilium.k8s.policy.cluster"
	// ClusterName is the value of LabelCluster for local pods.
	ClusterName = "default"
)

// Label is one identity label.
type Label struct {
	Source string
	Key    string
	Value  string
}

// String renders the label as source:key=value.
func (l Label) String() string {
	if l.Value == "" {
		return l.Source + ":" + l.Key
	}
	return l.Source + ":" + l.Key + "=" + l.Value
}

// Labels is a set of identity labels indexed by "source:key".
type Labels map[string]Label

// Add inserts a label.
func (ls Labels) Add(source, key, value string) { ls[source+":"+key] = Label{source, key, value} }

// Lookup finds the label for a selector key, which may carry a source
// prefix ("k8s:app", "reserved:host", "any:app") or none.
func (ls Labels) Lookup(key string) (Label, bool) {
	src, k := splitSource(key)
	if src != "" && src != SourceAny {
		l, ok := ls[src+":"+k]
		return l, ok
	}
	for _, s := range [...]string{SourceK8s, SourceReserved, SourceCIDR, SourceUnspec} {
		if l, ok := ls[s+":"+k]; ok {
			return l, true
		}
	}
	return Label{}, false
}

// Sorted returns the labels in a stable order.
func (ls Labels) Sorted() []Label {
	out := make([]Label, 0, len(ls))
	for _, l := range ls {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source < out[j].Source
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Key is a canonical string of the set: equal sets, equal keys.
func (ls Labels) Key() string {
	var b strings.Builder
	for i, l := range ls.Sorted() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.String())
	}
	return b.String()
}

// String renders the labels for humans.
func (ls Labels) String() string { return ls.Key() }

// splitSource splits "k8s:app" into ("k8s", "app"). Only known sources are
// split off, so a key such as "example.com/x:y" stays whole.
func splitSource(key string) (string, string) {
	if i := strings.IndexByte(key, ':'); i > 0 {
		switch src := key[:i]; src {
		case SourceK8s, SourceReserved, SourceCIDR, SourceUnspec, SourceAny:
			return src, key[i+1:]
		}
	}
	return "", key
}

// ParseLabels parses "k=v,k2=v2" as given on the command line; keys may
// carry a source prefix (default k8s).
func ParseLabels(s string) (Labels, error) {
	ls := Labels{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		src, key := splitSource(strings.TrimSpace(k))
		if key == "" {
			return nil, fmt.Errorf("label %q: empty key", part)
		}
		if src == "" || src == SourceAny {
			src = SourceK8s
		}
		ls.Add(src, key, strings.TrimSpace(v))
	}
	return ls, nil
}

// ignoredPodLabel reports pod labels that are not identity-relevant: they
// differ between replicas of one workload and would split its identity
// (Cilium's default label filter drops the same ones).
func ignoredPodLabel(key string) bool {
	switch key {
	case "pod-template-hash", "controller-revision-hash", "pod-template-generation",
		"controller-uid", "batch.kubernetes.io/controller-uid", "statefulset.kubernetes.io/pod-name",
		"apps.kubernetes.io/pod-index", "batch.kubernetes.io/job-completion-index":
		return true
	}
	return false
}

// PodLabels returns the identity labels of a pod: its own labels, its
// namespace, the namespace's labels, its service account and the cluster.
func PodLabels(namespace string, podLabels, namespaceLabels map[string]string, serviceAccount string) Labels {
	ls := make(Labels, len(podLabels)+len(namespaceLabels)+3)
	for k, v := range podLabels {
		if !ignoredPodLabel(k) {
			ls.Add(SourceK8s, k, v)
		}
	}
	for k, v := range namespaceLabels {
		ls.Add(SourceK8s, LabelNamespaceLabels+k, v)
	}
	ls.Add(SourceK8s, LabelNamespace, namespace)
	if serviceAccount != "" {
		ls.Add(SourceK8s, LabelServiceAccount, serviceAccount)
	}
	ls.Add(SourceK8s, LabelCluster, ClusterName)
	return ls
}
