package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGenerateTrustAnchorDefaults(t *testing.T) {
	clock := NewFakeClock(testNow)
	anchor, err := GenerateTrustAnchor(CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	cert := anchor.Certificate
	checkCA(t, cert, DefaultTrustAnchorCommonName, testNow.Add(-time.Minute), testNow.Add(10*365*24*time.Hour))
	if cert.MaxPathLen != 1 {
		t.Errorf("MaxPathLen = %d, want 1", cert.MaxPathLen)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("trust anchor is not self-signed: %v", err)
	}
}

func TestGenerateTrustAnchorOptions(t *testing.T) {
	clock := NewFakeClock(testNow)
	anchor, err := GenerateTrustAnchor(CAOptions{CommonName: "root.example.org", Lifetime: 48 * time.Hour, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	checkCA(t, anchor.Certificate, "root.example.org", testNow.Add(-time.Minute), testNow.Add(48*time.Hour))
	if _, err := GenerateTrustAnchor(CAOptions{Lifetime: -time.Hour}); err == nil {
		t.Error("GenerateTrustAnchor accepted a negative lifetime")
	}
}

func TestGenerateIssuer(t *testing.T) {
	pki := newTestPKI(t)
	cert := pki.issuer.Certificate
	checkCA(t, cert, DefaultIssuerCommonName, testNow.Add(-time.Minute), testNow.Add(365*24*time.Hour))
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d (zero %v), want 0", cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if err := cert.CheckSignatureFrom(pki.anchor.Certificate); err != nil {
		t.Errorf("issuer is not signed by the trust anchor: %v", err)
	}
	if !bytes.Equal(cert.AuthorityKeyId, pki.anchor.Certificate.SubjectKeyId) {
		t.Error("issuer's authority key ID is not the anchor's subject key ID")
	}
	if pki.issuer.Clock != Clock(pki.clock) || pki.issuer.ClockSkewAllowance != time.Minute {
		t.Errorf("issuer signs with clock %v and skew %v, want the fake clock and 1m", pki.issuer.Clock, pki.issuer.ClockSkewAllowance)
	}
}

func TestGenerateIssuerEndsWithItsAnchor(t *testing.T) {
	clock := NewFakeClock(testNow)
	anchor, err := GenerateTrustAnchor(CAOptions{Lifetime: 30 * 24 * time.Hour, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := GenerateIssuer(anchor, CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if !issuer.Certificate.NotAfter.Equal(anchor.Certificate.NotAfter) {
		t.Errorf("issuer NotAfter = %v, want the anchor's %v", issuer.Certificate.NotAfter, anchor.Certificate.NotAfter)
	}
	clock.Advance(31 * 24 * time.Hour)
	if _, err := GenerateIssuer(anchor, CAOptions{Clock: clock}); err == nil {
		t.Error("GenerateIssuer accepted an expired trust anchor")
	}
}

// checkCA checks what GenerateTrustAnchor and GenerateIssuer have in common.
func checkCA(t *testing.T, cert *x509.Certificate, commonName string, notBefore, notAfter time.Time) {
	t.Helper()
	if cert.Subject.CommonName != commonName {
		t.Errorf("CommonName = %q, want %q", cert.Subject.CommonName, commonName)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		t.Errorf("basic constraints valid %v CA %v, want a CA", cert.BasicConstraintsValid, cert.IsCA)
	}
	if cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage = %v, want keyCertSign|cRLSign", cert.KeyUsage)
	}
	if !cert.NotBefore.Equal(notBefore) || !cert.NotAfter.Equal(notAfter) {
		t.Errorf("validity %v .. %v, want %v .. %v", cert.NotBefore, cert.NotAfter, notBefore, notAfter)
	}
	key, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", cert.SerialNumber)
	}
	if len(cert.SubjectKeyId) == 0 {
		t.Error("no subject key ID")
	}
}

func TestIssuerPEMRoundTrip(t *testing.T) {
	pki := newTestPKI(t)
	anchors, err := ParseTrustAnchors(pki.anchor.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	if len(anchors) != 1 || !anchors[0].Equal(pki.anchor.Certificate) {
		t.Fatalf("ParseTrustAnchors returned %d certificates, not the anchor", len(anchors))
	}
	issuerKeyPEM, err := pki.issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(issuerKeyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("KeyPEM is not PKCS#8:\n%s", issuerKeyPEM)
	}
	ecKeyDER, err := x509.MarshalECPrivateKey(pki.issuer.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	ecKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecKeyDER})
	// `openssl ecparam -genkey` writes the curve first.
	withParameters := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}), ecKeyPEM...)

	for name, keyPEM := range map[string][]byte{"PKCS#8": issuerKeyPEM, "EC PRIVATE KEY": ecKeyPEM, "EC PARAMETERS then key": withParameters} {
		t.Run(name, func(t *testing.T) {
			loaded, err := LoadIssuer(pki.issuer.CertificatePEM(), keyPEM, anchors, pki.clock)
			if err != nil {
				t.Fatal(err)
			}
			if !loaded.Certificate.Equal(pki.issuer.Certificate) || !publicKeysEqual(loaded.Key.Public(), pki.issuer.Key.Public()) {
				t.Fatal("loaded issuer differs from the generated one")
			}
			if len(loaded.Intermediates) != 0 || loaded.ClockSkewAllowance != DefaultClockSkewAllowance || loaded.Clock != Clock(pki.clock) {
				t.Errorf("loaded issuer: %d intermediates, skew %v, clock %v", len(loaded.Intermediates), loaded.ClockSkewAllowance, loaded.Clock)
			}
			id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
			leaf, err := loaded.Sign(mustCSR(t, mustKey(t), id), id, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pki.verifier.Verify([]*x509.Certificate{leaf, loaded.Certificate}, x509.ExtKeyUsageServerAuth); err != nil {
				t.Errorf("leaf of the loaded issuer does not verify: %v", err)
			}
		})
	}
}

func TestLoadIssuerWithIntermediate(t *testing.T) {
	// A user-supplied root without a path length limit (the generated anchor allows one CA
	// below it) -> middle -> issuer: the issuer file holds the issuer, then the middle CA.
	clock := NewFakeClock(testNow)
	root, rootKey := createCertificate(t, caTemplate("user root", testNow), nil, nil)
	verifier, err := NewVerifier([]*x509.Certificate{root}, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	middle, middleKey := createCertificate(t, caTemplate("middle", testNow), root, rootKey)
	issuerCert, issuerKey := createCertificate(t, caTemplate("issuer", testNow), middle, middleKey)
	keyPEM, err := EncodePrivateKeyPEM(issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := EncodeCertificatesPEM(issuerCert, middle)
	issuer, err := LoadIssuer(certPEM, keyPEM, []*x509.Certificate{root}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if len(issuer.Intermediates) != 1 || !issuer.Intermediates[0].Equal(middle) {
		t.Fatalf("Intermediates = %v, want the middle CA", issuer.Intermediates)
	}
	if !bytes.Equal(issuer.CertificatePEM(), certPEM) {
		t.Error("CertificatePEM is not the issuer followed by its intermediates")
	}
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, err := issuer.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf, issuerCert, middle}
	if _, err := verifier.Verify(chain, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("leaf through two intermediates does not verify: %v", err)
	}
	if _, err := verifier.Verify(chain[:2], x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrUntrusted) {
		t.Errorf("chain without the middle CA: err = %v, want ErrUntrusted", err)
	}
	// Without the middle CA in the file the issuer does not chain to the anchor.
	if _, err := LoadIssuer(EncodeCertificatesPEM(issuerCert), keyPEM, []*x509.Certificate{root}, clock); !errors.Is(err, ErrIssuerNotTrusted) {
		t.Errorf("issuer without its intermediate: err = %v, want ErrIssuerNotTrusted", err)
	}
}

func TestLoadIssuerAcceptsRSA2048(t *testing.T) {
	pki := newTestPKI(t)
	key := rsaKey2048(t)
	template := caTemplate("rsa issuer", testNow)
	der, err := x509.CreateCertificate(rand.Reader, template, pki.anchor.Certificate, key.Public(), pki.anchor.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	issuer, err := LoadIssuer(EncodeCertificatesPEM(cert), pkcs1, []*x509.Certificate{pki.anchor.Certificate}, pki.clock)
	if err != nil {
		t.Fatal(err)
	}
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, err := issuer.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.verifier.Verify([]*x509.Certificate{leaf, cert}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("leaf of the RSA issuer does not verify: %v", err)
	}
}

var rsaKey2048 = func() func(t *testing.T) *rsa.PrivateKey {
	generate := sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	return func(t *testing.T) *rsa.PrivateKey {
		key, err := generate()
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
}()

// caTemplate is an intermediate CA valid from now for a year.
func caTemplate(commonName string, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          mustSerial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func TestLoadIssuerRejects(t *testing.T) {
	pki := newTestPKI(t)
	anchors := []*x509.Certificate{pki.anchor.Certificate}
	issuerKeyPEM, err := pki.issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	certAndKey := func(template *x509.Certificate) ([]byte, []byte) {
		cert, key := createCertificate(t, template, pki.anchor.Certificate, pki.anchor.Key)
		keyPEM, err := EncodePrivateKeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		return EncodeCertificatesPEM(cert), keyPEM
	}

	nonCA := caTemplate("not a ca", testNow)
	nonCA.IsCA = false
	nonCA.KeyUsage = x509.KeyUsageDigitalSignature
	nonCACert, nonCAKey := certAndKey(nonCA)

	noBasicConstraints := caTemplate("no basic constraints", testNow)
	noBasicConstraints.BasicConstraintsValid, noBasicConstraints.IsCA = false, false
	noBasicConstraintsCert, noBasicConstraintsKey := certAndKey(noBasicConstraints)

	noCertSign := caTemplate("no keyCertSign", testNow)
	noCertSign.KeyUsage = x509.KeyUsageDigitalSignature
	noCertSignCert, noCertSignKey := certAndKey(noCertSign)

	expired := caTemplate("expired", testNow.Add(-400*24*time.Hour))
	expiredCert, expiredKey := certAndKey(expired)

	otherPKI := newTestPKI(t)
	otherKeyPEM, err := otherPKI.issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}

	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakKeyDER, err := x509.MarshalPKCS8PrivateKey(weakKey)
	if err != nil {
		t.Fatal(err)
	}
	weakKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: weakKeyDER})

	p224Key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224DER, err := x509.MarshalECPrivateKey(p224Key)
	if err != nil {
		t.Fatal(err)
	}
	p224PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p224DER})

	garbage := []byte("this is not PEM\n")
	truncated := pki.issuer.CertificatePEM()
	truncated = truncated[:len(truncated)/2]

	cases := []struct {
		name            string
		certPEM, keyPEM []byte
		anchors         []*x509.Certificate
		want            error  // nil: any error
		wantText        string // a piece of the message that says what to do
	}{
		{"non-CA issuer", nonCACert, nonCAKey, anchors, ErrIssuerNotCA, "CA:TRUE"},
		{"issuer without basic constraints", noBasicConstraintsCert, noBasicConstraintsKey, anchors, ErrIssuerNotCA, "intermediate CA"},
		{"CA without keyCertSign", noCertSignCert, noCertSignKey, anchors, ErrIssuerNotCA, "keyCertSign"},
		{"mismatched key", pki.issuer.CertificatePEM(), otherKeyPEM, anchors, ErrKeyMismatch, "give the key"},
		{"issuer of another anchor", otherPKI.issuer.CertificatePEM(), otherKeyPEM, anchors, ErrIssuerNotTrusted, "trust anchor that signed"},
		{"expired issuer", expiredCert, expiredKey, anchors, ErrExpired, "new issuer"},
		{"no anchors", pki.issuer.CertificatePEM(), issuerKeyPEM, nil, nil, "trust anchor"},
		{"garbage certificate", garbage, issuerKeyPEM, anchors, ErrNoPEMBlock, "PEM certificate"},
		{"truncated certificate", truncated, issuerKeyPEM, anchors, ErrNoPEMBlock, "copied whole"},
		{"key in the certificate file", issuerKeyPEM, issuerKeyPEM, anchors, nil, "certificate file"},
		{"garbage key", pki.issuer.CertificatePEM(), garbage, anchors, ErrNoPEMBlock, "private key"},
		{"certificate in the key file", pki.issuer.CertificatePEM(), pki.issuer.CertificatePEM(), anchors, nil, "key file"},
		{"RSA 1024 key", pki.issuer.CertificatePEM(), weakKeyPEM, anchors, ErrWeakKey, "at least 2048"},
		{"P-224 key", pki.issuer.CertificatePEM(), p224PEM, anchors, ErrWeakKey, "P-256"},
		{"encrypted key", pki.issuer.CertificatePEM(), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), anchors, nil, "decrypt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			issuer, err := LoadIssuer(c.certPEM, c.keyPEM, c.anchors, pki.clock)
			if err == nil {
				t.Fatalf("LoadIssuer accepted it: %v", issuer.Certificate.Subject)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err = %v, want it to wrap %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.wantText) {
				t.Errorf("err = %q, want it to say %q", err, c.wantText)
			}
		})
	}
}

func TestParseTrustAnchorsRejectsNonCA(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, err := pki.issuer.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	bundle := EncodeCertificatesPEM(pki.anchor.Certificate, leaf)
	if _, err := ParseTrustAnchors(bundle); !errors.Is(err, ErrNotCA) {
		t.Errorf("err = %v, want ErrNotCA", err)
	}
	if _, err := ParseTrustAnchors(nil); !errors.Is(err, ErrNoPEMBlock) {
		t.Errorf("empty bundle: err = %v, want ErrNoPEMBlock", err)
	}
	// A bundle of two anchors, as during a rotation, keeps its order.
	other := newTestPKI(t)
	anchors, err := ParseTrustAnchors(EncodeCertificatesPEM(pki.anchor.Certificate, other.anchor.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if len(anchors) != 2 || !anchors[0].Equal(pki.anchor.Certificate) || !anchors[1].Equal(other.anchor.Certificate) {
		t.Error("the two anchors did not come back in order")
	}
}

func TestLoadIssuerFiles(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	keyPEM, err := pki.issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	anchorsFile := filepath.Join(dir, "ca.crt")
	certFile := filepath.Join(dir, "issuer.crt")
	keyFile := filepath.Join(dir, "issuer.key")
	for file, data := range map[string][]byte{anchorsFile: pki.anchor.CertificatePEM(), certFile: pki.issuer.CertificatePEM(), keyFile: keyPEM} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	anchors, err := ReadTrustAnchorsFile(anchorsFile)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := LoadIssuerFiles(certFile, keyFile, anchors, pki.clock)
	if err != nil {
		t.Fatal(err)
	}
	if !issuer.Certificate.Equal(pki.issuer.Certificate) {
		t.Error("loaded a different issuer")
	}
	// Swapped files: the error names them.
	if _, err := LoadIssuerFiles(keyFile, certFile, anchors, pki.clock); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("swapped files: err = %v, want an error naming %s", err, keyFile)
	}
	if _, err := ReadTrustAnchorsFile(filepath.Join(dir, "missing.crt")); err == nil {
		t.Error("ReadTrustAnchorsFile accepted a missing file")
	}
}

func TestEncodeDecodeCertificatesPEM(t *testing.T) {
	pki := newTestPKI(t)
	data := EncodeCertificatesPEM(pki.issuer.Certificate, pki.anchor.Certificate)
	// Text around the blocks, as `openssl x509 -text` leaves it, is ignored.
	data = append([]byte("Certificate:\n    Data: ...\n"), data...)
	certs, err := DecodeCertificatesPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(pki.issuer.Certificate) || !certs[1].Equal(pki.anchor.Certificate) {
		t.Fatalf("decoded %d certificates, not the chain in order", len(certs))
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	if _, err := DecodeCertificatesPEM(bad); err == nil {
		t.Error("DecodeCertificatesPEM accepted a block that is not DER")
	}
}

func TestEncodeDecodePrivateKeyPEM(t *testing.T) {
	key := mustKey(t)
	data, err := EncodePrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := DecodePrivateKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(decoded.Public(), key.Public()) {
		t.Error("decoded a different key")
	}
}
