package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors of peer certificate verification; each rejected certificate wraps exactly one.
var (
	ErrNoPeerCertificate  = errors.New("no certificate presented")
	ErrNoURISAN           = errors.New("certificate has no URI SAN")
	ErrMultipleURISANs    = errors.New("certificate has more than one URI SAN")
	ErrLeafIsCA           = errors.New("workload certificate is a CA")
	ErrLeafCanSign        = errors.New("workload certificate may sign certificates or CRLs")
	ErrLeafKeyUsage       = errors.New("workload certificate lacks the digitalSignature key usage")
	ErrMissingExtKeyUsage = errors.New("workload certificate lacks the required extended key usage")
	ErrExpired            = errors.New("certificate has expired")
	ErrNotYetValid        = errors.New("certificate is not valid yet")
	ErrUntrusted          = errors.New("certificate does not chain to the trust anchors")
	ErrWrongTrustDomain   = errors.New("certificate is from another trust domain")
	ErrIdentityMismatch   = errors.New("peer is not the expected identity")
)

// Verifier checks workload certificates presented by peers against the trust anchors of
// one trust domain. It is safe for concurrent use.
type Verifier struct {
	roots       *x509.CertPool
	trustDomain string
	clock       Clock
}

// NewVerifier returns a Verifier that trusts anchors, accepts identities of trustDomain
// (DefaultTrustDomain when empty) and tells the time with clock (nil: the system clock).
func NewVerifier(anchors []*x509.Certificate, trustDomain string, clock Clock) (*Verifier, error) {
	if len(anchors) == 0 {
		return nil, errors.New("new verifier: no trust anchors given; pass the mesh's trust anchor bundle")
	}
	if trustDomain == "" {
		trustDomain = DefaultTrustDomain
	}
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	roots := x509.NewCertPool()
	for _, anchor := range anchors {
		roots.AddCert(anchor)
	}
	return &Verifier{roots: roots, trustDomain: trustDomain, clock: clockOrSystem(clock)}, nil
}

// Verify checks chain, the leaf first then the intermediates the peer presented, and returns
// the leaf's identity. usage is x509.ExtKeyUsageServerAuth to verify a server's certificate,
// x509.ExtKeyUsageClientAuth for a client's. The leaf must be an X509-SVID (one URI SAN holding
// a SPIFFE ID, not a CA, digitalSignature without keyCertSign or cRLSign, usage among its
// extended key usages), every certificate must be valid now, the chain must lead to a trust
// anchor and the identity must be in the verifier's trust domain.
func (v *Verifier) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (SpiffeID, error) {
	if usage != x509.ExtKeyUsageServerAuth && usage != x509.ExtKeyUsageClientAuth {
		return SpiffeID{}, fmt.Errorf("verify: usage must be x509.ExtKeyUsageServerAuth or x509.ExtKeyUsageClientAuth, not %d", usage)
	}
	if len(chain) == 0 {
		return SpiffeID{}, fmt.Errorf("%w: the peer must present its workload certificate", ErrNoPeerCertificate)
	}
	leaf := chain[0]
	id, err := SpiffeIDFromCertificate(leaf)
	if err != nil {
		return SpiffeID{}, err
	}
	if err := checkLeafUsage(leaf, usage); err != nil {
		return SpiffeID{}, fmt.Errorf("%s: %w", id, err)
	}
	now := v.clock.Now()
	for _, cert := range chain {
		if err := checkValidAt(cert, now); err != nil {
			return SpiffeID{}, fmt.Errorf("%s: %w; the peer must renew its certificate (can it reach the identity service?), or the clocks disagree", id, err)
		}
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		if invalid, ok := errors.AsType[x509.CertificateInvalidError](err); ok && invalid.Reason == x509.Expired {
			return SpiffeID{}, fmt.Errorf("%s: %w: %w; renew the trust anchor", id, ErrExpired, err)
		}
		return SpiffeID{}, fmt.Errorf("%s: %w: %w; the peer's issuer must be signed by one of this mesh's trust anchors", id, ErrUntrusted, err)
	}
	if id.TrustDomain != v.trustDomain {
		return SpiffeID{}, fmt.Errorf("%w: %s is not in trust domain %q", ErrWrongTrustDomain, id, v.trustDomain)
	}
	return id, nil
}

// VerifyRaw parses rawCerts, as tls.Config.VerifyPeerCertificate receives them, and works as
// Verify.
func (v *Verifier) VerifyRaw(rawCerts [][]byte, usage x509.ExtKeyUsage) (SpiffeID, error) {
	chain := make([]*x509.Certificate, 0, len(rawCerts))
	for i, raw := range rawCerts {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return SpiffeID{}, fmt.Errorf("parse peer certificate %d: %w", i+1, err)
		}
		chain = append(chain, cert)
	}
	return v.Verify(chain, usage)
}

// VerifyIdentity works as Verify and also requires the leaf to be want.
func (v *Verifier) VerifyIdentity(chain []*x509.Certificate, usage x509.ExtKeyUsage, want SpiffeID) error {
	got, err := v.Verify(chain, usage)
	if err != nil {
		return err
	}
	return MatchIdentity(got, want)
}

// MatchIdentity returns nil when got is want, and an error wrapping ErrIdentityMismatch
// otherwise.
func MatchIdentity(got, want SpiffeID) error {
	if got != want {
		return fmt.Errorf("%w: the peer is %s but %s was expected; check which ServiceAccount the destination pods run as", ErrIdentityMismatch, got, want)
	}
	return nil
}

// SpiffeIDFromCertificate returns the SPIFFE ID in cert's one URI SAN.
func SpiffeIDFromCertificate(cert *x509.Certificate) (SpiffeID, error) {
	switch len(cert.URIs) {
	case 0:
		return SpiffeID{}, fmt.Errorf("%w (DNS SANs %q); a workload certificate names its SPIFFE ID in a URI SAN, issue it with lightmesh's identity service", ErrNoURISAN, cert.DNSNames)
	case 1:
	default:
		return SpiffeID{}, fmt.Errorf("%w: it has %d; a workload certificate names exactly one SPIFFE ID", ErrMultipleURISANs, len(cert.URIs))
	}
	id, err := ParseSpiffeID(cert.URIs[0].String())
	if err != nil {
		return SpiffeID{}, fmt.Errorf("certificate URI SAN: %w", err)
	}
	return id, nil
}

func checkLeafUsage(leaf *x509.Certificate, usage x509.ExtKeyUsage) error {
	if leaf.IsCA {
		return fmt.Errorf("%w (basic constraints CA=true); workload certificates must have CA=false", ErrLeafIsCA)
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return fmt.Errorf("%w (key usage keyCertSign or cRLSign); workload certificates may only have digitalSignature", ErrLeafCanSign)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%w; reissue it through lightmesh's identity service", ErrLeafKeyUsage)
	}
	if !slices.Contains(leaf.ExtKeyUsage, usage) {
		return fmt.Errorf("%w: it needs %s; reissue it with both serverAuth and clientAuth", ErrMissingExtKeyUsage, extKeyUsageName(usage))
	}
	return nil
}

// checkValidAt returns an error wrapping ErrNotYetValid or ErrExpired when cert is not valid
// at now.
func checkValidAt(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%w: %s is valid from %s but now is %s",
			ErrNotYetValid, certificateName(cert), cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("%w: %s expired at %s, now is %s",
			ErrExpired, certificateName(cert), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// certificateName names cert in error messages: its URI SAN, else its subject.
func certificateName(cert *x509.Certificate) string {
	if len(cert.URIs) > 0 {
		return "certificate " + cert.URIs[0].String()
	}
	return fmt.Sprintf("certificate %q", cert.Subject.String())
}

func extKeyUsageName(usage x509.ExtKeyUsage) string {
	switch usage {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	}
	return fmt.Sprintf("extended key usage %d", usage)
}
