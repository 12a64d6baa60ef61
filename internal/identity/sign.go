package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"
)

var (
	// ErrInvalidCSR is wrapped by every error about a CSR the issuer refuses; the identity
	// service answers those with InvalidArgument. One of the ErrCSR... errors says which check
	// failed.
	ErrInvalidCSR = errors.New("invalid certificate signing request")
	// ErrCSRKey means the CSR's public key is not ECDSA P-256 or P-384.
	ErrCSRKey = errors.New("unsupported key")
	// ErrCSRSignature means the CSR is not signed by the key it carries.
	ErrCSRSignature = errors.New("bad signature")
	// ErrCSRIdentity means the CSR's URI SANs are not exactly the identity being issued.
	ErrCSRIdentity = errors.New("wrong identity")
	// ErrCSRExtraSAN means the CSR asks for DNS, IP or email SANs.
	ErrCSRExtraSAN = errors.New("unexpected subject alternative name")
	// ErrIssuerExpired means the issuer certificate is outside its validity period.
	ErrIssuerExpired = errors.New("issuer certificate is not valid now")
)

// Sign issues a workload certificate for id to the key of csr, valid for lifetime
// (DefaultLeafLifetime when zero) but never beyond the issuer's own NotAfter, with NotBefore
// set ClockSkewAllowance in the past. The CSR must carry an ECDSA P-256 or P-384 key, be
// signed by it, and name id as its one URI SAN with no other SANs; the errors wrap
// ErrInvalidCSR and one of ErrCSRKey, ErrCSRSignature, ErrCSRIdentity, ErrCSRExtraSAN.
// Nothing else of the CSR (subject, requested extensions) reaches the certificate.
func (iss *Issuer) Sign(csr *x509.CertificateRequest, id SpiffeID, lifetime time.Duration) (*x509.Certificate, error) {
	if csr == nil {
		return nil, fmt.Errorf("%w: no CSR given", ErrInvalidCSR)
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if lifetime == 0 {
		lifetime = DefaultLeafLifetime
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("sign: lifetime %s is negative; give a positive duration", lifetime)
	}
	if err := checkCSRKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w: %w; sign the CSR with the private key whose public key it carries", ErrInvalidCSR, ErrCSRSignature, err)
	}
	if err := checkCSRNames(csr, id); err != nil {
		return nil, err
	}

	now := clockOrSystem(iss.Clock).Now()
	if err := checkValidAt(iss.Certificate, now); err != nil {
		return nil, fmt.Errorf("%w: %w; rotate the issuer certificate, or check the controller's clock", ErrIssuerExpired, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-iss.ClockSkewAllowance)
	if notBefore.Before(iss.Certificate.NotBefore) {
		notBefore = iss.Certificate.NotBefore
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              earliest(now.Add(lifetime), iss.Certificate.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, iss.Certificate, csr.PublicKey, iss.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate for %s: %w", id, err)
	}
	return cert, nil
}

// NewCSR returns the DER of a certificate signing request for id, signed by key, as the
// issuer expects it: id as its one URI SAN and nothing else.
func NewCSR(key crypto.Signer, id SpiffeID) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("new CSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %s: %w", id, err)
	}
	return der, nil
}

func checkCSRKey(publicKey any) error {
	switch key := publicKey.(type) {
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		}
		return fmt.Errorf("%w: %w: the ECDSA key is on curve %s; use P-256 (identity.GenerateKey) or P-384", ErrInvalidCSR, ErrCSRKey, key.Curve.Params().Name)
	case *rsa.PublicKey:
		return fmt.Errorf("%w: %w: the key is RSA; use ECDSA P-256 (identity.GenerateKey) or P-384", ErrInvalidCSR, ErrCSRKey)
	case ed25519.PublicKey:
		return fmt.Errorf("%w: %w: the key is Ed25519; use ECDSA P-256 (identity.GenerateKey) or P-384", ErrInvalidCSR, ErrCSRKey)
	default:
		return fmt.Errorf("%w: %w: the key is %T; use ECDSA P-256 (identity.GenerateKey) or P-384", ErrInvalidCSR, ErrCSRKey, publicKey)
	}
}

func checkCSRNames(csr *x509.CertificateRequest, id SpiffeID) error {
	if len(csr.URIs) != 1 {
		return fmt.Errorf("%w: %w: the CSR has %d URI SANs; it must have exactly one, %s", ErrInvalidCSR, ErrCSRIdentity, len(csr.URIs), id)
	}
	if got := csr.URIs[0].String(); got != id.String() {
		return fmt.Errorf("%w: %w: the CSR asks for %q but the workload is %s; ask for the identity of the pod's ServiceAccount", ErrInvalidCSR, ErrCSRIdentity, got, id)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return fmt.Errorf("%w: %w: the CSR has DNS %q, IP %v, email %q SANs; leave them out, the URI SAN %s is the only name", ErrInvalidCSR, ErrCSRExtraSAN, csr.DNSNames, csr.IPAddresses, csr.EmailAddresses, id)
	}
	return nil
}
