package destination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	"github.com/lightmesh/lightmesh/controller/identity"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

type noReviews struct{}

func (noReviews) Review(context.Context, string, string) (identity.TokenReview, error) {
	return identity.TokenReview{}, io.EOF
}

// workloadCert signs a client certificate for id.
func workloadCert(t *testing.T, issuer *meshid.Issuer, id meshid.SpiffeID) tls.Certificate {
	t.Helper()
	key, err := meshid.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := meshid.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := issuer.Sign(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, issuer.Certificate.Raw}, PrivateKey: key, Leaf: leaf}
}

// tlsServer serves e's service on loopback with a serving certificate from a new identity
// issuer; dial connects with the given client certificates.
type tlsServer struct {
	ctx    context.Context
	issuer *meshid.Issuer
	dial   func(certs []tls.Certificate) destinationv1.DestinationClient
}

func serveTLS(t *testing.T, e *env) *tlsServer {
	t.Helper()
	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": issuer.CertificatePEM(), "tls.key": keyPEM, "ca.crt": anchor.CertificatePEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const servingName = "destination.lightmesh.svc.cluster.local"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	certs, err := identity.New(identity.Options{IssuerDir: dir, ServingName: servingName, Reviewer: noReviews{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- e.service.Serve(ctx, lis, RequireClientIdentity(certs.TLSConfig(), certs.TrustAnchors, "cluster.local", nil))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	roots := x509.NewCertPool()
	roots.AddCert(anchor.Certificate)
	dial := func(certs []tls.Certificate) destinationv1.DestinationClient {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: servingName, Certificates: certs,
		})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return destinationv1.NewDestinationClient(conn)
	}
	return &tlsServer{ctx: ctx, issuer: issuer, dial: dial}
}

// TestGetOverMutualTLS serves the service on loopback with a serving certificate from the
// identity issuer and checks that a proxy with a workload certificate gets a stream and a
// client without one is refused.
func TestGetOverMutualTLS(t *testing.T) {
	svc, p1, p2, p3 := webObjects()
	e := newEnv(t, svc, p1, p2, p3, slice("shop", "web", "web-x", map[string]int32{"http": 8080}, ep{ip: "10.1.0.1", pod: "web-1"}))
	srv := serveTLS(t, e)
	ctx, issuer, dial := srv.ctx, srv.issuer, srv.dial
	callCtx, callCancel := context.WithTimeout(ctx, waitFor)
	defer callCancel()

	id, _ := meshid.NewSpiffeID("cluster.local", "shop", "client")
	stream, err := dial([]tls.Certificate{workloadCert(t, issuer, id)}).Get(callCtx, &destinationv1.GetDestination{Path: webFQDN})
	if err != nil {
		t.Fatal(err)
	}
	u, err := stream.Recv()
	if err != nil {
		t.Fatalf("with a workload certificate: %v", err)
	}
	if got := addrs(u.GetAdd().GetAddrs()); !slices.Equal(got, []string{"10.1.0.1:8080"}) {
		t.Fatalf("got %v", got)
	}

	anon, err := dial(nil).Get(callCtx, &destinationv1.GetDestination{Path: webFQDN})
	if err == nil {
		_, err = anon.Recv()
	}
	if err == nil {
		t.Fatal("a client without a certificate got an answer")
	}
}
