package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// Defaults of the certificates this package makes; the package documentation explains them.
const (
	DefaultTrustAnchorLifetime   = 10 * 365 * 24 * time.Hour
	DefaultIssuerLifetime        = 365 * 24 * time.Hour
	DefaultLeafLifetime          = 24 * time.Hour
	DefaultClockSkewAllowance    = time.Minute
	DefaultTrustAnchorCommonName = "root.lightmesh." + DefaultTrustDomain
	DefaultIssuerCommonName      = "identity.lightmesh." + DefaultTrustDomain
)

var (
	// ErrIssuerNotCA means a certificate given as the issuer cannot sign certificates.
	ErrIssuerNotCA = errors.New("issuer certificate is not a CA")
	// ErrKeyMismatch means a private key is not the one of the certificate it came with.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	// ErrIssuerNotTrusted means the issuer does not chain to the trust anchors.
	ErrIssuerNotTrusted = errors.New("issuer certificate does not chain to the trust anchors")
	// ErrNotCA means a certificate given as a trust anchor is not a CA.
	ErrNotCA = errors.New("certificate is not a CA")
)

// CAOptions are the choices of GenerateTrustAnchor and GenerateIssuer. Zero fields take the
// defaults each function names.
type CAOptions struct {
	// CommonName is the subject common name of the certificate.
	CommonName string
	// Lifetime is how long the certificate is valid from now.
	Lifetime time.Duration
	// Clock tells now; nil means the system clock.
	Clock Clock
}

// TrustAnchor is a root CA with its private key, as `mesh install` generates it.
type TrustAnchor struct {
	Certificate *x509.Certificate
	Key         crypto.Signer
}

// Issuer is the intermediate CA that signs workload certificates. Build it with
// GenerateIssuer or LoadIssuer; you may then change Clock and ClockSkewAllowance.
type Issuer struct {
	// Certificate is the issuer's CA certificate.
	Certificate *x509.Certificate
	// Key is Certificate's private key.
	Key crypto.Signer
	// Intermediates are the certificates between Certificate and the trust anchor, nearest
	// first; usually none.
	Intermediates []*x509.Certificate
	// Clock tells now when signing; nil means the system clock.
	Clock Clock
	// ClockSkewAllowance is how far in the past a workload certificate's NotBefore is set.
	ClockSkewAllowance time.Duration
}

// GenerateTrustAnchor makes a self-signed ECDSA P-256 root CA. Defaults: CommonName
// DefaultTrustAnchorCommonName, Lifetime DefaultTrustAnchorLifetime. Its NotBefore is
// DefaultClockSkewAllowance in the past.
func GenerateTrustAnchor(opts CAOptions) (*TrustAnchor, error) {
	commonName := opts.CommonName
	if commonName == "" {
		commonName = DefaultTrustAnchorCommonName
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = DefaultTrustAnchorLifetime
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("trust anchor lifetime %s is negative; give a positive duration", lifetime)
	}
	now := clockOrSystem(opts.Clock).Now()
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-DefaultClockSkewAllowance),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create trust anchor certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse trust anchor certificate: %w", err)
	}
	return &TrustAnchor{Certificate: cert, Key: key}, nil
}

// GenerateIssuer makes an ECDSA P-256 intermediate CA signed by anchor. Defaults: CommonName
// DefaultIssuerCommonName, Lifetime DefaultIssuerLifetime, cut short to end with the anchor.
// Its NotBefore is DefaultClockSkewAllowance in the past. The returned Issuer signs with
// opts.Clock and DefaultClockSkewAllowance.
func GenerateIssuer(anchor *TrustAnchor, opts CAOptions) (*Issuer, error) {
	if anchor == nil || anchor.Certificate == nil || anchor.Key == nil {
		return nil, errors.New("generate issuer: the trust anchor needs its certificate and key")
	}
	commonName := opts.CommonName
	if commonName == "" {
		commonName = DefaultIssuerCommonName
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = DefaultIssuerLifetime
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("issuer lifetime %s is negative; give a positive duration", lifetime)
	}
	clock := clockOrSystem(opts.Clock)
	now := clock.Now()
	if !now.Before(anchor.Certificate.NotAfter) {
		return nil, fmt.Errorf("generate issuer: the trust anchor expired at %s; generate a new trust anchor", anchor.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-DefaultClockSkewAllowance),
		NotAfter:              earliest(now.Add(lifetime), anchor.Certificate.NotAfter),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, anchor.Certificate, key.Public(), anchor.Key)
	if err != nil {
		return nil, fmt.Errorf("create issuer certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issuer certificate: %w", err)
	}
	return &Issuer{Certificate: cert, Key: key, Clock: clock, ClockSkewAllowance: DefaultClockSkewAllowance}, nil
}

// ParseTrustAnchors parses a PEM bundle of trust anchors (more than one during a rotation).
// Each must be a CA certificate.
func ParseTrustAnchors(bundlePEM []byte) ([]*x509.Certificate, error) {
	certs, err := DecodeCertificatesPEM(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	for i, cert := range certs {
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return nil, fmt.Errorf("trust anchor %d (%q): %w; the bundle must hold only root CA certificates", i+1, cert.Subject.String(), ErrNotCA)
		}
	}
	return certs, nil
}

// ReadTrustAnchorsFile reads and parses the PEM bundle of trust anchors in file.
func ReadTrustAnchorsFile(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read trust anchors: %w", err)
	}
	anchors, err := ParseTrustAnchors(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return anchors, nil
}

// LoadIssuer builds an Issuer from PEM: certPEM holds the issuer certificate, optionally
// followed by the intermediates up to (not including) the trust anchor, and keyPEM its private
// key. It checks that the certificate is a CA allowed to sign certificates, that the key is
// its key and strong enough, and that the chain leads to one of anchors and is valid now.
// The returned Issuer signs with clock (nil: the system clock) and DefaultClockSkewAllowance.
func LoadIssuer(certPEM, keyPEM []byte, anchors []*x509.Certificate, clock Clock) (*Issuer, error) {
	clock = clockOrSystem(clock)
	if len(anchors) == 0 {
		return nil, errors.New("load issuer: no trust anchors given; pass the trust anchor bundle that signed the issuer")
	}
	certs, err := DecodeCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("issuer certificate: %w", err)
	}
	key, err := DecodePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%w: %q has CA=false; give an intermediate CA certificate (basic constraints CA:TRUE, key usage keyCertSign), for example made with `step certificate create --profile intermediate-ca`", ErrIssuerNotCA, cert.Subject.String())
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %q lacks the keyCertSign key usage; reissue it with key usage keyCertSign (and cRLSign)", ErrIssuerNotCA, cert.Subject.String())
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%w: the issuer key is not the key of %q; give the key that was generated with that certificate", ErrKeyMismatch, cert.Subject.String())
	}
	now := clock.Now()
	if err := checkValidAt(cert, now); err != nil {
		return nil, fmt.Errorf("issuer certificate %q: %w; create a new issuer certificate signed by the trust anchor", cert.Subject.String(), err)
	}
	if err := verifyIssuerChain(cert, certs[1:], anchors, now); err != nil {
		return nil, err
	}
	return &Issuer{
		Certificate:        cert,
		Key:                key,
		Intermediates:      certs[1:],
		Clock:              clock,
		ClockSkewAllowance: DefaultClockSkewAllowance,
	}, nil
}

// LoadIssuerFiles reads the issuer certificate and key from certFile and keyFile, then works
// as LoadIssuer.
func LoadIssuerFiles(certFile, keyFile string, anchors []*x509.Certificate, clock Clock) (*Issuer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read issuer certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read issuer key: %w", err)
	}
	issuer, err := LoadIssuer(certPEM, keyPEM, anchors, clock)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	return issuer, nil
}

func verifyIssuerChain(cert *x509.Certificate, intermediates, anchors []*x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	for _, anchor := range anchors {
		roots.AddCert(anchor)
	}
	intermediatePool := x509.NewCertPool()
	for _, intermediate := range intermediates {
		intermediatePool.AddCert(intermediate)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediatePool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %w; give the trust anchor that signed the issuer, and any intermediates after the issuer in its certificate file", ErrIssuerNotTrusted, err)
	}
	return nil
}

// CertificatePEM returns the trust anchor's certificate in PEM.
func (a *TrustAnchor) CertificatePEM() []byte {
	return EncodeCertificatesPEM(a.Certificate)
}

// KeyPEM returns the trust anchor's private key in PKCS#8 PEM.
func (a *TrustAnchor) KeyPEM() ([]byte, error) {
	return EncodePrivateKeyPEM(a.Key)
}

// CertificatePEM returns the issuer's certificate followed by its intermediates, in PEM.
func (iss *Issuer) CertificatePEM() []byte {
	return EncodeCertificatesPEM(append([]*x509.Certificate{iss.Certificate}, iss.Intermediates...)...)
}

// KeyPEM returns the issuer's private key in PKCS#8 PEM.
func (iss *Issuer) KeyPEM() ([]byte, error) {
	return EncodePrivateKeyPEM(iss.Key)
}

// GenerateKey makes an ECDSA P-256 private key, the key type of every lightmesh certificate.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return key, nil
}

// randomSerial returns a positive random 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		serial, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if serial.Sign() > 0 {
			return serial, nil
		}
	}
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	comparable, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && comparable.Equal(b)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
