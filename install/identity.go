package install

import (
	"errors"
	"fmt"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// Identity is the certificate material an installation carries: the trust anchors every
// proxy trusts and the issuer the controller signs workload certificates with.
type Identity struct {
	// TrustAnchorsPEM is the anchors' PEM bundle (more than one during a rotation).
	TrustAnchorsPEM []byte
	// IssuerCertificatePEM is the issuer certificate (then any intermediates), IssuerKeyPEM
	// its private key (PKCS#8).
	IssuerCertificatePEM []byte
	IssuerKeyPEM         []byte
}

// GenerateIdentity makes a new trust anchor and issuer for trustDomain with the identity
// package's defaults (anchor valid 10 years, issuer 1 year). The anchor's key is not kept:
// rotate the issuer by making a new installation's material, or bring your own with
// LoadIdentity.
func GenerateIdentity(trustDomain string, clock identity.Clock) (Identity, error) {
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{CommonName: "root.lightmesh." + trustDomain, Clock: clock})
	if err != nil {
		return Identity{}, err
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{CommonName: "identity.lightmesh." + trustDomain, Clock: clock})
	if err != nil {
		return Identity{}, err
	}
	keyPEM, err := issuer.KeyPEM()
	if err != nil {
		return Identity{}, err
	}
	return Identity{
		TrustAnchorsPEM:      anchor.CertificatePEM(),
		IssuerCertificatePEM: issuer.CertificatePEM(),
		IssuerKeyPEM:         keyPEM,
	}, nil
}

// LoadIdentity reads the trust anchors, issuer certificate and issuer key from files and
// checks them (the issuer is a CA, the key is its key, it chains to the anchors and is valid
// now). The result is the files' certificates and key re-encoded, so the same files always
// render the same manifests.
func LoadIdentity(anchorsFile, issuerCertificateFile, issuerKeyFile string, clock identity.Clock) (Identity, error) {
	if anchorsFile == "" || issuerCertificateFile == "" || issuerKeyFile == "" {
		return Identity{}, errors.New("give all three of the trust anchors, the issuer certificate and the issuer key, or none to generate them")
	}
	anchors, err := identity.ReadTrustAnchorsFile(anchorsFile)
	if err != nil {
		return Identity{}, err
	}
	issuer, err := identity.LoadIssuerFiles(issuerCertificateFile, issuerKeyFile, anchors, clock)
	if err != nil {
		return Identity{}, err
	}
	keyPEM, err := issuer.KeyPEM()
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", issuerKeyFile, err)
	}
	return Identity{
		TrustAnchorsPEM:      identity.EncodeCertificatesPEM(anchors...),
		IssuerCertificatePEM: issuer.CertificatePEM(),
		IssuerKeyPEM:         keyPEM,
	}, nil
}
