package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

func TestReloadTakesGoodNewIssuer(t *testing.T) {
	env := newTestEnv(t)
	oldServing := env.svc.ServingCertificate()
	newIssuer := env.newIssuer(t, env.anchor)
	env.writeIssuer(t, newIssuer)

	if err := env.svc.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !env.svc.Issuer().Certificate.Equal(newIssuer.Certificate) {
		t.Fatal("the new issuer was not taken")
	}
	resp, err := env.svc.Certify(context.Background(), env.request(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf := verifyLeaf(t, resp, []*x509.Certificate{env.anchor.Certificate}, env.clock, mustID(t, idA))
	if err := leaf.CheckSignatureFrom(newIssuer.Certificate); err != nil {
		t.Errorf("the new leaf is not signed by the new issuer: %v", err)
	}
	serving := env.svc.ServingCertificate()
	if serving == oldServing {
		t.Error("the serving certificate was not reissued from the new issuer")
	}
	if err := serving.Leaf.CheckSignatureFrom(newIssuer.Certificate); err != nil {
		t.Errorf("the serving certificate is not signed by the new issuer: %v", err)
	}
	events := env.events.list()
	if len(events) != 1 || events[0].eventType != "Normal" || events[0].reason != EventIssuerUpdated {
		t.Errorf("events %+v, want one Normal %s", events, EventIssuerUpdated)
	}
	if got := gaugeValue(t, env.registry, "issuer_cert_ttl_seconds"); got != newIssuer.Certificate.NotAfter.Sub(testNow).Seconds() {
		t.Errorf("issuer_cert_ttl_seconds = %g, want the new issuer's %g", got, newIssuer.Certificate.NotAfter.Sub(testNow).Seconds())
	}

	// Unchanged files: nothing happens.
	if err := env.svc.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(env.events.list()); got != 1 {
		t.Errorf("%d events after a reload of unchanged files, want still 1", got)
	}
	if env.svc.ServingCertificate() != serving {
		t.Error("the serving certificate changed on a reload of unchanged files")
	}
}

func TestReloadKeepsOldIssuerWhenNewOneIsBad(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, env *testEnv)
		want  error
		msg   string
	}{
		{"issuer of another trust anchor", func(t *testing.T, env *testEnv) {
			other, err := meshid.GenerateTrustAnchor(meshid.CAOptions{Clock: env.clock})
			if err != nil {
				t.Fatal(err)
			}
			env.writeIssuer(t, env.newIssuer(t, other))
		}, meshid.ErrIssuerNotTrusted, "does not chain to the trust anchors"},
		{"key of another issuer", func(t *testing.T, env *testEnv) {
			other := env.newIssuer(t, env.anchor)
			key, err := other.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(env.dir, IssuerKeyFile), key)
		}, meshid.ErrKeyMismatch, "does not match"},
		{"garbage certificate", func(t *testing.T, env *testEnv) {
			writeFile(t, filepath.Join(env.dir, IssuerCertFile), []byte("garbage"))
		}, meshid.ErrNoPEMBlock, "no PEM block"},
		{"expired issuer", func(t *testing.T, env *testEnv) {
			past := meshid.NewFakeClock(testNow.Add(-48 * time.Hour))
			expired, err := meshid.GenerateIssuer(env.anchor, meshid.CAOptions{Clock: past, Lifetime: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			env.writeIssuer(t, expired)
		}, meshid.ErrExpired, "expired"},
		{"issuer that is not a CA", func(t *testing.T, env *testEnv) {
			// A workload certificate with its key as the "issuer".
			key := mustKey(t)
			csr, err := x509.ParseCertificateRequest(mustCSR(t, key, mustID(t, idA)))
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := env.issuer.Sign(csr, mustID(t, idA), 0)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM, err := meshid.EncodePrivateKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(env.dir, IssuerCertFile), meshid.EncodeCertificatesPEM(leaf))
			writeFile(t, filepath.Join(env.dir, IssuerKeyFile), keyPEM)
		}, meshid.ErrIssuerNotCA, "not a CA"},
		{"missing key file", func(t *testing.T, env *testEnv) {
			if err := os.Remove(filepath.Join(env.dir, IssuerKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, os.ErrNotExist, "read the issuer key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			tt.write(t, env)
			err := env.svc.Reload(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Reload = %v, want an error wrapping %v", err, tt.want)
			}
			if !env.svc.Issuer().Certificate.Equal(env.issuer.Certificate) {
				t.Fatal("the old issuer was replaced by a bad one")
			}
			if _, err := env.svc.Certify(context.Background(), env.request(t)); err != nil {
				t.Errorf("Certify after a rejected reload: %v", err)
			}
			events := env.events.list()
			if len(events) != 1 || events[0].eventType != "Warning" || events[0].reason != EventIssuerRejected ||
				!strings.Contains(events[0].message, "kept the issuer") || !strings.Contains(events[0].message, tt.msg) {
				t.Fatalf("events %+v, want one Warning %s saying %q", events, EventIssuerRejected, tt.msg)
			}
			// The same bad content again: still kept, not reported twice.
			if err := env.svc.Reload(context.Background()); err == nil {
				t.Fatal("second Reload of bad content succeeded")
			}
			if got := len(env.events.list()); got != 1 {
				t.Errorf("%d events after polling the same bad content twice, want 1", got)
			}
			// Then a good issuer is taken.
			good := env.newIssuer(t, env.anchor)
			env.writeIssuer(t, good)
			if err := env.svc.Reload(context.Background()); err != nil {
				t.Fatalf("Reload of a good issuer after a bad one: %v", err)
			}
			if !env.svc.Issuer().Certificate.Equal(good.Certificate) {
				t.Error("the good issuer was not taken after a bad one")
			}
		})
	}
}

func TestReloadNewTrustAnchorBundle(t *testing.T) {
	env := newTestEnv(t)
	// Rotation of the trust anchor: first a bundle of old and new anchors, with an issuer of
	// the new anchor; then the issuer alone must chain to it.
	newAnchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{Clock: env.clock})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(env.dir, TrustAnchorsFile), meshid.EncodeCertificatesPEM(env.anchor.Certificate, newAnchor.Certificate))
	next := env.newIssuer(t, newAnchor)
	env.writeIssuer(t, next)
	if err := env.svc.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := len(env.svc.TrustAnchors()); got != 2 {
		t.Errorf("%d trust anchors, want 2", got)
	}
	resp, err := env.svc.Certify(context.Background(), env.request(t))
	if err != nil {
		t.Fatal(err)
	}
	verifyLeaf(t, resp, []*x509.Certificate{newAnchor.Certificate}, env.clock, mustID(t, idA))
}

func TestServingCertificateRenewsAt70Percent(t *testing.T) {
	env := newTestEnv(t)
	first := env.svc.ServingCertificate()
	leaf := first.Leaf
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != DefaultServingName || leaf.IsCA {
		t.Fatalf("serving certificate names %v (CA %v), want exactly %s", leaf.DNSNames, leaf.IsCA, DefaultServingName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(env.anchor.Certificate)
	inter := x509.NewCertPool()
	inter.AddCert(env.issuer.Certificate)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: DefaultServingName, Roots: roots, Intermediates: inter, CurrentTime: testNow}); err != nil {
		t.Fatalf("the serving certificate does not verify with the trust anchor alone: %v", err)
	}
	renewAt := leaf.NotBefore.Add(time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * 0.7))

	env.clock.Set(renewAt.Add(-time.Second))
	if err := env.svc.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if env.svc.ServingCertificate() != first {
		t.Fatal("the serving certificate was renewed before 70 % of its life")
	}
	env.clock.Set(renewAt.Add(time.Second))
	if err := env.svc.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	renewed := env.svc.ServingCertificate()
	if renewed == first || !renewed.Leaf.NotAfter.After(leaf.NotAfter) {
		t.Fatal("the serving certificate was not renewed at 70 % of its life")
	}
}

func TestWatchReloadsOnTick(t *testing.T) {
	env := newTestEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { env.svc.Watch(ctx, tick); close(done) }()
	defer func() { cancel(); <-done }()

	next := env.newIssuer(t, env.anchor)
	env.writeIssuer(t, next)
	tick <- testNow
	waitFor(t, 5*time.Second, "the new issuer", func() bool { return env.svc.Issuer().Certificate.Equal(next.Certificate) })
}

func TestIssuerTTLMetric(t *testing.T) {
	env := newTestEnv(t)
	want := env.issuer.Certificate.NotAfter.Sub(testNow).Seconds()
	if got := gaugeValue(t, env.registry, "issuer_cert_ttl_seconds"); got != want {
		t.Errorf("issuer_cert_ttl_seconds = %g, want %g", got, want)
	}
	env.clock.Advance(time.Hour)
	if got := gaugeValue(t, env.registry, "issuer_cert_ttl_seconds"); got != want-3600 {
		t.Errorf("issuer_cert_ttl_seconds an hour later = %g, want %g", got, want-3600)
	}
}
