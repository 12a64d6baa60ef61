package healthcheck

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/identity"
)

const (
	anchorsHint = "bring new trust anchors and an issuer signed by them (mesh install --identity-trust-anchors-file ...), or reinstall lightmesh"
	issuerHint  = "replace the issuer in Secret " + install.IssuerSecretName + " with a certificate signed by the trust anchors (mesh install --identity-issuer-certificate-file ...), or reinstall lightmesh"
)

// anchors reads and parses the trust anchors and requires them to be ECDSA.
func (c *Checker) anchors(ctx context.Context) ([]*x509.Certificate, error) {
	data, err := c.trustAnchorsPEM(ctx)
	if err != nil {
		return nil, err
	}
	anchors, err := identity.ParseTrustAnchors(data)
	if err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", c.opts.ControlPlaneNamespace, install.TrustRootsConfigMapName, err)
	}
	for _, a := range anchors {
		if a.PublicKeyAlgorithm != x509.ECDSA {
			return nil, fmt.Errorf("trust anchor %q has a %s key; lightmesh's anchors are ECDSA", a.Subject.String(), a.PublicKeyAlgorithm)
		}
	}
	return anchors, nil
}

// issuer reads the issuer's certificate chain (the issuer first) from its Secret.
func (c *Checker) issuer(ctx context.Context) ([]*x509.Certificate, error) {
	ns := c.opts.ControlPlaneNamespace
	secret, err := c.client.CoreV1().Secrets(ns).Get(ctx, install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		return nil, notFound(err, "Secret "+ns+"/"+install.IssuerSecretName)
	}
	data := secret.Data[corev1.TLSCertKey]
	if len(data) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no %s", ns, install.IssuerSecretName, corev1.TLSCertKey)
	}
	certs, err := identity.DecodeCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s %s: %w", ns, install.IssuerSecretName, corev1.TLSCertKey, err)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("the issuer certificate %q is not a CA", certs[0].Subject.String())
	}
	return certs, nil
}

func (c *Checker) identity() check.Category {
	return check.Category{ID: Identity, Checks: []check.Check{
		{
			ID:          "trust-anchors-parse",
			Description: "the trust anchors are ECDSA CA certificates",
			Hint:        anchorsHint,
			Run: func(ctx context.Context) error {
				_, err := c.anchors(ctx)
				return err
			},
		},
		{
			ID:          "trust-anchors-valid",
			Description: "the trust anchors are within their validity period",
			Hint:        anchorsHint,
			Run: func(ctx context.Context) error {
				anchors, err := c.anchors(ctx)
				if err != nil {
					return err
				}
				return c.validNow("trust anchor", anchors)
			},
		},
		{
			ID:          "trust-anchors-not-expiring-soon",
			Description: "the trust anchors are not expiring soon",
			Hint:        anchorsHint,
			Run: func(ctx context.Context) error {
				anchors, err := c.anchors(ctx)
				if err != nil {
					return err
				}
				return c.notExpiringSoon("trust anchor", anchors)
			},
		},
		{
			ID:          "issuer-parse",
			Description: "the issuer certificate is a CA certificate",
			Hint:        issuerHint,
			Run: func(ctx context.Context) error {
				_, err := c.issuer(ctx)
				return err
			},
		},
		{
			ID:          "issuer-valid",
			Description: "the issuer certificate is within its validity period",
			Hint:        issuerHint,
			Run: func(ctx context.Context) error {
				chain, err := c.issuer(ctx)
				if err != nil {
					return err
				}
				return c.validNow("issuer certificate", chain[:1])
			},
		},
		{
			ID:          "issuer-not-expiring-soon",
			Description: "the issuer certificate is not expiring soon",
			Hint:        issuerHint,
			Run: func(ctx context.Context) error {
				chain, err := c.issuer(ctx)
				if err != nil {
					return err
				}
				return c.notExpiringSoon("issuer certificate", chain[:1])
			},
		},
		{
			ID:          "issuer-signed-by-anchors",
			Description: "the issuer certificate is signed by the trust anchors",
			Hint:        issuerHint,
			Run: func(ctx context.Context) error {
				anchors, err := c.anchors(ctx)
				if err != nil {
					return err
				}
				chain, err := c.issuer(ctx)
				if err != nil {
					return err
				}
				return c.chains(chain, anchors)
			},
		},
	}}
}

func (c *Checker) validNow(what string, certs []*x509.Certificate) error {
	now := c.now()
	var problems []string
	for _, cert := range certs {
		switch {
		case now.Before(cert.NotBefore):
			problems = append(problems, fmt.Sprintf("%s %q is valid from %s, now is %s", what, cert.Subject.String(), rfc3339(cert.NotBefore), rfc3339(now)))
		case now.After(cert.NotAfter):
			problems = append(problems, fmt.Sprintf("%s %q expired at %s, now is %s", what, cert.Subject.String(), rfc3339(cert.NotAfter), rfc3339(now)))
		}
	}
	return errList(problems)
}

// notExpiringSoon warns about certificates that expire within ExpiryWarning (those already
// expired are the validity check's failures).
func (c *Checker) notExpiringSoon(what string, certs []*x509.Certificate) error {
	now := c.now()
	var problems []string
	for _, cert := range certs {
		if left := cert.NotAfter.Sub(now); left >= 0 && left < ExpiryWarning {
			problems = append(problems, fmt.Sprintf("%s %q expires at %s, in %d days", what, cert.Subject.String(), rfc3339(cert.NotAfter), int(left/(24*time.Hour))))
		}
	}
	return check.Warn(errList(problems))
}

func (c *Checker) chains(chain, anchors []*x509.Certificate) error {
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("the issuer certificate %q does not chain to the trust anchors: %w", chain[0].Subject.String(), err)
	}
	return nil
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
