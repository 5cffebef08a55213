package main

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"portcullis.dev/portcullis/policy/loader"
	proxytls "portcullis.dev/portcullis/proxy/tls"
)

// loadSecrets puts the Secret documents of a load into a store for the
// TLS contexts of the policies (the standalone proxy has no cluster to
// read them from): data and stringData, by namespace ("default" when
// unset) and name. It returns the number of secrets; a Secret that does
// not decode is an error naming its source, never its contents.
func loadSecrets(res *loader.Result, into *proxytls.Secrets) (int, error) {
	n := 0
	for _, d := range res.Skipped {
		u, ok := d.Object.(*unstructured.Unstructured)
		if !ok || u.GetKind() != "Secret" || u.GroupVersionKind().Group != "" {
			continue
		}
		var s corev1.Secret
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
			return 0, inputErrorf("%s: the Secret does not decode (data values must be base64)", d.Source)
		}
		data := map[string][]byte{}
		for k, v := range s.Data {
			data[k] = v
		}
		for k, v := range s.StringData {
			data[k] = []byte(v)
		}
		ns := s.Namespace
		if ns == "" {
			ns = "default"
		}
		into.Put(ns, s.Name, data)
		n++
	}
	return n, nil
}

// withoutSecretWarnings drops the loader's "skipped" warnings about
// Secrets: the standalone proxy reads them.
func withoutSecretWarnings(ws []loader.Warning) []loader.Warning {
	var out []loader.Warning
	for _, w := range ws {
		if w.Source.Kind != "Secret" {
			out = append(out, w)
		}
	}
	return out
}
