package tap

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// renewFraction is the part of the tap certificate's life after which it is issued again.
const renewFraction = 0.7

// DefaultCertificateLifetime is the life of the controller's tap client certificate.
const DefaultCertificateLifetime = 24 * time.Hour

// SelfIssued is the controller's own workload certificate, for its mesh identity (its
// ServiceAccount's SPIFFE ID), issued by the controller itself with the mesh's issuer: the
// controller holds the issuer, so it needs no CSR round trip to the identity service. The
// certificate is issued on first use and again once 70 % of its life has passed, each time
// from the issuer files as they are then (so an issuer rotation is followed).
type SelfIssued struct {
	// IssuerDir holds the issuer's tls.crt and tls.key; TrustAnchorsFile the trust anchors
	// (IssuerDir/ca.crt when empty).
	IssuerDir, TrustAnchorsFile string
	// ID is the identity certified: spiffe://TD/ns/CONTROL-PLANE-NS/sa/lightmesh-controller.
	ID identity.SpiffeID
	// Lifetime of the certificate; DefaultCertificateLifetime when zero.
	Lifetime time.Duration
	// Clock tells the time; nil means the system clock.
	Clock identity.Clock

	mu      sync.Mutex
	cert    *tls.Certificate
	anchors []*x509.Certificate
	renewAt time.Time
}

// Certificate returns the current certificate (with its issuer chain) and the trust anchors,
// issuing a new certificate when there is none or it is due for renewal.
func (s *SelfIssued) Certificate() (*tls.Certificate, []*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clock := s.Clock
	if clock == nil {
		clock = identity.SystemClock{}
	}
	now := clock.Now()
	if s.cert != nil && now.Before(s.renewAt) {
		return s.cert, s.anchors, nil
	}
	cert, anchors, err := s.issue(clock)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			return s.cert, s.anchors, nil // keep the valid one; try again next time
		}
		return nil, nil, err
	}
	life := cert.Leaf.NotAfter.Sub(now)
	s.cert, s.anchors, s.renewAt = cert, anchors, now.Add(time.Duration(float64(life)*renewFraction))
	return cert, anchors, nil
}

func (s *SelfIssued) issue(clock identity.Clock) (*tls.Certificate, []*x509.Certificate, error) {
	if s.IssuerDir == "" {
		return nil, nil, errors.New("no issuer: start the stats service with --issuer-dir (mesh install does) to tap proxies")
	}
	anchorsFile := s.TrustAnchorsFile
	if anchorsFile == "" {
		anchorsFile = filepath.Join(s.IssuerDir, "ca.crt")
	}
	anchors, err := identity.ReadTrustAnchorsFile(anchorsFile)
	if err != nil {
		return nil, nil, err
	}
	issuer, err := identity.LoadIssuerFiles(filepath.Join(s.IssuerDir, "tls.crt"), filepath.Join(s.IssuerDir, "tls.key"), anchors, clock)
	if err != nil {
		return nil, nil, err
	}
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := identity.NewCSR(key, s.ID)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, err
	}
	lifetime := s.Lifetime
	if lifetime == 0 {
		lifetime = DefaultCertificateLifetime
	}
	leaf, err := issuer.Sign(csr, s.ID, lifetime)
	if err != nil {
		return nil, nil, fmt.Errorf("issue the controller's tap certificate: %w", err)
	}
	chain := [][]byte{leaf.Raw, issuer.Certificate.Raw}
	for _, c := range issuer.Intermediates {
		chain = append(chain, c.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, anchors, nil
}
