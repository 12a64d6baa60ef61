package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"
)

func TestSignLeafProperties(t *testing.T) {
	pki := newTestPKI(t)
	pki.clock.Advance(time.Hour) // the issuer is an hour old
	now := pki.clock.Now()
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/microservices/sa/order-service")
	key := mustKey(t)
	leaf, err := pki.issuer.Sign(mustCSR(t, key, id), id, 0)
	if err != nil {
		t.Fatal(err)
	}

	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		t.Errorf("URI SANs = %v, want exactly [%s]", leaf.URIs, id)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("other SANs: DNS %v IP %v email %v, want none", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("basic constraints present %v, CA %v; want present with CA=false", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(leaf.ExtKeyUsage, want) || len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("ExtKeyUsage = %v (unknown %v), want serverAuth, clientAuth", leaf.ExtKeyUsage, leaf.UnknownExtKeyUsage)
	}
	if want := now.Add(-time.Minute); !leaf.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v (one minute before now)", leaf.NotBefore, want)
	}
	if want := now.Add(24 * time.Hour); !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v (24 h after now)", leaf.NotAfter, want)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", leaf.SerialNumber)
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		t.Error("the leaf does not carry the CSR's key")
	}
	if err := leaf.CheckSignatureFrom(pki.issuer.Certificate); err != nil {
		t.Errorf("the leaf is not signed by the issuer: %v", err)
	}
	if len(leaf.Subject.Names) != 0 {
		t.Errorf("Subject = %q, want empty (the identity is the URI SAN)", leaf.Subject)
	}
	got, err := pki.verifier.Verify([]*x509.Certificate{leaf, pki.issuer.Certificate}, x509.ExtKeyUsageServerAuth)
	if err != nil || got != id {
		t.Errorf("Verify = %v, %v; want %v", got, err, id)
	}

	second, err := pki.issuer.Sign(mustCSR(t, key, id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two leaves share a serial number")
	}
}

func TestSignValidityPeriod(t *testing.T) {
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	cases := []struct {
		name          string
		issuerLife    time.Duration
		skew          time.Duration
		issuerAge     time.Duration
		leafLife      time.Duration
		wantNotBefore time.Duration // relative to the time of signing
		wantNotAfter  time.Duration // relative to the time of signing
	}{
		{"defaults", 0, time.Minute, time.Hour, 0, -time.Minute, 24 * time.Hour},
		{"custom lifetime", 0, time.Minute, time.Hour, time.Hour, -time.Minute, time.Hour},
		{"custom skew", 0, 5 * time.Minute, time.Hour, 0, -5 * time.Minute, 24 * time.Hour},
		{"no skew", 0, 0, time.Hour, 0, 0, 24 * time.Hour},
		// The issuer was made 1 h ago and expires in 1 h: the leaf ends with it.
		{"clamped to the issuer's NotAfter", 2 * time.Hour, time.Minute, time.Hour, 0, -time.Minute, time.Hour},
		// The issuer is 10 s old with a 1 min backdate: the leaf does not start before it.
		{"not before the issuer's NotBefore", 0, time.Hour, 10 * time.Second, 0, -70 * time.Second, 24 * time.Hour},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := NewFakeClock(testNow)
			anchor, err := GenerateTrustAnchor(CAOptions{Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			issuer, err := GenerateIssuer(anchor, CAOptions{Lifetime: c.issuerLife, Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			issuer.ClockSkewAllowance = c.skew
			clock.Advance(c.issuerAge)
			now := clock.Now()
			leaf, err := issuer.Sign(mustCSR(t, mustKey(t), id), id, c.leafLife)
			if err != nil {
				t.Fatal(err)
			}
			if want := now.Add(c.wantNotBefore); !leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", leaf.NotBefore, want)
			}
			if want := now.Add(c.wantNotAfter); !leaf.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, want)
			}
			if leaf.NotAfter.After(issuer.Certificate.NotAfter) || leaf.NotBefore.Before(issuer.Certificate.NotBefore) {
				t.Errorf("leaf %v .. %v is not within the issuer's %v .. %v", leaf.NotBefore, leaf.NotAfter, issuer.Certificate.NotBefore, issuer.Certificate.NotAfter)
			}
		})
	}
}

func TestSignRejects(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	other := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/admin")
	key := mustKey(t)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed25519Key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224Key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521Key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uris := func(ids ...SpiffeID) []*url.URL {
		var out []*url.URL
		for _, id := range ids {
			out = append(out, id.URL())
		}
		return out
	}
	// x509 will not sign with P-224, so the CSR is made by hand; it is well signed and only
	// its curve is wrong.
	p224CSR := craftCSR(t, uris(id), p224Key.Public(), p224Key)
	if err := p224CSR.CheckSignature(); err != nil {
		t.Fatalf("the hand-made P-224 CSR is not well signed, so the test would prove nothing: %v", err)
	}

	cases := []struct {
		name  string
		csr   *x509.CertificateRequest
		check error
	}{
		// The CSR carries one key but is signed by another.
		{"bad signature", craftCSR(t, uris(id), mustKey(t).Public(), key), ErrCSRSignature},
		{"two URI SANs", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id, other)}, key), ErrCSRIdentity},
		{"the same URI SAN twice", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id, id)}, key), ErrCSRIdentity},
		{"no URI SAN", mustTemplateCSR(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web"}}, key), ErrCSRIdentity},
		{"identity only in a DNS SAN", mustTemplateCSR(t, &x509.CertificateRequest{DNSNames: []string{"web.default.svc"}}, key), ErrCSRIdentity},
		{"DNS SAN beside the identity", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id), DNSNames: []string{"web.default.svc"}}, key), ErrCSRExtraSAN},
		{"IP SAN beside the identity", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id), IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, key), ErrCSRExtraSAN},
		{"email SAN beside the identity", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id), EmailAddresses: []string{"a@b.c"}}, key), ErrCSRExtraSAN},
		{"another identity", mustCSR(t, key, other), ErrCSRIdentity},
		{"another trust domain", mustCSR(t, key, mustSpiffeID(t, "spiffe://example.org/ns/default/sa/web")), ErrCSRIdentity},
		{"RSA key", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id)}, rsaKey), ErrCSRKey},
		{"Ed25519 key", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id)}, ed25519Key), ErrCSRKey},
		{"P-224 key", p224CSR, ErrCSRKey},
		{"P-521 key", mustTemplateCSR(t, &x509.CertificateRequest{URIs: uris(id)}, p521Key), ErrCSRKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			leaf, err := pki.issuer.Sign(c.csr, id, 0)
			if err == nil {
				t.Fatalf("Sign accepted it and issued %v", leaf.URIs)
			}
			if !errors.Is(err, ErrInvalidCSR) || !errors.Is(err, c.check) {
				t.Errorf("err = %v, want it to wrap ErrInvalidCSR and %v", err, c.check)
			}
			for _, sentinel := range []error{ErrCSRKey, ErrCSRSignature, ErrCSRIdentity, ErrCSRExtraSAN} {
				if sentinel != c.check && errors.Is(err, sentinel) { //nolint:errorlint // compares two sentinels, not a returned error
					t.Errorf("err = %v also wraps %v", err, sentinel)
				}
			}
		})
	}

	// A P-384 key is fine.
	p384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.issuer.Sign(mustCSR(t, p384Key, id), id, 0); err != nil {
		t.Errorf("Sign refused a P-384 CSR: %v", err)
	}
}

func TestSignRejectsOtherMistakes(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	csr := mustCSR(t, mustKey(t), id)

	if _, err := pki.issuer.Sign(nil, id, 0); !errors.Is(err, ErrInvalidCSR) {
		t.Errorf("nil CSR: err = %v, want ErrInvalidCSR", err)
	}
	if _, err := pki.issuer.Sign(csr, SpiffeID{TrustDomain: "cluster.local", Namespace: "default"}, 0); !errors.Is(err, ErrInvalidSpiffeID) || errors.Is(err, ErrInvalidCSR) {
		t.Errorf("invalid identity: err = %v, want ErrInvalidSpiffeID and not ErrInvalidCSR", err)
	}
	if _, err := pki.issuer.Sign(csr, id, -time.Hour); err == nil {
		t.Error("negative lifetime accepted")
	}
	pki.clock.Advance(366 * 24 * time.Hour)
	if _, err := pki.issuer.Sign(csr, id, 0); !errors.Is(err, ErrIssuerExpired) || !errors.Is(err, ErrExpired) || errors.Is(err, ErrInvalidCSR) {
		t.Errorf("expired issuer: err = %v, want ErrIssuerExpired", err)
	}
	pki.clock.Set(testNow.Add(-time.Hour))
	if _, err := pki.issuer.Sign(csr, id, 0); !errors.Is(err, ErrIssuerExpired) || !errors.Is(err, ErrNotYetValid) {
		t.Errorf("issuer not valid yet: err = %v, want ErrIssuerExpired", err)
	}
}

// TestSignIgnoresRequestedExtensions shows that nothing but the key comes from the CSR.
func TestSignIgnoresRequestedExtensions(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	caTrue, err := asn1.Marshal(struct{ IsCA bool }{true})
	if err != nil {
		t.Fatal(err)
	}
	csr := mustTemplateCSR(t, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "root", Organization: []string{"evil"}},
		URIs:    []*url.URL{id.URL()},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue}, // basic constraints CA=true
		},
	}, mustKey(t))
	leaf, err := pki.issuer.Sign(csr, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.IsCA || leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 0 {
		t.Errorf("the CSR's wishes reached the leaf: CA %v subject %q", leaf.IsCA, leaf.Subject)
	}
}

func TestNewCSR(t *testing.T) {
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	key := mustKey(t)
	csr := mustCSR(t, key, id)
	if err := csr.CheckSignature(); err != nil {
		t.Error(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() || len(csr.DNSNames) != 0 {
		t.Errorf("CSR names URIs %v DNS %v, want exactly %s", csr.URIs, csr.DNSNames, id)
	}
	if !publicKeysEqual(csr.PublicKey, key.Public()) {
		t.Error("CSR carries another key")
	}
	if _, err := NewCSR(key, SpiffeID{}); !errors.Is(err, ErrInvalidSpiffeID) {
		t.Errorf("NewCSR with the zero identity: err = %v, want ErrInvalidSpiffeID", err)
	}
	if k, err := GenerateKey(); err != nil || k.Curve != elliptic.P256() {
		t.Errorf("GenerateKey = %v, %v; want a P-256 key", k, err)
	}
}

// BenchmarkSignLeaf measures what the identity service does per request: parse the CSR, check
// it, sign a P-256 leaf. The project's target is 2,000 certificates per second on one core.
func BenchmarkSignLeaf(b *testing.B) {
	anchor, err := GenerateTrustAnchor(CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	issuer, err := GenerateIssuer(anchor, CAOptions{})
	if err != nil {
		b.Fatal(err)
	}
	id := mustSpiffeID(b, "spiffe://cluster.local/ns/microservices/sa/order-service")
	csrDER, err := NewCSR(mustKey(b), id)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := issuer.Sign(csr, id, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}
