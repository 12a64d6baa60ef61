package install

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strconv"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// WebhookTLS is the injector's serving certificate, as the lightmesh-webhook-tls Secret holds
// it.
type WebhookTLS struct {
	// CertificatePEM is the serving certificate, then the issuer's certificate and
	// intermediates: the chain up to (not including) the trust anchors.
	CertificatePEM []byte
	// KeyPEM is the serving certificate's ECDSA P-256 key (PKCS#8).
	KeyPEM []byte
	// CABundlePEM verifies CertificatePEM: the trust anchors. It is the webhook
	// configuration's caBundle.
	CABundlePEM []byte
}

// WebhookServiceName is the DNS name the API server calls the injector by.
func WebhookServiceName(namespace string) string { return "webhook." + namespace + ".svc" }

// WebhookCertificate issues the injector's serving certificate for webhook.<namespace>.svc
// (and webhook.<namespace>.svc.<clusterDomain>), signed by the identity issuer of id, so the
// webhook's caBundle is the trust anchors.
//
// Nothing in it is random: the key is derived (HKDF-SHA256) from the issuer key and the
// namespace, the serial number is a hash of the issuer certificate and the namespace, the
// validity is the issuer's, and the signature is deterministic (RFC 6979 for ECDSA issuers).
// So the same certificate files always render the same manifests, and the certificate lives
// exactly as long as the issuer: rotating the issuer means rendering (and applying) again.
func WebhookCertificate(id Identity, namespace, clusterDomain string) (WebhookTLS, error) {
	chain, err := identity.DecodeCertificatesPEM(id.IssuerCertificatePEM)
	if err != nil {
		return WebhookTLS{}, fmt.Errorf("webhook certificate: issuer certificate: %w", err)
	}
	issuerKey, err := identity.DecodePrivateKeyPEM(id.IssuerKeyPEM)
	if err != nil {
		return WebhookTLS{}, fmt.Errorf("webhook certificate: issuer key: %w", err)
	}
	issuer := chain[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(issuerKey)
	if err != nil {
		return WebhookTLS{}, fmt.Errorf("webhook certificate: issuer key: %w", err)
	}
	key, err := deriveKey(keyDER, issuer.Raw, namespace)
	if err != nil {
		return WebhookTLS{}, err
	}
	name := WebhookServiceName(namespace)
	serialSum := sha256.Sum256(append([]byte("lightmesh webhook serial\x00"+namespace+"\x00"), issuer.Raw...))
	serialBytes := serialSum[:16]
	serialBytes[0] &= 0x7f
	serial := new(big.Int).SetBytes(serialBytes)
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name, name + "." + clusterDomain},
		NotBefore:             issuer.NotBefore,
		NotAfter:              issuer.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	// A nil random source makes ECDSA signatures deterministic (RFC 6979); RSA PKCS #1 v1.5
	// and Ed25519 signatures are deterministic anyway.
	der, err := x509.CreateCertificate(nil, template, issuer, key.Public(), issuerKey)
	if err != nil {
		return WebhookTLS{}, fmt.Errorf("webhook certificate: sign with the issuer: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return WebhookTLS{}, fmt.Errorf("webhook certificate: %w", err)
	}
	keyPEM, err := identity.EncodePrivateKeyPEM(key)
	if err != nil {
		return WebhookTLS{}, fmt.Errorf("webhook certificate: %w", err)
	}
	return WebhookTLS{
		CertificatePEM: identity.EncodeCertificatesPEM(append([]*x509.Certificate{leaf}, chain...)...),
		KeyPEM:         keyPEM,
		CABundlePEM:    id.TrustAnchorsPEM,
	}, nil
}

// deriveKey derives an ECDSA P-256 key from the issuer's key: the webhook key reveals
// nothing of it, and the same issuer and namespace always give the same key.
func deriveKey(secret, salt []byte, namespace string) (*ecdsa.PrivateKey, error) {
	// A derived scalar is out of range with probability about 2^-32; try the next counter.
	for counter := range 16 {
		raw, err := hkdf.Key(sha256.New, secret, salt, "lightmesh webhook serving key\x00"+namespace+"\x00"+strconv.Itoa(counter), 32)
		if err != nil {
			return nil, fmt.Errorf("webhook certificate: derive the key: %w", err)
		}
		if key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("webhook certificate: could not derive a key from the issuer key; generate a new issuer")
}
