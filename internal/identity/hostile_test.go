package identity

// Hostile certificates (issue 13): peer certificates that break the SPIFFE rules in ways
// the table of TestVerifyRejects does not (path tricks in the URI SAN, a CA or a leaf used
// as a leaf's signer, garbage DER, oversized chains) and CSRs with the same tricks. Each is
// refused with an error that says why, in bounded time.

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestVerifyRejectsHostileCertificates(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	now := pki.clock.Now()
	withURI := func(u *url.URL) []*x509.Certificate {
		template := goodLeafTemplate(id, now)
		template.URIs = []*url.URL{u}
		cert, _ := createCertificate(t, template, pki.issuer.Certificate, pki.issuer.Key)
		return []*x509.Certificate{cert, pki.issuer.Certificate}
	}
	spiffe := func(host, path string) *url.URL { return &url.URL{Scheme: "spiffe", Host: host, Path: path} }
	// A workload leaf, issued properly, then used to sign another "leaf".
	honest, honestKey := createCertificate(t, goodLeafTemplate(id, now), pki.issuer.Certificate, pki.issuer.Key)
	signedByLeaf, _ := createCertificate(t, goodLeafTemplate(mustSpiffeID(t, "spiffe://cluster.local/ns/kube-system/sa/admin"), now), honest, honestKey)
	// A leaf that is CA:true and carries a valid identity.
	caTemplate := goodLeafTemplate(id, now)
	caTemplate.IsCA = true
	caLeaf, _ := createCertificate(t, caTemplate, pki.issuer.Certificate, pki.issuer.Key)

	cases := []struct {
		name  string
		chain []*x509.Certificate
		want  error // one of the sentinels
	}{
		{"dot-dot in the path", withURI(spiffe("cluster.local", "/ns/../sa/web")), ErrInvalidSpiffeID},
		{"dot-dot escaping the namespace", withURI(spiffe("cluster.local", "/ns/default/sa/../../ns/kube-system/sa/admin")), ErrInvalidSpiffeID},
		{"dot segment", withURI(spiffe("cluster.local", "/ns/./sa/web")), ErrInvalidSpiffeID},
		{"encoded slash", withURI(&url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/a/b/sa/web", RawPath: "/ns/a%2Fb/sa/web"}), ErrInvalidSpiffeID},
		{"space in the namespace", withURI(spiffe("cluster.local", "/ns/de fault/sa/web")), ErrInvalidSpiffeID},
		{"upper-case trust domain", withURI(spiffe("CLUSTER.LOCAL", "/ns/default/sa/web")), ErrInvalidSpiffeID},
		{"trust domain with a port", withURI(spiffe("cluster.local:443", "/ns/default/sa/web")), ErrInvalidSpiffeID},
		{"user info", withURI(&url.URL{Scheme: "spiffe", User: url.User("admin"), Host: "cluster.local", Path: "/ns/default/sa/web"}), ErrInvalidSpiffeID},
		{"query", withURI(&url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/web", RawQuery: "sa=admin"}), ErrInvalidSpiffeID},
		{"fragment", withURI(&url.URL{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/default/sa/web", Fragment: "admin"}), ErrInvalidSpiffeID},
		{"trailing slash", withURI(spiffe("cluster.local", "/ns/default/sa/web/")), ErrInvalidSpiffeID},
		{"look-alike trust domain", withURI(spiffe("cluster.local.evil.example", "/ns/default/sa/web")), ErrWrongTrustDomain},
		{"CA:true leaf with a valid identity", []*x509.Certificate{caLeaf, pki.issuer.Certificate}, ErrLeafIsCA},
		{"the issuer presented as a leaf", []*x509.Certificate{pki.issuer.Certificate}, nil},
		{"the trust anchor presented as a leaf", []*x509.Certificate{pki.anchor.Certificate}, nil},
		{"leaf signed by a workload leaf", []*x509.Certificate{signedByLeaf, honest, pki.issuer.Certificate}, ErrUntrusted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := pki.verifier.Verify(c.chain, x509.ExtKeyUsageServerAuth)
			if err == nil {
				t.Fatalf("Verify accepted it as %v", got)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if err.Error() == "" {
				t.Error("the error says nothing")
			}
		})
	}
	// The honest leaf passes: the cases fail for their trick, not for the set-up.
	if _, err := pki.verifier.Verify([]*x509.Certificate{honest, pki.issuer.Certificate}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatalf("the control leaf was refused: %v", err)
	}
}

// Raw peer certificates as a TLS stack hands them over: garbage and huge chains are
// refused quickly, never panic.
func TestVerifyRawGarbage(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, _ := createCertificate(t, goodLeafTemplate(id, pki.clock.Now()), pki.issuer.Certificate, pki.issuer.Key)
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	manyIntermediates := [][]byte{leaf.Raw}
	for range 2000 {
		manyIntermediates = append(manyIntermediates, pki.issuer.Certificate.Raw)
	}
	cases := map[string][][]byte{
		"nothing":              nil,
		"empty certificate":    {{}},
		"random bytes":         {random},
		"truncated leaf":       {leaf.Raw[:len(leaf.Raw)/2]},
		"leaf with trailing":   {append(append([]byte{}, leaf.Raw...), 0, 0)},
		"PEM instead of DER":   {[]byte("-----BEGIN CERTIFICATE-----\n" + strings.Repeat("QUFB", 100) + "\n-----END CERTIFICATE-----\n")},
		"garbage intermediate": {leaf.Raw, random},
		"huge length prefix":   {{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}},
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if got, err := pki.verifier.VerifyRaw(raw, x509.ExtKeyUsageServerAuth); err == nil {
				t.Fatalf("VerifyRaw accepted it as %v", got)
			}
		})
	}
	// 2,000 copies of the issuer after the leaf: accepted (the leaf is good) or refused, but fast.
	start := time.Now()
	_, _ = pki.verifier.VerifyRaw(manyIntermediates, x509.ExtKeyUsageServerAuth)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a chain of 2,000 intermediates took %v to verify", d)
	}
}

// CSRs with path tricks in their URI SAN never get a certificate, even for the identity
// they pretend to be; the issuer signs only the identity it was asked for, validated.
func TestSignRejectsHostileCSRs(t *testing.T) {
	pki := newTestPKI(t)
	key := mustKey(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	for _, raw := range []string{
		"spiffe://cluster.local/ns/default/sa/web/../../../ns/kube-system/sa/admin",
		"spiffe://cluster.local/ns/../sa/web",
		"spiffe://cluster.local/ns/default/sa/web?x=1",
		"spiffe://CLUSTER.LOCAL/ns/default/sa/web",
		"spiffe://cluster.local/ns/default/sa/web#frag",
		"spiffe://cluster.local/ns/default/sa/we%62",
	} {
		t.Run(raw, func(t *testing.T) {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			csr := mustTemplateCSR(t, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
			if cert, err := pki.issuer.Sign(csr, id, 0); err == nil {
				t.Fatalf("signed a certificate with URIs %v", cert.URIs)
			} else if !errors.Is(err, ErrCSRIdentity) {
				t.Errorf("err = %v, want %v", err, ErrCSRIdentity)
			}
		})
	}
	// The identity to sign is validated too: a caller that built it by hand is refused.
	for _, bad := range []SpiffeID{
		{TrustDomain: "cluster.local", Namespace: "..", ServiceAccount: "web"},
		{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "web/../admin"},
		{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: ""},
	} {
		csr := mustCSR(t, key, id)
		if cert, err := pki.issuer.Sign(csr, bad, 0); err == nil {
			t.Errorf("signed %+v: %v", bad, cert.URIs)
		}
	}
}
