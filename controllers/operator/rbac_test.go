package operator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// applyRBAC creates every object of the config/rbac kustomization.
func applyRBAC(t *testing.T) {
	t.Helper()
	dir := filepath.Join("..", "..", "config", "rbac")
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatal(err)
	}
	for _, f := range kust.Resources {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := k8s.Create(testCtx, u); err != nil {
				t.Fatalf("%s: creating %s %s: %v", f, u.GetKind(), u.GetName(), err)
			}
		}
	}
}

// aggregateClusterRoles does what kube-controller-manager's
// clusterrole-aggregation controller does, which envtest does not run:
// the rules of an aggregated ClusterRole (admin, edit, view) become the
// union of the rules of the ClusterRoles its aggregationRule selects.
// What is under test is real: our labels, the bootstrap roles'
// aggregationRules and the apiserver's RBAC authorizer.
func aggregateClusterRoles(t *testing.T) {
	t.Helper()
	var roles rbacv1.ClusterRoleList
	if err := k8s.List(testCtx, &roles); err != nil {
		t.Fatal(err)
	}
	for i := range roles.Items {
		agg := &roles.Items[i]
		if agg.AggregationRule == nil {
			continue
		}
		var rules []rbacv1.PolicyRule
		var names []string
		byName := map[string]*rbacv1.ClusterRole{}
		for _, sel := range agg.AggregationRule.ClusterRoleSelectors {
			s, err := metav1.LabelSelectorAsSelector(&sel)
			if err != nil {
				t.Fatal(err)
			}
			for j := range roles.Items {
				r := &roles.Items[j]
				if r.Name != agg.Name && s.Matches(labels.Set(r.Labels)) && byName[r.Name] == nil {
					byName[r.Name] = r
					names = append(names, r.Name)
				}
			}
		}
		sort.Strings(names)
		for _, n := range names {
			for _, rule := range byName[n].Rules {
				dup := false
				for _, have := range rules {
					if equality.Semantic.DeepEqual(have, rule) {
						dup = true
						break
					}
				}
				if !dup {
					rules = append(rules, rule)
				}
			}
		}
		agg.Rules = rules
		if err := k8s.Update(testCtx, agg); err != nil {
			t.Fatalf("aggregating %s: %v", agg.Name, err)
		}
	}
}

func bindClusterRole(t *testing.T, ns, role, user string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if err := k8s.Create(testCtx, rb); err != nil {
		t.Fatal(err)
	}
}

type access struct {
	user, verb, group, resource, subresource, namespace, name string
	allowed                                                   bool
}

func (a access) String() string {
	where := "cluster-wide"
	if a.namespace != "" {
		where = "in " + a.namespace
	}
	res := a.resource
	if a.subresource != "" {
		res += "/" + a.subresource
	}
	return fmt.Sprintf("%s %s %s.%s %s", a.user, a.verb, res, a.group, where)
}

const (
	agentSA    = "system:serviceaccount:portcullis-system:portcullis-agent"
	operatorSA = "system:serviceaccount:portcullis-system:portcullis-operator"
	policyAPI  = "policy.portcullis.dev"
)

func userGroups(user string) []string {
	if len(user) > len("system:serviceaccount:") && user[:len("system:serviceaccount:")] == "system:serviceaccount:" {
		return []string{"system:serviceaccounts", "system:serviceaccounts:portcullis-system", "system:authenticated"}
	}
	return []string{"system:authenticated"}
}

// TestRBAC asks the real apiserver's RBAC authorizer (SubjectAccessReview)
// what the roles in config/rbac allow.
func TestRBAC(t *testing.T) {
	for _, ns := range []string{"team-a", "team-b"} {
		createNamespace(t, ns)
	}
	applyRBAC(t)
	// The built-in roles must aggregate ours: that is their
	// aggregationRule and our labels, checked here, not assumed.
	aggregateClusterRoles(t)
	bindClusterRole(t, "team-a", "edit", "alice")
	bindClusterRole(t, "team-a", "view", "victor")

	tests := []access{
		// RBAC is on at all: an unprivileged user is refused.
		{user: "mallory", verb: "list", resource: "secrets", namespace: "default"},

		// The agent reads secrets only in the secrets namespace.
		{user: agentSA, verb: "get", resource: "secrets", namespace: "portcullis-secrets", name: "team-a.web-tls", allowed: true},
		{user: agentSA, verb: "list", resource: "secrets", namespace: "portcullis-secrets", allowed: true},
		{user: agentSA, verb: "get", resource: "secrets", namespace: "team-a", name: "web-tls"},
		{user: agentSA, verb: "get", resource: "secrets", namespace: "kube-system"},
		{user: agentSA, verb: "list", resource: "secrets"},
		{user: agentSA, verb: "create", resource: "secrets", namespace: "portcullis-secrets"},
		// ... and reads what it needs, reports status, holds its Lease.
		{user: agentSA, verb: "watch", resource: "pods", allowed: true},
		{user: agentSA, verb: "list", group: "discovery.k8s.io", resource: "endpointslices", allowed: true},
		{user: agentSA, verb: "list", group: policyAPI, resource: "admintrafficpolicies", allowed: true},
		{user: agentSA, verb: "patch", group: policyAPI, resource: "trafficpolicies", subresource: "status", namespace: "team-a", allowed: true},
		{user: agentSA, verb: "update", group: policyAPI, resource: "trafficpolicies", namespace: "team-a"},
		{user: agentSA, verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "portcullis-system", name: "portcullis-agent-n1", allowed: true},
		{user: agentSA, verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system"},

		// The operator writes secrets only in the secrets namespace and
		// only patches policy status.
		{user: operatorSA, verb: "create", resource: "secrets", namespace: "portcullis-secrets", allowed: true},
		{user: operatorSA, verb: "delete", resource: "secrets", namespace: "portcullis-secrets", allowed: true},
		{user: operatorSA, verb: "create", resource: "secrets", namespace: "team-a"},
		{user: operatorSA, verb: "get", resource: "secrets", namespace: "team-a", allowed: true},
		{user: operatorSA, verb: "patch", group: policyAPI, resource: "clustertrafficpolicies", subresource: "status", allowed: true},
		{user: operatorSA, verb: "update", group: policyAPI, resource: "trafficpolicies", namespace: "team-a"},
		{user: operatorSA, verb: "list", group: "gateway.networking.k8s.io", resource: "referencegrants", allowed: true},
		{user: operatorSA, verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: "portcullis-system", allowed: true},
		{user: operatorSA, verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: "default"},
		{user: operatorSA, verb: "create", group: "events.k8s.io", resource: "events", namespace: "team-a", allowed: true},

		// A namespace editor manages TrafficPolicies in their namespace only,
		// and never the cluster-scoped kinds.
		{user: "alice", verb: "create", group: policyAPI, resource: "trafficpolicies", namespace: "team-a", allowed: true},
		{user: "alice", verb: "delete", group: policyAPI, resource: "trafficpolicies", namespace: "team-a", allowed: true},
		{user: "alice", verb: "create", group: policyAPI, resource: "trafficpolicies", namespace: "team-b"},
		{user: "alice", verb: "patch", group: policyAPI, resource: "trafficpolicies", subresource: "status", namespace: "team-a"},
		{user: "alice", verb: "create", group: policyAPI, resource: "admintrafficpolicies"},
		{user: "alice", verb: "create", group: policyAPI, resource: "clustertrafficpolicies"},
		{user: "alice", verb: "list", group: policyAPI, resource: "clustertrafficpolicies"},

		// A viewer lists and reads, never writes.
		{user: "victor", verb: "list", group: policyAPI, resource: "trafficpolicies", namespace: "team-a", allowed: true},
		{user: "victor", verb: "get", group: policyAPI, resource: "trafficpolicies", namespace: "team-a", allowed: true},
		{user: "victor", verb: "create", group: policyAPI, resource: "trafficpolicies", namespace: "team-a"},
		{user: "victor", verb: "list", group: policyAPI, resource: "trafficpolicies", namespace: "team-b"},
	}
	for _, tt := range tests {
		t.Run(tt.String(), func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   tt.user,
				Groups: userGroups(tt.user),
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: tt.verb, Group: tt.group, Resource: tt.resource, Subresource: tt.subresource,
					Namespace: tt.namespace, Name: tt.name,
				},
			}}
			if err := k8s.Create(testCtx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tt.allowed {
				t.Errorf("allowed = %v, want %v (%s %s)", sar.Status.Allowed, tt.allowed, sar.Status.Reason, sar.Status.EvaluationError)
			}
		})
	}
}

// TestRBACAggregationLabels: the static roles carry the labels that the
// built-in admin, edit and view aggregate, and nothing aggregates the
// cluster-scoped kinds.
func TestRBACAggregationLabels(t *testing.T) {
	var edit rbacv1.ClusterRole
	if err := k8s.Get(testCtx, client.ObjectKey{Name: "edit"}, &edit); err != nil {
		t.Fatal(err)
	}
	if edit.AggregationRule == nil {
		t.Fatal("the built-in edit ClusterRole has no aggregationRule")
	}
	want := map[string]bool{"rbac.authorization.k8s.io/aggregate-to-edit": false}
	for _, s := range edit.AggregationRule.ClusterRoleSelectors {
		for k := range s.MatchLabels {
			if _, ok := want[k]; ok {
				want[k] = true
			}
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("edit does not aggregate %s", k)
		}
	}
}
