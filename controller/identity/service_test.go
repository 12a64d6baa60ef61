package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

func TestCertifyIssuesLeafForTheTokensServiceAccount(t *testing.T) {
	env := newTestEnv(t)
	key := mustKey(t)
	resp, err := env.svc.Certify(context.Background(), &identityv1.CertifyRequest{
		Identity:                  idA,
		Token:                     []byte("token-a"),
		CertificateSigningRequest: mustCSR(t, key, mustID(t, idA)),
	})
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	leaf := verifyLeaf(t, resp, []*x509.Certificate{env.anchor.Certificate}, env.clock, mustID(t, idA))
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != idA || len(leaf.DNSNames) != 0 {
		t.Errorf("leaf names URIs %v DNS %v, want exactly %s", leaf.URIs, leaf.DNSNames, idA)
	}
	if !key.Public().(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Error("the leaf is not for the CSR's key")
	}
	if want := testNow.Add(24 * time.Hour); !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s (24 h)", leaf.NotAfter, want)
	}
	if want := testNow.Add(-time.Minute); !leaf.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want %s (1 min of clock skew)", leaf.NotBefore, want)
	}
	if got := resp.GetValidUntil().AsTime(); !got.Equal(leaf.NotAfter) {
		t.Errorf("valid_until = %s, want the leaf's NotAfter %s", got, leaf.NotAfter)
	}
	if len(resp.GetIntermediateCertificates()) != 1 || !bytes.Equal(resp.GetIntermediateCertificates()[0], env.issuer.Certificate.Raw) {
		t.Error("the intermediates are not exactly the issuer certificate")
	}
	if got := env.reviewer.callCount(); got != 1 {
		t.Errorf("%d TokenReviews, want 1", got)
	}
}

func TestCertifyLifetimeAndSkewOptions(t *testing.T) {
	env := newTestEnv(t, func(o *Options) {
		o.LeafLifetime = time.Hour
		o.ClockSkew = 30 * time.Second
	})
	resp, err := env.svc.Certify(context.Background(), env.request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := verifyLeaf(t, resp, []*x509.Certificate{env.anchor.Certificate}, env.clock, mustID(t, idA))
	if !leaf.NotAfter.Equal(testNow.Add(time.Hour)) || !leaf.NotBefore.Equal(testNow.Add(-30*time.Second)) {
		t.Errorf("validity %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, testNow.Add(-30*time.Second), testNow.Add(time.Hour))
	}
}

// rsaCSR returns a CSR for id with an RSA key of bits bits. Above 4096 bits no key is
// generated (that takes minutes): the CSR is assembled from a random modulus and a garbage
// signature, which is what an attacker would send anyway; it still parses as a CSR.
func rsaCSR(t testing.TB, bits int, id string) []byte {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	if bits <= 4096 {
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
	spki, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	info, err := asn1.Marshal(struct {
		Version           int
		Subject, SPKI, At asn1.RawValue
	}{0, asn1.RawValue{FullBytes: []byte{0x30, 0}}, asn1.RawValue{FullBytes: spki}, asn1.RawValue{FullBytes: []byte{0xa0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	sha256WithRSA := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	der, err := asn1.Marshal(struct {
		Info      asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: info}, pkix.AlgorithmIdentifier{Algorithm: sha256WithRSA, Parameters: asn1.NullRawValue},
		asn1.BitString{Bytes: make([]byte, bits/8), BitLength: bits}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("the assembled %d-bit RSA CSR does not parse: %v", bits, err)
	}
	return der
}

func ecCSR(t testing.TB, curve elliptic.Curve, id string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertifyRefusals(t *testing.T) {
	env := newTestEnv(t)
	env.reviewer.add("token-a-other-audience", "ns1", "a", "api")
	env.reviewer.set("token-unaware", fakeToken{user: "system:serviceaccount:ns1:a", unawareOfAudiences: true})
	env.reviewer.set("token-user", fakeToken{user: "alice", audiences: []string{testAudience}})
	csrA := mustCSR(t, mustKey(t), mustID(t, idA))
	badSignature := bytes.Clone(csrA)
	badSignature[len(badSignature)-5] ^= 0xff

	tests := []struct {
		name       string
		identity   string
		token      string
		csr        []byte
		code       codes.Code
		message    string
		noReview   bool
		reviewDown bool
	}{
		{name: "token of B asking for A", identity: idA, token: "token-b", csr: csrA,
			code: codes.PermissionDenied, message: "identity check failed: the token is of ServiceAccount ns1/b but the request asks for " + idA},
		{name: "unauthenticated token", identity: idA, token: "forged", csr: csrA,
			code: codes.PermissionDenied, message: "token check failed: the token is not valid for audience \"identity.lightmesh.io\": invalid bearer token"},
		{name: "token for another audience", identity: idA, token: "token-a-other-audience", csr: csrA,
			code: codes.PermissionDenied, message: "token check failed: the token is not valid for audience"},
		{name: "review confirms no audience", identity: idA, token: "token-unaware", csr: csrA,
			code: codes.PermissionDenied, message: "token check failed: the TokenReview confirmed audiences []"},
		{name: "token of a user", identity: idA, token: "token-user", csr: csrA,
			code: codes.PermissionDenied, message: "not of a ServiceAccount"},
		{name: "empty token", identity: idA, token: "", csr: csrA,
			code: codes.PermissionDenied, message: "token check failed: the request has no token", noReview: true},
		{name: "huge token", identity: idA, token: strings.Repeat("x", MaxTokenBytes+1), csr: csrA,
			code: codes.PermissionDenied, message: "token check failed: the token is 16385 bytes", noReview: true},
		{name: "review unavailable", identity: idA, token: "token-a", csr: csrA, reviewDown: true,
			code: codes.Unavailable, message: "token check failed: the TokenReview could not be made: connection refused"},
		{name: "CSR with another identity", identity: idA, token: "token-a", csr: mustCSR(t, mustKey(t), mustID(t, idB)),
			code: codes.InvalidArgument, message: "CSR check failed: the CSR names [\"" + idB + "\"] but the request asks for " + idA, noReview: true},
		{name: "CSR with two identities", identity: idA, token: "token-a", csr: func() []byte {
			u1, _ := url.Parse(idA)
			u2, _ := url.Parse(idB)
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u1, u2}}, mustKey(t))
			if err != nil {
				t.Fatal(err)
			}
			return der
		}(), code: codes.InvalidArgument, message: "CSR check failed", noReview: true},
		{name: "RSA key", identity: idA, token: "token-a", csr: rsaCSR(t, 2048, idA),
			code: codes.InvalidArgument, message: "CSR check failed: the key is RSA, not ECDSA", noReview: true},
		{name: "16384-bit RSA key", identity: idA, token: "token-a", csr: rsaCSR(t, 16384, idA),
			code: codes.InvalidArgument, message: "CSR check failed: the CSR is 4", noReview: true},
		{name: "P-521 key", identity: idA, token: "token-a", csr: ecCSR(t, elliptic.P521(), idA),
			code: codes.InvalidArgument, message: "CSR check failed: the ECDSA key is on curve P-521", noReview: true},
		{name: "garbage CSR", identity: idA, token: "token-a", csr: []byte("not a CSR at all"),
			code: codes.InvalidArgument, message: "CSR check failed: the CSR does not parse as DER PKCS#10 (asn1: structure error", noReview: true},
		{name: "no CSR", identity: idA, token: "token-a",
			code: codes.InvalidArgument, message: "CSR check failed: the request has no certificate_signing_request", noReview: true},
		{name: "CSR signed by another key", identity: idA, token: "token-a", csr: badSignature,
			code: codes.InvalidArgument, message: "CSR check failed: invalid certificate signing request: bad signature"},
		{name: "malformed identity", identity: "spiffe://cluster.local/a/b", token: "token-a", csr: csrA,
			code: codes.InvalidArgument, message: "identity check failed: invalid SPIFFE ID", noReview: true},
		{name: "no identity", identity: "", token: "token-a", csr: csrA,
			code: codes.InvalidArgument, message: "identity check failed", noReview: true},
		{name: "another trust domain", identity: "spiffe://other.org/ns/ns1/sa/a", token: "token-a", csr: csrA,
			code: codes.PermissionDenied, message: "identity check failed: spiffe://other.org/ns/ns1/sa/a is not in this mesh's trust domain \"cluster.local\"", noReview: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.reviewer.callCount()
			if tt.reviewDown {
				env.reviewer.err = errReviewDown
				defer func() { env.reviewer.err = nil }()
			}
			resp, err := env.svc.Certify(context.Background(), &identityv1.CertifyRequest{
				Identity: tt.identity, Token: []byte(tt.token), CertificateSigningRequest: tt.csr,
			})
			if err == nil {
				t.Fatalf("Certify succeeded (leaf of %d bytes), want %s", len(resp.GetLeafCertificate()), tt.code)
			}
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.message) {
				t.Errorf("Certify = %s %q\nwant %s containing %q", st.Code(), st.Message(), tt.code, tt.message)
			}
			if reviews := env.reviewer.callCount() - before; tt.noReview && reviews != 0 {
				t.Errorf("%d TokenReviews made for a request refused before the token check", reviews)
			}
		})
	}
	if got := gaugeValueLabelled(t, env, "identity_certify_requests_total", "PermissionDenied"); got < 5 {
		t.Errorf("identity_certify_requests_total{code=PermissionDenied} = %g, want at least 5", got)
	}
}

func gaugeValueLabelled(t *testing.T, env *testEnv, name, code string) float64 {
	t.Helper()
	families, err := env.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestCertifyWithExpiredIssuer(t *testing.T) {
	env := newTestEnv(t)
	env.clock.Advance(meshid.DefaultIssuerLifetime + time.Hour)
	_, err := env.svc.Certify(context.Background(), env.request(t))
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "the issuer cannot sign") {
		t.Fatalf("Certify with an expired issuer = %v, want FailedPrecondition", err)
	}
	if env.svc.Ready() {
		t.Error("Ready() with an expired issuer")
	}
	serving := env.svc.ServingCertificate()
	if err := env.svc.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "the issuer expired") {
		t.Errorf("Reload with an expired issuer = %v, want the serving certificate renewal refused", err)
	}
	if env.svc.ServingCertificate() != serving {
		t.Error("a serving certificate was issued from an expired issuer")
	}
}

func TestLeafNeverOutlivesIssuer(t *testing.T) {
	env := newTestEnv(t)
	env.clock.Advance(meshid.DefaultIssuerLifetime - time.Hour)
	resp, err := env.svc.Certify(context.Background(), env.request(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetValidUntil().AsTime(); !got.Equal(env.issuer.Certificate.NotAfter) {
		t.Errorf("valid_until %s, want the issuer's NotAfter %s", got, env.issuer.Certificate.NotAfter)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no issuer dir", Options{Reviewer: newFakeReviewer()}, "no issuer directory given"},
		{"no reviewer", Options{IssuerDir: t.TempDir()}, "no token reviewer given"},
		{"bad trust domain", Options{IssuerDir: t.TempDir(), Reviewer: newFakeReviewer(), TrustDomain: "Cluster.Local"}, "upper-case"},
		{"short lifetime", Options{IssuerDir: t.TempDir(), Reviewer: newFakeReviewer(), LeafLifetime: time.Second}, "leaf lifetime 1s is too short"},
		{"skew beyond lifetime", Options{IssuerDir: t.TempDir(), Reviewer: newFakeReviewer(), LeafLifetime: time.Hour, ClockSkew: 2 * time.Hour}, "clock skew allowance"},
		{"serving name", Options{IssuerDir: t.TempDir(), Reviewer: newFakeReviewer(), ServingName: "https://x"}, "not a DNS name"},
		{"missing issuer files", Options{IssuerDir: t.TempDir(), Reviewer: newFakeReviewer()}, "read the issuer certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseServiceAccountUser(t *testing.T) {
	tests := []struct {
		user   string
		ns, sa string
		ok     bool
	}{
		{"system:serviceaccount:ns1:a", "ns1", "a", true},
		{"system:serviceaccount:ns1", "", "", false},
		{"system:serviceaccount::a", "", "", false},
		{"system:serviceaccount:ns1:", "", "", false},
		{"system:serviceaccount:ns1:a:b", "", "", false},
		{"system:serviceaccounts:ns1:a", "", "", false},
		{"alice", "", "", false},
	}
	for _, tt := range tests {
		ns, sa, ok := parseServiceAccountUser(tt.user)
		if ns != tt.ns || sa != tt.sa || ok != tt.ok {
			t.Errorf("parseServiceAccountUser(%q) = %q, %q, %v; want %q, %q, %v", tt.user, ns, sa, ok, tt.ns, tt.sa, tt.ok)
		}
	}
}
