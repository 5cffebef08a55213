package tls

import (
	ctls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"portcullis.dev/portcullis/policy/l7"
)

// The keys of a secret's data that a TLS context uses unless it names
// others (those of a kubernetes.io/tls Secret, and ca.crt for the CA
// bundle). A terminatingTLS uses a CA bundle only when its trustedCA
// names one: see doc.go.
const (
	DefaultCertificateKey = "tls.crt"
	DefaultPrivateKeyKey  = "tls.key"
	DefaultTrustedCAKey   = "ca.crt"
)

// ErrSecret is wrapped by every error about a referenced secret: missing,
// refused or unparsable.
var ErrSecret = errors.New("TLS secret unusable")

// Secrets holds the secrets TLS contexts reference, by the reference's
// namespace and name (the source secret, as the policy names it; the
// agent fills it from the operator's copies). It is safe for concurrent
// use: Put replaces a secret at once, and the next handshake that looks
// it up uses the new material, so a rotation needs no restart.
//
// Secret data never appears in an error: messages name the secret and
// the key only.
type Secrets struct {
	mu sync.RWMutex
	m  map[secretKey]*secret
	// gen numbers Put calls, so that upstream connections originated with
	// one version of a trust are not reused after a rotation.
	gen uint64
}

type secretKey struct{ namespace, name string }

type secret struct {
	data    map[string][]byte
	refused string
	gen     uint64

	mu     sync.Mutex
	term   map[l7.TLSContextRef]*Terminating
	orig   map[l7.TLSContextRef]*Originating
	errors map[l7.TLSContextRef]error
}

// NewSecrets returns an empty store.
func NewSecrets() *Secrets { return &Secrets{m: map[secretKey]*secret{}} }

// Put sets the data of the secret namespace/name (the source a policy
// names). The map is kept: the caller must not change it afterwards.
func (s *Secrets) Put(namespace, name string, data map[string][]byte) {
	s.set(namespace, name, &secret{data: data})
}

// Refuse records that the secret namespace/name may not be used (no
// ReferenceGrant permits the reference, say): lookups fail with reason.
func (s *Secrets) Refuse(namespace, name, reason string) {
	s.set(namespace, name, &secret{refused: reason})
}

// Delete forgets the secret namespace/name: lookups fail as missing.
func (s *Secrets) Delete(namespace, name string) {
	s.mu.Lock()
	delete(s.m, secretKey{namespace, name})
	s.mu.Unlock()
}

func (s *Secrets) set(namespace, name string, sec *secret) {
	s.mu.Lock()
	s.gen++
	sec.gen = s.gen
	s.m[secretKey{namespace, name}] = sec
	s.mu.Unlock()
}

func (s *Secrets) get(ref *l7.TLSContextRef) (*secret, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: secret %s/%s: no secrets are configured", ErrSecret, ref.Namespace, ref.Name)
	}
	s.mu.RLock()
	sec := s.m[secretKey{ref.Namespace, ref.Name}]
	s.mu.RUnlock()
	switch {
	case sec == nil:
		return nil, fmt.Errorf("%w: secret %s/%s not found (the operator copies a referenced secret only when it exists and the reference is permitted)", ErrSecret, ref.Namespace, ref.Name)
	case sec.refused != "":
		return nil, fmt.Errorf("%w: secret %s/%s refused: %s", ErrSecret, ref.Namespace, ref.Name, sec.refused)
	}
	return sec, nil
}

// Terminating is the material of a terminatingTLS: the certificate
// presented to clients and, when the context names a trustedCA, the CAs
// that client certificates must chain to.
type Terminating struct {
	Certificate ctls.Certificate
	// ClientCAs is nil unless the context's trustedCA is set: then every
	// client must present a certificate they sign.
	ClientCAs *x509.CertPool
}

// Originating is the material of an originatingTLS: the CAs the
// upstream's certificate must chain to and, when the context names a
// certificate, the client certificate presented to the upstream.
type Originating struct {
	RootCAs     *x509.CertPool
	Certificate *ctls.Certificate
	// Version changes whenever the secret does.
	Version uint64
}

// Terminating returns the parsed material of a terminatingTLS reference.
func (s *Secrets) Terminating(ref *l7.TLSContextRef) (*Terminating, error) {
	sec, err := s.get(ref)
	if err != nil {
		return nil, err
	}
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if t := sec.term[*ref]; t != nil {
		return t, nil
	}
	if err := sec.errors[*ref]; err != nil {
		return nil, err
	}
	t, err := parseTerminating(sec.data, ref)
	if err != nil {
		sec.fail(ref, err)
		return nil, err
	}
	if sec.term == nil {
		sec.term = map[l7.TLSContextRef]*Terminating{}
	}
	sec.term[*ref] = t
	return t, nil
}

// Originating returns the parsed material of an originatingTLS reference.
func (s *Secrets) Originating(ref *l7.TLSContextRef) (*Originating, error) {
	sec, err := s.get(ref)
	if err != nil {
		return nil, err
	}
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if o := sec.orig[*ref]; o != nil {
		return o, nil
	}
	if err := sec.errors[*ref]; err != nil {
		return nil, err
	}
	o, err := parseOriginating(sec.data, ref)
	if err != nil {
		sec.fail(ref, err)
		return nil, err
	}
	o.Version = sec.gen
	if sec.orig == nil {
		sec.orig = map[l7.TLSContextRef]*Originating{}
	}
	sec.orig[*ref] = o
	return o, nil
}

func (sec *secret) fail(ref *l7.TLSContextRef, err error) {
	if sec.errors == nil {
		sec.errors = map[l7.TLSContextRef]error{}
	}
	sec.errors[*ref] = err
}

func parseTerminating(data map[string][]byte, ref *l7.TLSContextRef) (*Terminating, error) {
	cert, err := keyPair(data, ref, true)
	if err != nil {
		return nil, err
	}
	t := &Terminating{Certificate: *cert}
	if ref.TrustedCA != "" {
		if t.ClientCAs, err = pool(data, ref, ref.TrustedCA); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func parseOriginating(data map[string][]byte, ref *l7.TLSContextRef) (*Originating, error) {
	caKey := ref.TrustedCA
	if caKey == "" {
		caKey = DefaultTrustedCAKey
	}
	roots, err := pool(data, ref, caKey)
	if err != nil {
		return nil, err
	}
	o := &Originating{RootCAs: roots}
	if ref.Certificate != "" {
		if o.Certificate, err = keyPair(data, ref, false); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// keyPair parses the certificate chain and key a context names (the
// defaults when withDefaults).
func keyPair(data map[string][]byte, ref *l7.TLSContextRef, withDefaults bool) (*ctls.Certificate, error) {
	ck, kk := ref.Certificate, ref.PrivateKey
	if ck == "" && withDefaults {
		ck = DefaultCertificateKey
	}
	if kk == "" {
		kk = DefaultPrivateKeyKey
	}
	crt, err := value(data, ref, ck)
	if err != nil {
		return nil, err
	}
	key, err := value(data, ref, kk)
	if err != nil {
		return nil, err
	}
	// crypto/tls's messages name what is wrong, never the bytes.
	c, err := ctls.X509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("%w: secret %s/%s keys %q and %q: %v", ErrSecret, ref.Namespace, ref.Name, ck, kk, err)
	}
	return &c, nil
}

func pool(data map[string][]byte, ref *l7.TLSContextRef, key string) (*x509.CertPool, error) {
	b, err := value(data, ref, key)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: secret %s/%s key %q holds no PEM certificate", ErrSecret, ref.Namespace, ref.Name, key)
	}
	return p, nil
}

func value(data map[string][]byte, ref *l7.TLSContextRef, key string) ([]byte, error) {
	b, ok := data[key]
	if !ok || len(b) == 0 {
		return nil, fmt.Errorf("%w: secret %s/%s has no key %q", ErrSecret, ref.Namespace, ref.Name, key)
	}
	return b, nil
}
