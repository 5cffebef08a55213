package operator

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"portcullis.dev/portcullis/apis/policy/v1alpha1"
)

// tlsRule terminates TLS with the secret ns/name ("" ns: the policy's).
func tlsRule(ns, name string) *v1alpha1.Rule {
	return &v1alpha1.Rule{
		EndpointSelector: &v1alpha1.EndpointSelector{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Ingress: []v1alpha1.IngressRule{{ToPorts: []v1alpha1.PortRule{{
			Ports:          []v1alpha1.PortProtocol{{Port: "443", Protocol: v1alpha1.ProtoTCP}},
			TerminatingTLS: &v1alpha1.TLSContext{Secret: &v1alpha1.Secret{Namespace: ns, Name: name}, Certificate: "tls.crt", PrivateKey: "tls.key"},
			Rules:          &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{Method: "GET"}}},
		}}}},
	}
}

func tlsSecret(ns, name, cert string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": []byte(cert), "tls.key": []byte("key-" + cert)},
	}
}

// waitCopy waits until the copy of ns/name holds cert.
func waitCopy(t *testing.T, ns, name, cert string) *corev1.Secret {
	t.Helper()
	var cp corev1.Secret
	eventually(t, "copy of "+ns+"/"+name, func() error {
		key := types.NamespacedName{Namespace: v1alpha1.DefaultSecretsNamespace, Name: v1alpha1.SecretCopyName(ns, name)}
		if err := k8s.Get(testCtx, key, &cp); err != nil {
			return err
		}
		if got := string(cp.Data["tls.crt"]); got != cert {
			return fmt.Errorf("tls.crt = %q, want %q", got, cert)
		}
		return nil
	})
	if cp.Type != corev1.SecretTypeTLS {
		t.Errorf("copy type %s, want %s", cp.Type, corev1.SecretTypeTLS)
	}
	if cp.Labels[v1alpha1.SecretCopyManagedByLabel] != v1alpha1.SecretCopyManagedBy || cp.Labels[v1alpha1.SecretCopySourceNamespace] != ns ||
		cp.Annotations[v1alpha1.SecretCopySourceNamespace] != ns || cp.Annotations[v1alpha1.SecretCopySourceName] != name {
		t.Errorf("copy not labelled with its origin: labels %v annotations %v", cp.Labels, cp.Annotations)
	}
	return &cp
}

func noCopy(ns, name string) error {
	var cp corev1.Secret
	err := k8s.Get(testCtx, types.NamespacedName{Namespace: v1alpha1.DefaultSecretsNamespace, Name: v1alpha1.SecretCopyName(ns, name)}, &cp)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	return errors.New("copy " + cp.Name + " exists")
}

func waitNoCopy(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, "no copy of "+ns+"/"+name, func() error { return noCopy(ns, name) })
}

// TestSecretSyncSameNamespace: a secret in the policy's namespace is
// copied, rotated with its source, and deleted with the last policy.
func TestSecretSyncSameNamespace(t *testing.T) {
	createNamespace(t, "sync-same")
	if err := k8s.Create(testCtx, tlsSecret("sync-same", "web-tls", "v1")); err != nil {
		t.Fatal(err)
	}
	p1 := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-same", Name: "one"}, Spec: tlsRule("", "web-tls")}
	p2 := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-same", Name: "two"}, Spec: tlsRule("sync-same", "web-tls")}
	for _, p := range []*v1alpha1.TrafficPolicy{p1, p2} {
		if err := k8s.Create(testCtx, p); err != nil {
			t.Fatal(err)
		}
	}
	waitCondition(t, p1, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolvedRefs)
	waitCondition(t, p1, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	waitCopy(t, "sync-same", "web-tls", "v1")

	// Rotation: the source changes, the copy follows.
	var src corev1.Secret
	if err := k8s.Get(testCtx, types.NamespacedName{Namespace: "sync-same", Name: "web-tls"}, &src); err != nil {
		t.Fatal(err)
	}
	src.Data["tls.crt"] = []byte("v2")
	if err := k8s.Update(testCtx, &src); err != nil {
		t.Fatal(err)
	}
	waitCopy(t, "sync-same", "web-tls", "v2")

	// Someone edits the copy: it is put back.
	cp := waitCopy(t, "sync-same", "web-tls", "v2")
	cp.Data["tls.crt"] = []byte("tampered")
	if err := k8s.Update(testCtx, cp); err != nil {
		t.Fatal(err)
	}
	waitCopy(t, "sync-same", "web-tls", "v2")

	// One of two referring policies goes: the copy stays.
	if err := k8s.Delete(testCtx, p1); err != nil {
		t.Fatal(err)
	}
	consistently(t, "copy kept while p2 refers to it", 500*time.Millisecond, func() error {
		_, err := getCopy("sync-same", "web-tls")
		return err
	})
	// The last one goes: so does the copy.
	if err := k8s.Delete(testCtx, p2); err != nil {
		t.Fatal(err)
	}
	waitNoCopy(t, "sync-same", "web-tls")
}

func getCopy(ns, name string) (*corev1.Secret, error) {
	var cp corev1.Secret
	err := k8s.Get(testCtx, types.NamespacedName{Namespace: v1alpha1.DefaultSecretsNamespace, Name: v1alpha1.SecretCopyName(ns, name)}, &cp)
	return &cp, err
}

// TestSecretSyncReferenceGrant: a secret in another namespace is refused
// (ResolvedRefs False/RefNotPermitted, a Warning event, no copy) until a
// ReferenceGrant there allows it; revoking the grant deletes the copy.
func TestSecretSyncReferenceGrant(t *testing.T) {
	createNamespace(t, "sync-app")
	createNamespace(t, "sync-certs")
	if err := k8s.Create(testCtx, tlsSecret("sync-certs", "shared-tls", "c1")); err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.TrafficPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-app", Name: "p"}, Spec: tlsRule("sync-certs", "shared-tls")}
	if err := k8s.Create(testCtx, p); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, p, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonRefNotPermitted)
	if want := "spec.ingress[0].toPorts[0].terminatingTLS.secret: no ReferenceGrant in namespace sync-certs"; !strings.Contains(c.Message, want) {
		t.Errorf("message %q does not contain %q", c.Message, want)
	}
	// Accepted stays true: refusing a reference does not withdraw the policy.
	waitCondition(t, p, v1alpha1.ConditionAccepted, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	waitEvent(t, p, corev1.EventTypeWarning, v1alpha1.ReasonRefNotPermitted)
	consistently(t, "no copy without a grant", 500*time.Millisecond, func() error { return noCopy("sync-certs", "shared-tls") })

	grants := []struct {
		name  string
		grant gatewayv1beta1.ReferenceGrantSpec
	}{
		{"wrong kind", grantSpec("ClusterTrafficPolicy", "sync-app", nil)},
		{"wrong namespace", grantSpec("TrafficPolicy", "other", nil)},
		{"wrong secret name", grantSpec("TrafficPolicy", "sync-app", ptr.To("other"))},
	}
	for _, g := range grants {
		rg := &gatewayv1beta1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-certs", Name: strings.ReplaceAll(g.name, " ", "-")}, Spec: g.grant}
		if err := k8s.Create(testCtx, rg); err != nil {
			t.Fatal(err)
		}
	}
	consistently(t, "grants that do not match permit nothing", time.Second, func() error {
		if err := noCopy("sync-certs", "shared-tls"); err != nil {
			return err
		}
		if err := k8s.Get(testCtx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		if c := findCondition(p.Status.Conditions, v1alpha1.ConditionResolvedRefs); c == nil || c.Reason != v1alpha1.ReasonRefNotPermitted {
			return fmt.Errorf("ResolvedRefs = %+v", c)
		}
		return nil
	})

	grant := &gatewayv1beta1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-certs", Name: "allow-sync-app"},
		Spec: grantSpec("TrafficPolicy", "sync-app", ptr.To("shared-tls"))}
	if err := k8s.Create(testCtx, grant); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, p, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolvedRefs)
	waitCopy(t, "sync-certs", "shared-tls", "c1")

	// Revoking the grant withdraws the copy and the status says why.
	if err := k8s.Delete(testCtx, grant); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, p, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonRefNotPermitted)
	waitNoCopy(t, "sync-certs", "shared-tls")
}

func grantSpec(kind, ns string, name *string) gatewayv1beta1.ReferenceGrantSpec {
	var n *gatewayv1.ObjectName
	if name != nil {
		n = ptr.To(gatewayv1.ObjectName(*name))
	}
	return gatewayv1beta1.ReferenceGrantSpec{
		From: []gatewayv1beta1.ReferenceGrantFrom{{Group: "policy.portcullis.dev", Kind: gatewayv1.Kind(kind), Namespace: gatewayv1.Namespace(ns)}},
		To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "", Kind: "Secret", Name: n}},
	}
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// TestSecretSyncClusterScoped: a ClusterTrafficPolicy and an
// AdminTrafficPolicy need a grant whose from namespace is the secret's
// own; a header-match secret is synced like a TLS one; a missing secret
// is SecretNotFound until it appears.
func TestSecretSyncClusterScoped(t *testing.T) {
	createNamespace(t, "sync-cluster")
	ctp := &v1alpha1.ClusterTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "sync-cluster-tls"}, Spec: tlsRule("sync-cluster", "gw-tls")}
	atp := &v1alpha1.AdminTrafficPolicy{ObjectMeta: metav1.ObjectMeta{Name: "sync-cluster-header"}, Spec: v1alpha1.AdminTrafficPolicySpec{
		Priority: 20,
		Subject:  v1alpha1.AdminSubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}},
		Egress: []v1alpha1.AdminEgressRule{{
			Name: "api", Action: v1alpha1.ActionAllow, To: []v1alpha1.AdminPeer{{Namespaces: &metav1.LabelSelector{}}},
			Ports: []v1alpha1.PortProtocol{{Port: "80", Protocol: v1alpha1.ProtoTCP}},
			Rules: &v1alpha1.L7Rules{HTTP: []v1alpha1.PortRuleHTTP{{HeaderMatches: []v1alpha1.HeaderMatch{{
				Name: "Authorization", Mismatch: v1alpha1.MismatchReplace, Secret: &v1alpha1.Secret{Namespace: "sync-cluster", Name: "api-token"},
			}}}}},
		}},
	}}
	for _, o := range []client.Object{ctp, atp} {
		if err := k8s.Create(testCtx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitCondition(t, ctp, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonRefNotPermitted)
	waitCondition(t, atp, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonRefNotPermitted)
	for _, kind := range []string{"ClusterTrafficPolicy", "AdminTrafficPolicy"} {
		g := &gatewayv1beta1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-cluster", Name: strings.ToLower(kind)},
			Spec: grantSpec(kind, "sync-cluster", nil)}
		if err := k8s.Create(testCtx, g); err != nil {
			t.Fatal(err)
		}
	}
	waitCondition(t, ctp, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	waitCondition(t, atp, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	waitEvent(t, ctp, corev1.EventTypeWarning, v1alpha1.ReasonSecretNotFound)

	if err := k8s.Create(testCtx, tlsSecret("sync-cluster", "gw-tls", "g1")); err != nil {
		t.Fatal(err)
	}
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "sync-cluster", Name: "api-token"}, Data: map[string][]byte{"value": []byte("Bearer s3cret")}}
	if err := k8s.Create(testCtx, token); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ctp, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolvedRefs)
	waitCondition(t, atp, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, v1alpha1.ReasonResolvedRefs)
	waitEvent(t, ctp, corev1.EventTypeNormal, v1alpha1.ReasonResolvedRefs)
	waitCopy(t, "sync-cluster", "gw-tls", "g1")
	eventually(t, "header secret copy", func() error {
		cp, err := getCopy("sync-cluster", "api-token")
		if err != nil {
			return err
		}
		if string(cp.Data["value"]) != "Bearer s3cret" || cp.Type != corev1.SecretTypeOpaque {
			return fmt.Errorf("copy %s %v", cp.Type, cp.Data)
		}
		return nil
	})

	// Dropping the reference from a policy (an update, not a delete)
	// deletes its copy.
	atp.Spec.Egress[0].Rules.HTTP[0].HeaderMatches[0] = v1alpha1.HeaderMatch{Name: "X-Team", Value: "x"}
	if err := k8s.Update(testCtx, atp); err != nil {
		t.Fatal(err)
	}
	waitNoCopy(t, "sync-cluster", "api-token")
	// Deleting the source deletes the copy.
	if err := k8s.Delete(testCtx, tlsSecret("sync-cluster", "gw-tls", "")); err != nil {
		t.Fatal(err)
	}
	waitNoCopy(t, "sync-cluster", "gw-tls")
	waitCondition(t, ctp, v1alpha1.ConditionResolvedRefs, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
}
