package meshtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
)

const (
	clientID = "spiffe://cluster.local/ns/shop/sa/web"
	serverID = "spiffe://cluster.local/ns/shop/sa/orders"
)

func TestSNI(t *testing.T) {
	for _, tc := range []struct{ id, want, err string }{
		{id: serverID, want: "orders.shop.serviceaccount.identity.lightmesh.cluster.local"},
		{id: "spiffe://example.org/ns/a/sa/b.c", want: "b.c.a.serviceaccount.identity.lightmesh.example.org"},
		{id: "spiffe://cluster.local/ns/shop/sa/Orders", err: "not a DNS name"},
		{id: "spiffe://cluster.local/ns/shop/sa/my_sa", err: "not a DNS name"},
		{id: "spiffe://cluster.local/ns/sh.op/sa/x", err: "namespace"},
		{id: "spiffe://cluster.local/ns/shop/sa/-x", err: "not a DNS name"},
	} {
		got, err := meshtls.SNI(testpki.ID(t, tc.id))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SNI(%s) = %q, %v; want an error with %q", tc.id, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("SNI(%s) = %q, %v; want %q", tc.id, got, err, tc.want)
		}
	}
}

// handshake runs a client and a server handshake over a pipe and returns the identity the
// server saw and their errors.
func handshake(t *testing.T, client, server *meshtls.TLS, want identity.SpiffeID) (seen identity.SpiffeID, clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := tls.Server(b, server.ServerConfig())
		serverErr = sc.HandshakeContext(ctx)
		if serverErr == nil {
			seen, serverErr = meshtls.PeerIdentity(sc.ConnectionState())
			_, _ = sc.Write([]byte("k"))
			_, _ = io.Copy(io.Discard, sc)
		}
		b.Close()
	}()
	tc, clientErr := client.Client(ctx, a, want, meshtls.ALPNTCP)
	if clientErr == nil {
		// In TLS 1.3 the server checks the client's certificate after the client is done:
		// a refused client sees the connection end.
		_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			clientErr = err
		}
		tc.Close()
	}
	a.Close()
	<-done
	return seen, clientErr, serverErr
}

func newTLS(t *testing.T, src meshtls.Source, clock identity.Clock) *meshtls.TLS {
	t.Helper()
	m, err := meshtls.New(meshtls.Options{Source: src, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHandshake(t *testing.T) {
	pki := testpki.New(t)
	other := testpki.New(t)
	server := newTLS(t, pki.Source(t, serverID), nil)

	t.Run("ok", func(t *testing.T) {
		seen, clientErr, serverErr := handshake(t, newTLS(t, pki.Source(t, clientID), nil), server, testpki.ID(t, serverID))
		if clientErr != nil || serverErr != nil {
			t.Fatalf("client: %v, server: %v", clientErr, serverErr)
		}
		if seen.String() != clientID {
			t.Errorf("server saw %s, want %s", seen, clientID)
		}
	})
	t.Run("identity mismatch fails closed", func(t *testing.T) {
		_, clientErr, _ := handshake(t, newTLS(t, pki.Source(t, clientID), nil), server, testpki.ID(t, "spiffe://cluster.local/ns/shop/sa/payments"))
		if !errors.Is(clientErr, identity.ErrIdentityMismatch) {
			t.Errorf("client error %v, want %v", clientErr, identity.ErrIdentityMismatch)
		}
	})
	t.Run("client from an unknown CA is refused", func(t *testing.T) {
		stranger := other.Source(t, clientID)
		// The stranger trusts our anchors, so only the server's check can refuse it.
		mixed := &mixedSource{cert: stranger, anchors: pki.Source(t, clientID)}
		_, clientErr, serverErr := handshake(t, newTLS(t, mixed, nil), server, testpki.ID(t, serverID))
		if !errors.Is(serverErr, identity.ErrUntrusted) {
			t.Errorf("server error %v, want %v", serverErr, identity.ErrUntrusted)
		}
		if clientErr == nil {
			t.Error("the client's handshake succeeded")
		}
	})
	t.Run("server from an unknown CA is refused", func(t *testing.T) {
		_, clientErr, _ := handshake(t, newTLS(t, pki.Source(t, clientID), nil), newTLS(t, other.Source(t, serverID), nil), testpki.ID(t, serverID))
		if !errors.Is(clientErr, identity.ErrUntrusted) {
			t.Errorf("client error %v, want %v", clientErr, identity.ErrUntrusted)
		}
	})
	t.Run("expired client certificate is refused", func(t *testing.T) {
		src := pki.Source(t, clientID)
		src.SetCertificate(pki.LeafAt(t, clientID, time.Now().Add(-48*time.Hour), time.Hour))
		_, _, serverErr := handshake(t, newTLS(t, src, nil), server, testpki.ID(t, serverID))
		if !errors.Is(serverErr, identity.ErrExpired) {
			t.Errorf("server error %v, want %v", serverErr, identity.ErrExpired)
		}
	})
	t.Run("server certificate expired by the clock is refused", func(t *testing.T) {
		clock := identity.NewFakeClock(time.Now().Add(25 * time.Hour))
		_, clientErr, _ := handshake(t, newTLS(t, pki.Source(t, clientID), clock), server, testpki.ID(t, serverID))
		if !errors.Is(clientErr, identity.ErrExpired) {
			t.Errorf("client error %v, want %v", clientErr, identity.ErrExpired)
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		src := pki.Source(t, clientID)
		src.SetCertificate(nil)
		_, clientErr, serverErr := handshake(t, newTLS(t, src, nil), server, testpki.ID(t, serverID))
		if clientErr == nil || serverErr == nil {
			t.Errorf("client: %v, server: %v; want both to fail", clientErr, serverErr)
		}
	})
}

type mixedSource struct{ cert, anchors meshtls.Source }

func (m *mixedSource) Certificate() *tls.Certificate { return m.cert.Certificate() }
func (m *mixedSource) TrustAnchors() *x509.CertPool  { return m.anchors.TrustAnchors() }
func (m *mixedSource) Ready() bool                   { return true }

func TestFileSource(t *testing.T) {
	pki := testpki.New(t)
	dir := t.TempDir()
	if _, err := meshtls.NewFileSource(meshtls.FileSourceOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "mount the identity files") {
		t.Fatalf("no files: %v", err)
	}
	pki.WriteFiles(t, dir, pki.Leaf(t, clientID))
	src, err := meshtls.NewFileSource(meshtls.FileSourceOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !src.Ready() || src.Identity().String() != clientID || src.TrustAnchors() == nil {
		t.Fatalf("ready %v identity %s", src.Ready(), src.Identity())
	}
	if changed, err := src.Reload(); changed || err != nil {
		t.Errorf("reload of unchanged files: %v, %v", changed, err)
	}

	// A new certificate is picked up.
	pki.WriteFiles(t, dir, pki.Leaf(t, serverID))
	bump(t, dir)
	if changed, err := src.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v, %v", changed, err)
	}
	if src.Identity().String() != serverID {
		t.Errorf("identity %s after reload, want %s", src.Identity(), serverID)
	}

	// A broken key keeps the previous certificate.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	bump(t, dir)
	if _, err := src.Reload(); err == nil {
		t.Error("reload of a broken key succeeded")
	}
	if src.Identity().String() != serverID || src.Certificate() == nil {
		t.Error("the previous certificate was dropped")
	}

	// A certificate from another CA is refused.
	other := testpki.New(t)
	cert := other.Leaf(t, clientID)
	pki.WriteFiles(t, dir, cert)
	bump(t, dir)
	if _, err := src.Reload(); !errors.Is(err, identity.ErrUntrusted) {
		t.Errorf("reload of a foreign certificate: %v, want %v", err, identity.ErrUntrusted)
	}

	// Ready follows the clock.
	pki.WriteFiles(t, dir, pki.Leaf(t, clientID))
	clock := identity.NewFakeClock(time.Now())
	src, err = meshtls.NewFileSource(meshtls.FileSourceOptions{Dir: dir, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(25 * time.Hour)
	if src.Ready() {
		t.Error("ready with an expired certificate")
	}
}

func TestFileSourceRunReloads(t *testing.T) {
	pki := testpki.New(t)
	dir := t.TempDir()
	pki.WriteFiles(t, dir, pki.Leaf(t, clientID))
	src, err := meshtls.NewFileSource(meshtls.FileSourceOptions{Dir: dir, ReloadInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx)
	pki.WriteFiles(t, dir, pki.Leaf(t, serverID))
	bump(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for src.Identity().String() != serverID {
		if time.Now().After(deadline) {
			t.Fatal("Run did not reload the changed files")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bump moves the files' modification times forward, as a secret update would.
func bump(t *testing.T, dir string) {
	t.Helper()
	later := time.Now().Add(time.Duration(time.Now().UnixNano()%1000+1) * time.Second)
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Chtimes(filepath.Join(dir, name), later, later); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProblemSaysWhyThereIsNoValidCertificate(t *testing.T) {
	pki := testpki.New(t)
	const id = "spiffe://cluster.local/ns/a/sa/b"
	src := pki.Source(t, id)
	now := time.Now()
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		at   time.Time
		want string
	}{
		{"valid", pki.Leaf(t, id), now, ""},
		{"none", nil, now, "no workload certificate yet"},
		{"expired", pki.LeafAt(t, id, now.Add(-2*time.Hour), time.Hour), now, "expired at"},
		{"not yet valid", pki.Leaf(t, id), now.Add(-time.Hour), "not valid before"},
	} {
		src.SetCertificate(tc.cert)
		got := newTLS(t, src, identity.NewFakeClock(tc.at)).Problem()
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: Problem() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
