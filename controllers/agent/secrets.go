package agent

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"portcullis.dev/portcullis/controllers/operator"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// tlsSecrets feeds the proxy's TLS material from the operator's copies in
// the secrets namespace (the only Secrets the agent may read): each copy
// is put under the namespace and name of its source, which is what
// policies name. A reference without a copy (the source is missing, or no
// ReferenceGrant permits it) finds nothing, and its connections are reset.
type tlsSecrets struct {
	store *proxytls.Secrets
	// sources maps a copy's name to its source, to forget the source when
	// the copy is deleted.
	sources map[string]types.NamespacedName
}

func newTLSSecrets() *tlsSecrets {
	return &tlsSecrets{store: proxytls.NewSecrets(), sources: map[string]types.NamespacedName{}}
}

// source is the secret a copy stands for; ok is false for a Secret the
// operator did not write, or whose name is not the copy name of its
// source (it is then not what a policy's reference maps to).
func source(s *corev1.Secret) (types.NamespacedName, bool) {
	a := s.Annotations
	src := types.NamespacedName{Namespace: a[operator.LabelSourceNamespace], Name: a[operator.AnnotationSourceName]}
	if s.Labels[operator.LabelManagedBy] != operator.ManagedByValue || src.Namespace == "" || src.Name == "" ||
		operator.SecretCopyName(src.Namespace, src.Name) != s.Name {
		return src, false
	}
	return src, true
}

// apply puts the copy s into the store, or forgets the copy named name
// when s is nil (deleted). It is called from one reconciler goroutine.
func (t *tlsSecrets) apply(name string, s *corev1.Secret) {
	if old, ok := t.sources[name]; ok && s == nil {
		t.store.Delete(old.Namespace, old.Name)
		delete(t.sources, name)
		return
	}
	if s == nil {
		return
	}
	src, ok := source(s)
	if !ok {
		return
	}
	t.sources[name] = src
	t.store.Put(src.Namespace, src.Name, maps.Clone(s.Data))
}

// applySecret reconciles one Secret of the secrets namespace. Its errors
// and logs name the Secret, never its data.
func (a *Agent) applySecret(ctx context.Context, key types.NamespacedName) error {
	if key.Namespace != a.cfg.SecretsNamespace {
		return nil
	}
	var s corev1.Secret
	err := a.reader.Get(ctx, key, &s)
	a.secretsMu.Lock()
	defer a.secretsMu.Unlock()
	switch {
	case apierrors.IsNotFound(err):
		a.tls.apply(key.Name, nil)
		return nil
	case err != nil:
		return fmt.Errorf("reading the TLS secret %s: %w", key, err)
	}
	a.tls.apply(key.Name, &s)
	ctrl.LoggerFrom(ctx).V(1).Info("TLS secret loaded", "copy", key.String(), "keys", len(s.Data))
	return nil
}
