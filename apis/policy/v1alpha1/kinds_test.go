package v1alpha1_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// TestKinds checks the kind table against the scheme: each kind's object
// and list are the types registered under its name, and a list's Policies
// point into its items.
func TestKinds(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if len(v1alpha1.Kinds) != 3 {
		t.Fatalf("%d kinds, want 3", len(v1alpha1.Kinds))
	}
	for _, k := range v1alpha1.Kinds {
		gvks, _, err := s.ObjectKinds(k.New())
		if err != nil || len(gvks) != 1 || gvks[0] != k.GroupVersionKind() {
			t.Errorf("%s: New() is registered as %v (%v)", k.Name, gvks, err)
		}
		list := k.NewList()
		gvks, _, err = s.ObjectKinds(list)
		if err != nil || len(gvks) != 1 || gvks[0].Kind != k.Name+"List" {
			t.Errorf("%s: NewList() is registered as %v (%v)", k.Name, gvks, err)
		}
		if got, ok := v1alpha1.KindOf(k.Name); !ok || got.Name != k.Name {
			t.Errorf("KindOf(%q) = %v, %v", k.Name, got.Name, ok)
		}
		if ns := k.New().GetNamespace(); ns != "" {
			t.Errorf("%s: new object has namespace %q", k.Name, ns)
		}
	}
	l := &v1alpha1.TrafficPolicyList{Items: make([]v1alpha1.TrafficPolicy, 2)}
	ps := l.Policies()
	ps[1].SetName("b")
	ps[1].PolicyStatus().ObservedGeneration = 7
	if l.Items[1].Name != "b" || l.Items[1].Status.ObservedGeneration != 7 {
		t.Errorf("Policies() does not point into the list's items: %+v", l.Items[1])
	}
	if _, ok := v1alpha1.KindOf("CiliumNetworkPolicy"); ok {
		t.Error("KindOf knows CiliumNetworkPolicy")
	}
}
