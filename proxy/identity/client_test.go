package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

var testNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

const testID = "spiffe://cluster.local/ns/ns1/sa/a"

// fakeCertifier signs CSRs with a real issuer, or fails while err is set. It records the
// tokens it was sent.
type fakeCertifier struct {
	mu     sync.Mutex
	issuer *meshid.Issuer
	err    error
	tokens []string
	// tamper, when set, changes the response before it is returned.
	tamper func(*identityv1.CertifyResponse)
}

func (f *fakeCertifier) Certify(_ context.Context, req *identityv1.CertifyRequest, _ ...grpc.CallOption) (*identityv1.CertifyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, string(req.GetToken()))
	if f.err != nil {
		return nil, f.err
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id, err := meshid.ParseSpiffeID(req.GetIdentity())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	leaf, err := f.issuer.Sign(csr, id, 0)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &identityv1.CertifyResponse{
		LeafCertificate:          leaf.Raw,
		IntermediateCertificates: [][]byte{f.issuer.Certificate.Raw},
		ValidUntil:               timestamppb.New(leaf.NotAfter),
	}
	if f.tamper != nil {
		f.tamper(resp)
	}
	return resp, nil
}

func (f *fakeCertifier) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeCertifier) sentTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tokens...)
}

type testEnv struct {
	clock     *meshid.FakeClock
	anchor    *meshid.TrustAnchor
	certifier *fakeCertifier
	tokenFile string
	registry  *prometheus.Registry
	client    *Client
}

func newTestEnv(t *testing.T, mutate ...func(*Options)) *testEnv {
	t.Helper()
	clock := meshid.NewFakeClock(testNow)
	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{
		clock:     clock,
		anchor:    anchor,
		certifier: &fakeCertifier{issuer: issuer},
		tokenFile: filepath.Join(t.TempDir(), "token"),
		registry:  prometheus.NewRegistry(),
	}
	env.writeToken(t, "token-1")
	id, err := meshid.ParseSpiffeID(testID)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Identity:     id,
		TokenFile:    env.tokenFile,
		TrustAnchors: []*x509.Certificate{anchor.Certificate},
		Certifier:    env.certifier,
		Clock:        clock,
		Jitter:       func() float64 { return 0.5 },
		Registerer:   env.registry,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mutate {
		m(&opts)
	}
	env.client, err = NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (env *testEnv) writeToken(t *testing.T, token string) {
	t.Helper()
	if err := os.WriteFile(env.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (env *testEnv) refresh() time.Duration {
	return env.client.refresh(context.Background(), env.certifier)
}

func expiryGauge(t *testing.T, env *testEnv) float64 {
	t.Helper()
	families, err := env.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "identity_cert_expiration_timestamp_seconds" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("identity_cert_expiration_timestamp_seconds is not registered")
	return 0
}

func TestFirstCertificateAndRenewalAt70Percent(t *testing.T) {
	env := newTestEnv(t)
	if env.client.Ready() || env.client.Certificate() != nil {
		t.Fatal("the client is ready before it got a certificate")
	}
	if _, err := env.client.GetCertificate(nil); err == nil {
		t.Error("GetCertificate before a certificate: no error")
	}

	wait := env.refresh()
	cert := env.client.Certificate()
	if cert == nil || !env.client.Ready() {
		t.Fatal("no certificate after a successful refresh")
	}
	if id, err := meshid.SpiffeIDFromCertificate(cert.Leaf); err != nil || id.String() != testID {
		t.Errorf("certificate for %v (%v), want %s", id, err, testID)
	}
	leaf := cert.Leaf
	// The leaf is valid from 1 min ago (clock skew) to 24 h from now: 70 % of that life.
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	want := leaf.NotBefore.Add(time.Duration(float64(life) * 0.7)).Sub(testNow)
	if wait != want {
		t.Errorf("renewal in %s, want %s (70 %% of %s)", wait, want, life)
	}
	if got := expiryGauge(t, env); got != float64(leaf.NotAfter.Unix()) {
		t.Errorf("identity_cert_expiration_timestamp_seconds = %g, want %d", got, leaf.NotAfter.Unix())
	}

	env.clock.Advance(wait)
	env.writeToken(t, "token-2")
	if next := env.refresh(); next != want {
		t.Errorf("renewal of the renewed certificate in %s, want %s", next, want)
	}
	renewed := env.client.Certificate()
	if renewed == cert || !renewed.Leaf.NotAfter.After(leaf.NotAfter) {
		t.Fatal("the certificate was not renewed")
	}
	if renewed.PrivateKey == cert.PrivateKey {
		t.Error("the renewal reused the old key")
	}
	if got := env.certifier.sentTokens(); len(got) != 2 || got[0] != "token-1" || got[1] != "token-2" {
		t.Errorf("tokens sent %q, want the token file read anew on each attempt", got)
	}
}

func TestRenewalFailureKeepsCurrentCertificate(t *testing.T) {
	env := newTestEnv(t)
	renewIn := env.refresh()
	cert := env.client.Certificate()

	env.clock.Advance(renewIn)
	env.certifier.setErr(status.Error(codes.Unavailable, "connection refused"))
	waits := []time.Duration{}
	for range 8 {
		waits = append(waits, env.refresh())
		if env.client.Certificate() != cert {
			t.Fatal("a failed renewal replaced the certificate")
		}
		if !env.client.Ready() {
			t.Fatal("not ready while the current certificate is still valid")
		}
	}
	// Jitter 0.5: three quarters of 1 s, 2 s, 4 s, ... capped at 1 min.
	want := []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second,
		12 * time.Second, 24 * time.Second, 45 * time.Second, 45 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Errorf("wait after failure %d = %s, want %s (all: %v)", i+1, waits[i], want[i], waits)
		}
	}

	// The certificate expires while the service stays down: not ready, still served.
	env.clock.Set(cert.Leaf.NotAfter.Add(time.Second))
	env.refresh()
	if env.client.Ready() {
		t.Error("ready with an expired certificate")
	}
	if env.client.Certificate() != cert {
		t.Error("the expired certificate was dropped")
	}

	// The service is back: a new certificate, ready again, backoff reset.
	env.certifier.setErr(nil)
	env.refresh()
	if !env.client.Ready() || env.client.Certificate() == cert {
		t.Fatal("no new certificate once the service answered again")
	}
	env.certifier.setErr(errors.New("down again"))
	if got := env.refresh(); got != 750*time.Millisecond {
		t.Errorf("first wait after a success and a failure = %s, want the backoff reset to 750ms", got)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	for _, jitter := range []float64{0, 0.999999} {
		env := newTestEnv(t, func(o *Options) {
			o.Jitter = func() float64 { return jitter }
			o.MinBackoff = 100 * time.Millisecond
			o.MaxBackoff = time.Second
		})
		for n := 1; n <= 10; n++ {
			full := min(100*time.Millisecond<<(n-1), time.Second)
			got := env.client.backoff(n)
			if got < full/2 || got > full {
				t.Errorf("jitter %g: backoff(%d) = %s, want within [%s, %s]", jitter, n, got, full/2, full)
			}
		}
	}
}

func TestBadAnswersAreRefused(t *testing.T) {
	other, err := meshid.GenerateTrustAnchor(meshid.CAOptions{Clock: meshid.NewFakeClock(testNow)})
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, err := meshid.GenerateIssuer(other, meshid.CAOptions{Clock: meshid.NewFakeClock(testNow)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, env *testEnv) func(*identityv1.CertifyResponse)
		want   string
	}{
		{"garbage leaf", func(*testing.T, *testEnv) func(*identityv1.CertifyResponse) {
			return func(r *identityv1.CertifyResponse) { r.LeafCertificate = []byte("garbage") }
		}, "unreadable certificate"},
		{"untrusted issuer", func(*testing.T, *testEnv) func(*identityv1.CertifyResponse) {
			return nil
		}, "does not chain to the trust anchors"},
		{"another key", func(t *testing.T, env *testEnv) func(*identityv1.CertifyResponse) {
			key, err := meshid.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			csrDER, err := meshid.NewCSR(key, meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "a"})
			if err != nil {
				t.Fatal(err)
			}
			csr, _ := x509.ParseCertificateRequest(csrDER)
			leaf, err := env.certifier.issuer.Sign(csr, meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "a"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			return func(r *identityv1.CertifyResponse) { r.LeafCertificate = leaf.Raw }
		}, "certificate for another key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			if tt.name == "untrusted issuer" {
				env.certifier.issuer = otherIssuer
			}
			env.certifier.tamper = tt.tamper(t, env)
			cert, err := env.client.request(context.Background(), env.certifier)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("request = %v, %v; want an error containing %q", cert, err, tt.want)
			}
			env.refresh()
			if env.client.Certificate() != nil || env.client.Ready() {
				t.Error("a bad answer was taken")
			}
		})
	}
}

// A service that certifies the proxy's key for another identity is not believed.
func TestAnotherIdentityIsRefused(t *testing.T) {
	env := newTestEnv(t)
	issuer := env.certifier.issuer
	other := meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "b"}
	_, err := env.client.request(context.Background(), certifierFunc(func(req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
		csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
		if err != nil {
			return nil, err
		}
		// The signature covers the raw request, so renaming the parsed CSR passes Sign's checks.
		csr.URIs = []*url.URL{other.URL()}
		leaf, err := issuer.Sign(csr, other, 0)
		if err != nil {
			return nil, err
		}
		return &identityv1.CertifyResponse{LeafCertificate: leaf.Raw, IntermediateCertificates: [][]byte{issuer.Certificate.Raw}}, nil
	}))
	if err == nil || !strings.Contains(err.Error(), "peer is not the expected identity") {
		t.Fatalf("request = %v, want the identity mismatch refused", err)
	}
}

type certifierFunc func(*identityv1.CertifyRequest) (*identityv1.CertifyResponse, error)

func (f certifierFunc) Certify(_ context.Context, req *identityv1.CertifyRequest, _ ...grpc.CallOption) (*identityv1.CertifyResponse, error) {
	return f(req)
}

func TestTokenFileProblems(t *testing.T) {
	env := newTestEnv(t)
	if err := os.Remove(env.tokenFile); err != nil {
		t.Fatal(err)
	}
	if _, err := env.client.request(context.Background(), env.certifier); err == nil || !strings.Contains(err.Error(), "read the ServiceAccount token") {
		t.Errorf("request without a token file = %v", err)
	}
	env.writeToken(t, "  ")
	if _, err := env.client.request(context.Background(), env.certifier); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("request with an empty token file = %v", err)
	}
	env.writeToken(t, strings.Repeat("x", maxTokenBytes+1))
	if _, err := env.client.request(context.Background(), env.certifier); err == nil || !strings.Contains(err.Error(), "is over") {
		t.Errorf("request with a huge token file = %v", err)
	}
	if got := len(env.certifier.sentTokens()); got != 0 {
		t.Errorf("%d requests sent without a usable token", got)
	}
}

func TestNewClientValidates(t *testing.T) {
	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "a"}
	anchors := []*x509.Certificate{anchor.Certificate}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no identity", Options{TrustAnchors: anchors}, "the proxy's identity"},
		{"no anchors", Options{Identity: id}, "no trust anchors"},
		{"renew fraction", Options{Identity: id, TrustAnchors: anchors, RenewFraction: 1.5}, "renew fraction"},
		{"backoff", Options{Identity: id, TrustAnchors: anchors, MinBackoff: time.Minute, MaxBackoff: time.Second}, "backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewClient(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewClient = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	reg := prometheus.NewRegistry()
	if _, err := NewClient(Options{Identity: id, TrustAnchors: anchors, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(Options{Identity: id, TrustAnchors: anchors, Registerer: reg}); err == nil {
		t.Error("a second client registered the same gauge on one registry without an error")
	}
}

// fakeTimers is Options.After driven by a fake clock: a wait ends when the test advances
// the clock past it.
type fakeTimers struct {
	clock   *meshid.FakeClock
	mu      sync.Mutex
	waiting []fakeTimer
	asked   chan time.Duration
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeTimers(clock *meshid.FakeClock) *fakeTimers {
	return &fakeTimers{clock: clock, asked: make(chan time.Duration, 100)}
}

func (f *fakeTimers) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.waiting = append(f.waiting, fakeTimer{at: f.clock.Now().Add(d), ch: ch})
	f.asked <- d
	return ch
}

// advance moves the clock by d and fires the timers due.
func (f *fakeTimers) advance(d time.Duration) {
	f.clock.Advance(d)
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.waiting[:0]
	for _, tm := range f.waiting {
		if !tm.at.After(now) {
			tm.ch <- now
			continue
		}
		kept = append(kept, tm)
	}
	f.waiting = kept
}

// nextWait returns the duration of the next wait Run asks for.
func (f *fakeTimers) nextWait(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-f.asked:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not wait within 10s")
		return 0
	}
}

func TestRunRenewsAndRetriesWithFakeClock(t *testing.T) {
	var timers *fakeTimers
	env := newTestEnv(t, func(o *Options) {
		timers = newFakeTimers(o.Clock.(*meshid.FakeClock))
		o.After = timers.After
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.client.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after its context ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context ending")
		}
	}()

	renewIn := timers.nextWait(t)
	first := env.client.Certificate()
	if first == nil || renewIn < 16*time.Hour || renewIn > 17*time.Hour {
		t.Fatalf("after the first request: certificate %v, renewal in %s; want a certificate and ~16.8h", first != nil, renewIn)
	}
	env.certifier.setErr(status.Error(codes.Unavailable, "down"))
	timers.advance(renewIn)
	if d := timers.nextWait(t); d != 750*time.Millisecond {
		t.Fatalf("wait after a failed renewal = %s, want 750ms", d)
	}
	timers.advance(750 * time.Millisecond)
	if d := timers.nextWait(t); d != 1500*time.Millisecond {
		t.Fatalf("wait after a second failure = %s, want 1.5s", d)
	}
	if env.client.Certificate() != first || !env.client.Ready() {
		t.Fatal("the current certificate was not kept while renewal failed")
	}
	env.certifier.setErr(nil)
	timers.advance(1500 * time.Millisecond)
	if d := timers.nextWait(t); d < 16*time.Hour {
		t.Fatalf("wait after a successful renewal = %s, want ~16.8h", d)
	}
	if env.client.Certificate() == first {
		t.Fatal("the certificate was not renewed")
	}
}
