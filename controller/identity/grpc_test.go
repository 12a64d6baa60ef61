package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	proxyidentity "github.com/lightmesh/lightmesh/proxy/identity"
)

// serve runs env's service on a loopback port until the test ends and returns its address.
// The fake clock starts at the real time: TLS handshakes check certificates with it.
func serve(t *testing.T, env *testEnv) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.svc.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not stop within 10s")
		}
	})
	waitFor(t, 5*time.Second, "the service to be ready", env.svc.Ready)
	return lis.Addr().String()
}

// realTimeEnv is a test environment whose fake clock reads the real time, for TLS.
func realTimeEnv(t *testing.T) *testEnv {
	t.Helper()
	saved := testNow
	testNow = time.Now().Truncate(time.Second)
	defer func() { testNow = saved }()
	return newTestEnv(t)
}

func dialService(t *testing.T, addr string, anchors *x509.CertPool, serverName string) identityv1.IdentityClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: anchors, ServerName: serverName, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return identityv1.NewIdentityClient(conn)
}

// The proxy's client gets its certificate from the service over real TLS on loopback,
// verifying the service with nothing but the trust anchor.
func TestClientAndServiceOverTLS(t *testing.T) {
	env := realTimeEnv(t)
	addr := serve(t, env)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, []byte("token-a\n"))

	client, err := proxyidentity.NewClient(proxyidentity.Options{
		Addr:         addr,
		Identity:     mustID(t, idA),
		TokenFile:    tokenFile,
		TrustAnchors: []*x509.Certificate{env.anchor.Certificate},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("client Run = %v, want nil after its context ended", err)
		}
	}()
	waitFor(t, 10*time.Second, "the client to hold a certificate", client.Ready)

	cert := client.Certificate()
	id, err := meshid.SpiffeIDFromCertificate(cert.Leaf)
	if err != nil || id.String() != idA {
		t.Fatalf("the client's certificate is for %v (%v), want %s", id, err, idA)
	}
	if len(cert.Certificate) != 2 {
		t.Errorf("the client's chain has %d certificates, want the leaf and the issuer", len(cert.Certificate))
	}
}

func TestServiceTLSIsVerifiedWithTheTrustAnchor(t *testing.T) {
	env := realTimeEnv(t)
	addr := serve(t, env)
	anchors := x509.NewCertPool()
	anchors.AddCert(env.anchor.Certificate)

	ok := dialService(t, addr, anchors, DefaultServingName)
	if _, err := ok.Certify(context.Background(), env.request(t)); err != nil {
		t.Fatalf("Certify over TLS: %v", err)
	}

	wrongName := dialService(t, addr, anchors, "other.lightmesh.svc.cluster.local")
	if _, err := wrongName.Certify(context.Background(), env.request(t)); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Certify to a service with another name = %v, want a certificate error", err)
	}

	other, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherPool := x509.NewCertPool()
	otherPool.AddCert(other.Certificate)
	untrusted := dialService(t, addr, otherPool, DefaultServingName)
	if _, err := untrusted.Certify(context.Background(), env.request(t)); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Certify with another trust anchor = %v, want a certificate error", err)
	}
}

func TestOversizedRequestIsRefused(t *testing.T) {
	env := realTimeEnv(t)
	addr := serve(t, env)
	anchors := x509.NewCertPool()
	anchors.AddCert(env.anchor.Certificate)
	client := dialService(t, addr, anchors, DefaultServingName)

	req := env.request(t)
	req.Token = make([]byte, MaxRequestBytes+1)
	_, err := client.Certify(context.Background(), req)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Certify with a %d-byte message = %v, want ResourceExhausted", MaxRequestBytes+1, err)
	}
	if env.reviewer.callCount() != 0 {
		t.Error("an oversized request reached the token check")
	}
	// The service still serves.
	if _, err := client.Certify(context.Background(), env.request(t)); err != nil {
		t.Fatalf("Certify after an oversized request: %v", err)
	}
}
