package identity

// CSR garbage and SPIFFE tricks against the Certify handler (issue 13). Every request is
// refused with InvalidArgument or PermissionDenied and a message naming the failed check,
// quickly, and nothing is issued; a CSR that asks for CA powers gets a plain leaf.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
)

func TestCertifyRefusesCSRGarbage(t *testing.T) {
	env := newTestEnv(t)
	key := mustKey(t)
	good := mustCSR(t, key, mustID(t, idA))
	templateCSR := func(tmpl *x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	random := make([]byte, 2048)
	_, _ = rand.Read(random)
	// Deeply nested ASN.1 SEQUENCEs, within the size limit.
	var nested []byte
	for range 1000 {
		nested = append([]byte{0x30, 0x82, byte(len(nested) >> 8), byte(len(nested))}, nested...)
		if len(nested) > MaxCSRBytes-8 {
			break
		}
	}
	var manySANs []*url.URL
	for i := range 200 {
		manySANs = append(manySANs, uri("spiffe://cluster.local/ns/ns1/sa/a"+strings.Repeat("x", i%5)))
	}
	cases := []struct {
		name, identity string
		csr            []byte
	}{
		{"PEM instead of DER", idA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good})},
		{"trailing bytes", idA, append(append([]byte{}, good...), 0x00, 0x01)},
		{"truncated", idA, good[:len(good)-10]},
		{"random bytes", idA, random},
		{"one byte", idA, []byte{0x30}},
		{"huge length prefix", idA, []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x00}},
		{"nested sequences", idA, nested},
		{"a certificate, not a CSR", idA, env.anchor.Certificate.Raw},
		{"over the size limit", idA, append(append([]byte{}, good...), make([]byte, MaxCSRBytes)...)},
		{"many URI SANs", idA, templateCSR(&x509.CertificateRequest{URIs: manySANs})},
		{"dot-dot URI SAN", idA, templateCSR(&x509.CertificateRequest{URIs: []*url.URL{uri("spiffe://cluster.local/ns/ns1/sa/b/../a")}})},
		{"upper-case trust domain in the SAN", idA, templateCSR(&x509.CertificateRequest{URIs: []*url.URL{uri("spiffe://CLUSTER.LOCAL/ns/ns1/sa/a")}})},
		{"dot-dot identity", "spiffe://cluster.local/ns/ns1/sa/b/../a", good},
		{"encoded identity", "spiffe://cluster.local/ns/ns1/sa/%61", good},
		{"identity with a query", idA + "?x=1", good},
		{"identity with white space", " " + idA, good},
		{"identity with a NUL", idA + "\x00", good},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp, err := env.svc.Certify(context.Background(), &identityv1.CertifyRequest{
				Identity: c.identity, Token: []byte("token-a"), CertificateSigningRequest: c.csr,
			})
			if err == nil {
				t.Fatalf("issued a certificate (%d bytes)", len(resp.GetLeafCertificate()))
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument && st.Code() != codes.PermissionDenied {
				t.Errorf("Certify = %s %q, want InvalidArgument or PermissionDenied", st.Code(), st.Message())
			}
			if !strings.Contains(st.Message(), "check failed") {
				t.Errorf("the refusal %q does not name the failed check", st.Message())
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusing it took %v", d)
			}
		})
	}
	// The control: the same token and a good CSR are issued.
	if _, err := env.svc.Certify(context.Background(), &identityv1.CertifyRequest{Identity: idA, Token: []byte("token-a"), CertificateSigningRequest: good}); err != nil {
		t.Fatalf("the control request was refused: %v", err)
	}
}

// A CSR that asks for CA:true and key usages for signing gets a plain workload leaf.
func TestCertifyIgnoresRequestedCAPowers(t *testing.T) {
	env := newTestEnv(t)
	caTrue, err := asn1.Marshal(struct {
		IsCA    bool
		PathLen int
	}{true, 5})
	if err != nil {
		t.Fatal(err)
	}
	keyUsage, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign, cRLSign
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(idA)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "evil root"},
		URIs:    []*url.URL{u},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caTrue},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: keyUsage},
		},
	}, mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := env.svc.Certify(context.Background(), &identityv1.CertifyRequest{Identity: idA, Token: []byte("token-a"), CertificateSigningRequest: der})
	if err != nil {
		// Refusing it is fine too; what must never happen is a CA.
		if st := status.Convert(err); st.Code() != codes.InvalidArgument {
			t.Fatalf("Certify = %v, want a plain leaf or InvalidArgument", err)
		}
		return
	}
	leaf := verifyLeaf(t, resp, []*x509.Certificate{env.anchor.Certificate}, env.clock, mustID(t, idA))
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 || leaf.MaxPathLen > 0 {
		t.Errorf("the CSR's CA powers reached the leaf: CA %v key usage %b", leaf.IsCA, leaf.KeyUsage)
	}
}
