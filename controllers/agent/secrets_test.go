package agent

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/controllers/operator"
	"portcullis.dev/portcullis/internal/tlstest"
	"portcullis.dev/portcullis/policy/l7"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// operatorCopy is the Secret the operator writes in the secrets namespace
// for the source namespace/name.
func operatorCopy(namespace, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "portcullis-secrets", Name: operator.SecretCopyName(namespace, name),
			Labels:      map[string]string{operator.LabelManagedBy: operator.ManagedByValue, operator.LabelSourceNamespace: namespace},
			Annotations: map[string]string{operator.LabelSourceNamespace: namespace, operator.AnnotationSourceName: name},
		},
		Data: data,
	}
}

// TestTLSSecretsFromCopies: a policy's reference finds the operator's copy
// of its secret; a rotation of the copy is what the next lookup returns;
// a deleted copy, or a Secret the operator did not write, leaves the
// reference unusable, with an error that names it and holds no key
// material.
func TestTLSSecretsFromCopies(t *testing.T) {
	ca := tlstest.NewCA(t, "internal CA")
	ref := &l7.TLSContextRef{Namespace: "media", Name: "front"}
	ts := newTLSSecrets()
	cn := func() (string, error) {
		m, err := ts.store.Terminating(ref)
		if err != nil {
			return "", err
		}
		return m.Certificate.Leaf.Subject.CommonName, nil
	}
	if _, err := cn(); !errors.Is(err, proxytls.ErrSecret) {
		t.Fatalf("before any copy: %v", err)
	}

	crt, key := ca.Issue(t, "first", "api.example.com")
	cp := operatorCopy("media", "front", map[string][]byte{"tls.crt": crt, "tls.key": key})
	ts.apply(cp.Name, cp)
	if got, err := cn(); err != nil || got != "first" {
		t.Fatalf("after the copy: %q %v", got, err)
	}

	crt2, key2 := ca.Issue(t, "rotated", "api.example.com")
	ts.apply(cp.Name, operatorCopy("media", "front", map[string][]byte{"tls.crt": crt2, "tls.key": key2}))
	if got, err := cn(); err != nil || got != "rotated" {
		t.Fatalf("after the rotation: %q %v", got, err)
	}

	ts.apply(cp.Name, nil)
	_, err := cn()
	if !errors.Is(err, proxytls.ErrSecret) || !strings.Contains(err.Error(), "media/front not found") {
		t.Fatalf("after the deletion: %v", err)
	}
	if strings.Contains(err.Error(), string(key2)) || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("the error holds key material: %v", err)
	}

	// Not the operator's: a Secret someone else put in the namespace, and
	// a copy whose name is not its source's copy name.
	forged := operatorCopy("media", "front", map[string][]byte{"tls.crt": crt, "tls.key": key})
	forged.Labels[operator.LabelManagedBy] = "someone"
	ts.apply(forged.Name, forged)
	renamed := operatorCopy("media", "front", map[string][]byte{"tls.crt": crt, "tls.key": key})
	renamed.Name = "media.other"
	ts.apply(renamed.Name, renamed)
	if _, err := cn(); !errors.Is(err, proxytls.ErrSecret) {
		t.Fatalf("a Secret not written by the operator was used: %v", err)
	}
}
