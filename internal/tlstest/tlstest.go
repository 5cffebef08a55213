// Package tlstest makes certificate authorities and certificates for
// tests, with crypto/x509: ECDSA P-256, valid for an hour either side of
// now.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// CA is a certificate authority made for a test.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate, PEM-encoded.
	PEM []byte
}

// NewCA makes a CA whose subject's common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue returns the PEM certificate and key of a leaf the CA signs, for
// server and client use, with subject common name cn and the given DNS
// names or IP addresses.
func (c *CA) Issue(t testing.TB, cn string, names ...string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &k.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// OpenSSL makes with the openssl command, as the docs do, a CA named ca
// and a certificate it signs for each DNS name, in dir: CA.crt, CA.key,
// NAME.crt and NAME.key.
func OpenSSL(t testing.TB, dir, ca string, names ...string) {
	t.Helper()
	if err := OpenSSLFiles(dir, ca, names...); err != nil {
		t.Fatal(err)
	}
}

// OpenSSLFiles is OpenSSL for programs that are not tests (hack/demo): it
// returns the first failure, with openssl's output.
func OpenSSLFiles(dir, ca string, names ...string) error {
	run := func(args ...string) error {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("openssl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca+".key", "-out", ca+".crt", "-subj", "/CN="+ca, "-days", "1"); err != nil {
		return err
	}
	for _, n := range names {
		if err := run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", n+".key", "-out", n+".csr", "-subj", "/CN="+n); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, n+".ext"), []byte("subjectAltName=DNS:"+n+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing the extensions of %s: %w", n, err)
		}
		if err := run("x509", "-req", "-in", n+".csr", "-CA", ca+".crt", "-CAkey", ca+".key", "-CAcreateserial", "-out", n+".crt", "-days", "1", "-extfile", n+".ext"); err != nil {
			return err
		}
	}
	return nil
}
