package identity

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// testNow is the fake clock's start; whole seconds, as certificates store times.
var testNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

// testPKI is a trust anchor, an issuer and a verifier that share one fake clock.
type testPKI struct {
	clock    *FakeClock
	anchor   *TrustAnchor
	issuer   *Issuer
	verifier *Verifier
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	clock := NewFakeClock(testNow)
	anchor, err := GenerateTrustAnchor(CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := GenerateIssuer(anchor, CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := NewVerifier([]*x509.Certificate{anchor.Certificate}, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{clock: clock, anchor: anchor, issuer: issuer, verifier: verifier}
}

func mustSpiffeID(t testing.TB, s string) SpiffeID {
	t.Helper()
	id, err := ParseSpiffeID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// mustCSR returns the parsed CSR that NewCSR makes for id and key.
func mustCSR(t testing.TB, key crypto.Signer, id SpiffeID) *x509.CertificateRequest {
	t.Helper()
	der, err := NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// mustTemplateCSR returns a CSR for template signed by key, made by the standard library.
func mustTemplateCSR(t testing.TB, template *x509.CertificateRequest, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, template, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// craftCSR builds a CSR by hand that carries publicKey but is signed (ECDSA with SHA-256) by
// signer; the standard library refuses both a key it does not sign with (P-224) and a
// mismatched key.
func craftCSR(t testing.TB, uris []*url.URL, publicKey crypto.PublicKey, signer crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	donor, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: uris}, mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	var outer struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	if _, err := asn1.Unmarshal(donor, &outer); err != nil {
		t.Fatal(err)
	}
	var tbs struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes asn1.RawValue
	}
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(publicKey)
	if err != nil {
		t.Fatal(err)
	}
	tbs.PublicKey = asn1.RawValue{FullBytes: spki}
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(tbsDER)
	signature, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	outer.TBS = asn1.RawValue{FullBytes: tbsDER}
	outer.Signature = asn1.BitString{Bytes: signature, BitLength: 8 * len(signature)}
	der, err := asn1.Marshal(outer)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// goodLeafTemplate is what Sign puts in a workload certificate for id at now.
func goodLeafTemplate(id SpiffeID, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          mustSerial(),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
}

func mustSerial() *big.Int {
	serial, err := randomSerial()
	if err != nil {
		panic(err)
	}
	return serial
}

// createCertificate signs template for a fresh P-256 key with parent and parentKey, bypassing
// Sign, so tests can build certificates Sign would never issue.
func createCertificate(t testing.TB, template, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := mustKey(t)
	if parent == nil {
		parent, parentKey = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
