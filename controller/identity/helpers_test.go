package identity

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// testNow is the fake clock's start; whole seconds, as certificates store times.
var testNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

const testAudience = DefaultTokenAudience

// fakeReviewer answers TokenReviews from a table of tokens, as the API server would: a token
// is authenticated only for an audience it carries, and the audiences returned are the
// intersection of those asked for and the token's.
type fakeReviewer struct {
	mu     sync.Mutex
	tokens map[string]fakeToken
	err    error
	calls  int
}

type fakeToken struct {
	user      string
	audiences []string
	// unawareOfAudiences makes the review authenticate without confirming any audience, as
	// an authenticator that ignores audiences does.
	unawareOfAudiences bool
}

func newFakeReviewer() *fakeReviewer {
	return &fakeReviewer{tokens: map[string]fakeToken{}}
}

// add registers token as a token of ServiceAccount ns/sa for audiences (testAudience when none).
func (r *fakeReviewer) add(token, ns, sa string, audiences ...string) {
	if len(audiences) == 0 {
		audiences = []string{testAudience}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens[token] = fakeToken{user: "system:serviceaccount:" + ns + ":" + sa, audiences: audiences}
}

func (r *fakeReviewer) set(token string, t fakeToken) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens[token] = t
}

func (r *fakeReviewer) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *fakeReviewer) Review(_ context.Context, token, audience string) (TokenReview, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return TokenReview{}, r.err
	}
	t, ok := r.tokens[token]
	if !ok {
		return TokenReview{Error: "invalid bearer token"}, nil
	}
	if t.unawareOfAudiences {
		return TokenReview{Authenticated: true, Username: t.user}, nil
	}
	if !slices.Contains(t.audiences, audience) {
		return TokenReview{Error: "token audiences " + strings.Join(t.audiences, ",") + " is invalid for the target audiences " + audience}, nil
	}
	return TokenReview{Authenticated: true, Username: t.user, Audiences: []string{audience}}, nil
}

// fakeEvents records events.
type fakeEvents struct {
	mu     sync.Mutex
	events []recordedEvent
}

type recordedEvent struct{ eventType, reason, message string }

func (e *fakeEvents) Event(_ context.Context, eventType, reason, message string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, recordedEvent{eventType, reason, message})
	return nil
}

func (e *fakeEvents) list() []recordedEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

// testEnv is a service over a generated PKI, with a fake clock, reviewer and recorder.
type testEnv struct {
	clock    *meshid.FakeClock
	anchor   *meshid.TrustAnchor
	issuer   *meshid.Issuer
	dir      string
	reviewer *fakeReviewer
	events   *fakeEvents
	registry *prometheus.Registry
	svc      *Service
}

func newTestEnv(t testing.TB, mutate ...func(*Options)) *testEnv {
	t.Helper()
	clock := meshid.NewFakeClock(testNow)
	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{
		clock:    clock,
		anchor:   anchor,
		dir:      t.TempDir(),
		reviewer: newFakeReviewer(),
		events:   &fakeEvents{},
		registry: prometheus.NewRegistry(),
	}
	env.issuer = env.newIssuer(t, anchor)
	env.writeIssuer(t, env.issuer)
	writeFile(t, filepath.Join(env.dir, TrustAnchorsFile), anchor.CertificatePEM())
	env.reviewer.add("token-a", "ns1", "a")
	env.reviewer.add("token-b", "ns1", "b")
	opts := Options{
		IssuerDir:  env.dir,
		Reviewer:   env.reviewer,
		Events:     env.events,
		Clock:      clock,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: env.registry,
	}
	for _, m := range mutate {
		m(&opts)
	}
	env.svc, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (env *testEnv) newIssuer(t testing.TB, anchor *meshid.TrustAnchor) *meshid.Issuer {
	t.Helper()
	issuer, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{Clock: env.clock})
	if err != nil {
		t.Fatal(err)
	}
	return issuer
}

// writeIssuer replaces the issuer files with issuer's certificate and key.
func (env *testEnv) writeIssuer(t testing.TB, issuer *meshid.Issuer) {
	t.Helper()
	key, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(env.dir, IssuerCertFile), issuer.CertificatePEM())
	writeFile(t, filepath.Join(env.dir, IssuerKeyFile), key)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustID(t testing.TB, s string) meshid.SpiffeID {
	t.Helper()
	id, err := meshid.ParseSpiffeID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustCSR(t testing.TB, key crypto.Signer, id meshid.SpiffeID) []byte {
	t.Helper()
	der, err := meshid.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	key, err := meshid.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

const (
	idA = "spiffe://cluster.local/ns/ns1/sa/a"
	idB = "spiffe://cluster.local/ns/ns1/sa/b"
)

// request is a valid request of ServiceAccount a.
func (env *testEnv) request(t testing.TB) *identityv1.CertifyRequest {
	t.Helper()
	return &identityv1.CertifyRequest{
		Identity:                  idA,
		Token:                     []byte("token-a"),
		CertificateSigningRequest: mustCSR(t, mustKey(t), mustID(t, idA)),
	}
}

// verifyLeaf checks that resp holds a workload certificate for want that chains to anchors.
func verifyLeaf(t testing.TB, resp *identityv1.CertifyResponse, anchors []*x509.Certificate, clock meshid.Clock, want meshid.SpiffeID) *x509.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		t.Fatalf("parse leaf: %v", err)
	}
	chain := []*x509.Certificate{leaf}
	for _, der := range resp.GetIntermediateCertificates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parse intermediate: %v", err)
		}
		chain = append(chain, c)
	}
	verifier, err := meshid.NewVerifier(anchors, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verifier.VerifyIdentity(chain, usage, want); err != nil {
			t.Fatalf("the leaf does not verify as %s: %v", want, err)
		}
	}
	return leaf
}

// gaugeValue returns the value of the unlabelled metric name in g.
func gaugeValue(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			m := f.GetMetric()[0]
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

var errReviewDown = errors.New("connection refused")
