package destination

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// servingCert issues a serverAuth certificate for name from pki's issuer.
func servingCert(t *testing.T, pki *testpki.PKI, name string) tls.Certificate {
	t.Helper()
	key, err := meshid.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.Issuer.Certificate, key.Public(), pki.Issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, pki.Issuer.Certificate.Raw}, PrivateKey: key}
}

// The client dials with mTLS: it waits for its own certificate, presents it, and checks the
// server's name against the trust anchors.
func TestClientMutualTLS(t *testing.T) {
	pki := testpki.New(t)
	src := pki.Source(t, "spiffe://cluster.local/ns/shop/sa/client")
	cert := src.Certificate()
	src.SetCertificate(nil) // no certificate yet

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{streams: make(chan fakeStream, 16)}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{servingCert(t, pki, DefaultServerName)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Pool(),
	})))
	destinationv1.RegisterDestinationServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := New(ctx, Options{Addr: lis.Addr().String(), Source: src, InitialTimeout: 100 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	target := discovery.Target{Addr: netip.MustParseAddrPort("10.96.0.5:80")}
	if _, found, err := c.Resolve(ctx, target); found || err != nil {
		t.Fatalf("without a certificate: found=%v err=%v, want passthrough", found, err)
	}
	select {
	case <-f.streams:
		t.Fatal("the server accepted a stream from a client without a certificate")
	default:
	}

	src.SetCertificate(cert)
	s := f.next(t)
	s.updates <- addSet("spiffe://cluster.local/ns/shop/sa/web", "10.1.0.1:8080")
	eventually(t, c, target, "endpoints over mTLS", count(1))
}
