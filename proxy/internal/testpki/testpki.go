// Package testpki makes trust anchors, issuers and workload certificates for the proxy's
// tests, and a static certificate source to hand them to the proxy.
package testpki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// PKI is a trust anchor and an issuer.
type PKI struct {
	Anchor *identity.TrustAnchor
	Issuer *identity.Issuer
}

// New makes a PKI valid from a week ago, so that tests can sign certificates in the past.
func New(t testing.TB) *PKI {
	t.Helper()
	past := identity.NewFakeClock(time.Now().Add(-7 * 24 * time.Hour))
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{Clock: past})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{Clock: past})
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{Anchor: anchor, Issuer: issuer}
}

// ID parses a SPIFFE ID or fails t.
func ID(t testing.TB, s string) identity.SpiffeID {
	t.Helper()
	id, err := identity.ParseSpiffeID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Leaf issues a workload certificate for id, valid from now for a day.
func (p *PKI) Leaf(t testing.TB, id string) *tls.Certificate {
	t.Helper()
	return p.LeafAt(t, id, time.Now(), 24*time.Hour)
}

// LeafAt issues a workload certificate for id as if signed at signedAt, valid for lifetime
// (so signedAt two days ago and a one-hour lifetime make an expired certificate).
func (p *PKI) LeafAt(t testing.TB, id string, signedAt time.Time, lifetime time.Duration) *tls.Certificate {
	t.Helper()
	spiffeID := ID(t, id)
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := identity.NewCSR(key, spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	issuer := *p.Issuer
	issuer.Clock = identity.NewFakeClock(signedAt)
	issuer.ClockSkewAllowance = 0
	leaf, err := issuer.Sign(csr, spiffeID, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{leaf.Raw, p.Issuer.Certificate.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
}

// Pool returns the trust anchor as a pool.
func (p *PKI) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Anchor.Certificate)
	return pool
}

// Source returns a static source with a fresh certificate for id.
func (p *PKI) Source(t testing.TB, id string) *Source {
	t.Helper()
	s := &Source{anchors: p.Pool()}
	s.SetCertificate(p.Leaf(t, id))
	return s
}

// WriteFiles writes tls.crt, tls.key and ca.crt for cert into dir, readable by anyone.
func (p *PKI) WriteFiles(t testing.TB, dir string, cert *tls.Certificate) {
	t.Helper()
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	key, err := identity.EncodePrivateKeyPEM(cert.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"tls.crt": identity.EncodeCertificatesPEM(chain...),
		"tls.key": key,
		"ca.crt":  p.Anchor.CertificatePEM(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Source is a certificate source whose certificate tests set.
type Source struct {
	cert    atomic.Pointer[tls.Certificate]
	anchors *x509.CertPool
}

// SetCertificate replaces the certificate (nil: none, not ready).
func (s *Source) SetCertificate(cert *tls.Certificate) { s.cert.Store(cert) }

// Certificate returns the certificate.
func (s *Source) Certificate() *tls.Certificate { return s.cert.Load() }

// TrustAnchors returns the anchors.
func (s *Source) TrustAnchors() *x509.CertPool { return s.anchors }

// Ready reports whether there is a certificate.
func (s *Source) Ready() bool { return s.cert.Load() != nil }
