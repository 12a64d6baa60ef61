package identity

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// FuzzCertify feeds arbitrary identities, tokens and CSRs to the request handling. It must
// never panic; it refuses with InvalidArgument or PermissionDenied and a message naming the
// failed check; and whatever it issues is a certificate for exactly the identity of the
// token's ServiceAccount, chaining to the trust anchor.
func FuzzCertify(f *testing.F) {
	env := newTestEnv(f)
	anchors := []*x509.Certificate{env.anchor.Certificate}
	valid := env.request(f)
	f.Add(valid.Identity, valid.Token, valid.CertificateSigningRequest)
	f.Add(idB, []byte("token-a"), valid.CertificateSigningRequest)
	f.Add(idA, []byte("token-b"), valid.CertificateSigningRequest)
	f.Add(idB, []byte("token-b"), mustCSR(f, mustKey(f), mustID(f, idB)))
	f.Add(idA, []byte("token-a"), ecCSR(f, elliptic.P384(), idA))
	f.Add(idA, []byte("token-a"), ecCSR(f, elliptic.P521(), idA))
	f.Add(idA, []byte("token-a"), rsaCSR(f, 2048, idA))
	f.Add(idA, []byte(""), valid.CertificateSigningRequest)
	f.Add("spiffe://cluster.local/ns/ns1/sa/a/extra", []byte("token-a"), []byte{0x30, 0x82, 0xff, 0xff})
	f.Add("", []byte{}, []byte{})

	// tokenOwners are the identities the fake reviewer's tokens stand for.
	tokenOwners := map[string]string{"token-a": idA, "token-b": idB}

	f.Fuzz(func(t *testing.T, identity string, token, csr []byte) {
		resp, err := env.svc.Certify(context.Background(), &identityv1.CertifyRequest{
			Identity: identity, Token: token, CertificateSigningRequest: csr,
		})
		if err != nil {
			st := status.Convert(err)
			switch st.Code() {
			case codes.InvalidArgument, codes.PermissionDenied:
			default:
				t.Fatalf("Certify = %s %q; want InvalidArgument or PermissionDenied", st.Code(), st.Message())
			}
			if !strings.Contains(st.Message(), "check failed") {
				t.Fatalf("the refusal %q does not say which check failed", st.Message())
			}
			return
		}
		owner, ok := tokenOwners[string(token)]
		if !ok || owner != identity {
			t.Fatalf("issued a certificate for %q to token %q", identity, token)
		}
		verifyLeaf(t, resp, anchors, env.clock, mustID(t, owner))
	})
}

func BenchmarkCertify(b *testing.B) {
	env := newTestEnv(b)
	req := env.request(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.svc.Certify(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// The benchmark's request must be the full path: one TokenReview and a real signature.
func TestBenchmarkRequestIsIssued(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.svc.Certify(context.Background(), env.request(t))
	if err != nil {
		t.Fatal(err)
	}
	verifyLeaf(t, resp, []*x509.Certificate{env.anchor.Certificate}, env.clock, meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "a"})
}
