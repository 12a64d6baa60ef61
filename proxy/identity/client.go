// Package identity is the proxy's identity client: it obtains the proxy's workload
// certificate from the controller's identity service and keeps it renewed.
//
// The client generates an ECDSA P-256 key in memory (a new one for every request; it never
// touches the disk), makes a CSR naming the proxy's SPIFFE ID and sends it to the identity
// service's Certify over TLS, with the pod's projected ServiceAccount token (audience
// identity.lightmesh.io), which it reads from a file on every attempt because the kubelet
// rotates it. The service's certificate is verified with nothing but the trust anchors and the
// service's DNS name. Each certificate received is checked before use: it must be for the
// proxy's key and identity and chain to the trust anchors.
//
// It renews at 70 % of the certificate's life. A failed attempt is retried with exponential
// backoff (1 s doubling to 1 min, each wait drawn between half and all of that, so that proxies
// restarted together spread out); meanwhile the current certificate stays in use. The expiry of
// the certificate in use is the gauge identity_cert_expiration_timestamp_seconds (Unix seconds).
// The client never imports client-go: the proxy talks to the controller only.
//
// Use:
//
//	client, err := identity.NewClient(identity.Options{
//		Addr:         "identity.lightmesh.svc.cluster.local:8080",
//		Identity:     id, // spiffe://cluster.local/ns/NS/sa/SA of the pod
//		TokenFile:    "/var/run/lightmesh/identity/token",
//		TrustAnchors: anchors,
//		Registerer:   registry,
//	})
//	go client.Run(ctx)
//	tlsConfig := &tls.Config{GetCertificate: client.GetCertificate, ...}
//
// Ready reports whether the client holds a certificate that is valid now: the proxy's /ready
// answers 200 only then.
package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/internal/controlconn"
)

// Defaults of the client.
const (
	DefaultAddr           = "identity.lightmesh.svc.cluster.local:8080"
	DefaultServerName     = "identity.lightmesh.svc.cluster.local"
	DefaultTokenFile      = "/var/run/lightmesh/identity/token"
	DefaultRenewFraction  = 0.7
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = time.Minute
	DefaultRequestTimeout = 10 * time.Second

	// maxResponseBytes bounds the identity service's answer (a leaf and its issuer are ~1.5 KiB).
	maxResponseBytes = 64 << 10
	// maxTokenBytes bounds the token file read.
	maxTokenBytes = 16 << 10
)

// Certifier is what the client calls: identityv1.IdentityClient, or a fake in tests.
type Certifier interface {
	Certify(ctx context.Context, req *identityv1.CertifyRequest, opts ...grpc.CallOption) (*identityv1.CertifyResponse, error)
}

// Options configure a Client. Zero fields take the defaults named on each.
type Options struct {
	// Addr is the identity service, host:port; DefaultAddr when empty.
	Addr string
	// ServerName is the DNS name the service's certificate must have; DefaultServerName when empty.
	ServerName string
	// Identity is the proxy's SPIFFE ID, the one of its pod's ServiceAccount. Required.
	Identity meshid.SpiffeID
	// TokenFile holds the projected ServiceAccount token; DefaultTokenFile when empty.
	TokenFile string
	// TrustAnchors are the mesh's trust anchors. Required.
	TrustAnchors []*x509.Certificate
	// RenewFraction is the part of a certificate's life after which it is renewed;
	// DefaultRenewFraction when zero.
	RenewFraction float64
	// MinBackoff and MaxBackoff bound the wait between failed attempts; DefaultMinBackoff
	// and DefaultMaxBackoff when zero.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one Certify call; DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
	// Certifier is called instead of dialing Addr (tests).
	Certifier Certifier
	// Clock tells the time; nil means the system clock.
	Clock meshid.Clock
	// After waits: it returns a channel that receives after d. nil means time.After. A test
	// gives one driven by its fake clock.
	After func(d time.Duration) <-chan time.Time
	// Jitter returns a number in [0, 1) that spreads backoff waits; nil means math/rand/v2.
	Jitter func() float64
	// Registerer receives the identity_cert_expiration_timestamp_seconds gauge; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives the client's logs; nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.ServerName == "" {
		o.ServerName = DefaultServerName
	}
	if o.TokenFile == "" {
		o.TokenFile = DefaultTokenFile
	}
	if o.RenewFraction == 0 {
		o.RenewFraction = DefaultRenewFraction
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Clock == nil {
		o.Clock = meshid.SystemClock{}
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if err := o.Identity.Validate(); err != nil {
		return fmt.Errorf("identity client: the proxy's identity: %w", err)
	}
	if len(o.TrustAnchors) == 0 {
		return errors.New("identity client: no trust anchors given: pass the mesh's trust anchor bundle")
	}
	if o.RenewFraction <= 0 || o.RenewFraction >= 1 {
		return fmt.Errorf("identity client: renew fraction %g must be between 0 and 1 (the default is %g)", o.RenewFraction, DefaultRenewFraction)
	}
	if o.MinBackoff <= 0 || o.MaxBackoff < o.MinBackoff {
		return fmt.Errorf("identity client: backoff %s..%s: give 0 < min <= max", o.MinBackoff, o.MaxBackoff)
	}
	if o.RequestTimeout < 0 {
		return errors.New("identity client: the request timeout must be positive")
	}
	return nil
}

// Client obtains and renews the proxy's certificate. Create it with NewClient and start Run;
// Certificate, Ready and TrustAnchors are safe for concurrent use.
type Client struct {
	opts     Options
	log      *slog.Logger
	verifier *meshid.Verifier
	pool     *x509.CertPool
	cert     atomic.Pointer[tls.Certificate]
	expiry   prometheus.Gauge
	// failures counts the attempts that failed since the last success; Run's goroutine only.
	failures int
}

// NewClient checks opts and registers the expiry gauge. It does not connect: Run does.
func NewClient(opts Options) (*Client, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	verifier, err := meshid.NewVerifier(opts.TrustAnchors, opts.Identity.TrustDomain, opts.Clock)
	if err != nil {
		return nil, fmt.Errorf("identity client: %w", err)
	}
	pool := x509.NewCertPool()
	for _, anchor := range opts.TrustAnchors {
		pool.AddCert(anchor)
	}
	c := &Client{
		opts:     opts,
		log:      opts.Logger.With("identity", opts.Identity.String()),
		verifier: verifier,
		pool:     pool,
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "identity_cert_expiration_timestamp_seconds",
			Help: "Expiry (Unix seconds) of the proxy's workload certificate; 0 until it has one.",
		}),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(c.expiry); err != nil {
			return nil, fmt.Errorf("identity client: register metrics: %w", err)
		}
	}
	return c, nil
}

// Identity returns the proxy's identity.
func (c *Client) Identity() meshid.SpiffeID { return c.opts.Identity }

// TrustAnchors returns the trust anchors as a pool, for verifying peers and the service.
func (c *Client) TrustAnchors() *x509.CertPool { return c.pool }

// Verifier returns a verifier of peers' workload certificates against the trust anchors.
func (c *Client) Verifier() *meshid.Verifier { return c.verifier }

// Certificate returns the certificate in use, with its intermediates and key, or nil before
// the first one arrived. Once one arrived it is never nil: a certificate that could not be
// renewed stays in use (Ready turns false when it expires).
func (c *Client) Certificate() *tls.Certificate { return c.cert.Load() }

// GetCertificate is for tls.Config.GetCertificate: the certificate in use, or an error
// before there is one.
func (c *Client) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current()
}

// GetClientCertificate is for tls.Config.GetClientCertificate.
func (c *Client) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.current()
}

func (c *Client) current() (*tls.Certificate, error) {
	cert := c.cert.Load()
	if cert == nil {
		return nil, errors.New("the proxy has no certificate yet: it is waiting for the identity service")
	}
	return cert, nil
}

// Ready reports whether the client holds a certificate that is valid now.
func (c *Client) Ready() bool {
	cert := c.cert.Load()
	if cert == nil {
		return false
	}
	now := c.opts.Clock.Now()
	return !now.Before(cert.Leaf.NotBefore) && now.Before(cert.Leaf.NotAfter)
}

// Run obtains a certificate, then renews it at RenewFraction of its life, retrying failures
// with backoff, until ctx ends. It dials Addr unless Options.Certifier is set. It returns nil
// when ctx ends, or the error of a dial that cannot even be set up.
func (c *Client) Run(ctx context.Context) error {
	certifier := c.opts.Certifier
	var readiness *controlconn.Readiness
	if certifier == nil {
		conn, err := c.dial()
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		certifier = identityv1.NewIdentityClient(conn)
		readiness = controlconn.Watch(ctx, conn)
	}
	for {
		ready := readiness.Next()
		wait := c.refresh(ctx, certifier)
		var again <-chan struct{}
		if c.failures > 0 {
			// A failed attempt is made again as soon as the identity service is reachable
			// (the controller is back), not only after the backoff.
			again = ready
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.opts.After(wait):
		case <-again:
		}
	}
}

func (c *Client) dial() (*grpc.ClientConn, error) {
	creds := credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.pool,
		ServerName: c.opts.ServerName,
	})
	conn, err := grpc.NewClient(c.opts.Addr, append(controlconn.DialOptions(),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)))...)
	if err != nil {
		return nil, fmt.Errorf("identity client: connect to %s: %w", c.opts.Addr, err)
	}
	return conn, nil
}

// refresh makes one attempt and returns how long to wait before the next one.
func (c *Client) refresh(ctx context.Context, certifier Certifier) time.Duration {
	cert, err := c.request(ctx, certifier)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		c.failures++
		wait := c.backoff(c.failures)
		attrs := []any{"error", err, "attempt", c.failures, "retryIn", wait}
		if cur := c.cert.Load(); cur != nil {
			attrs = append(attrs, "keepingCertificateValidUntil", cur.Leaf.NotAfter.UTC())
		}
		c.log.Warn("could not get a certificate from the identity service", attrs...)
		return wait
	}
	c.failures = 0
	c.cert.Store(cert)
	c.expiry.Set(float64(cert.Leaf.NotAfter.Unix()))
	wait := c.untilRenewal(cert.Leaf)
	c.log.Info("got a certificate", "notAfter", cert.Leaf.NotAfter.UTC(), "renewIn", wait)
	return wait
}

// untilRenewal is the wait until RenewFraction of leaf's life; at least MinBackoff.
func (c *Client) untilRenewal(leaf *x509.Certificate) time.Duration {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	renewAt := leaf.NotBefore.Add(time.Duration(float64(life) * c.opts.RenewFraction))
	return max(renewAt.Sub(c.opts.Clock.Now()), c.opts.MinBackoff)
}

// backoff is the wait after the n-th failure in a row: MinBackoff doubled n-1 times, capped
// at MaxBackoff, then drawn between half and all of that.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff
	for i := 1; i < n && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return d/2 + time.Duration(c.opts.Jitter()*float64(d/2))
}

// request makes a key and CSR, sends them with the current token and checks the answer.
func (c *Client) request(ctx context.Context, certifier Certifier) (*tls.Certificate, error) {
	token, err := readToken(c.opts.TokenFile)
	if err != nil {
		return nil, err
	}
	key, err := meshid.GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := meshid.NewCSR(key, c.opts.Identity)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := certifier.Certify(callCtx, &identityv1.CertifyRequest{
		Identity:                  c.opts.Identity.String(),
		Token:                     token,
		CertificateSigningRequest: csr,
	})
	if err != nil {
		return nil, fmt.Errorf("certify: %w", err)
	}
	return c.check(resp, key)
}

// check turns resp into a tls.Certificate after checking it is for key and the proxy's
// identity, and chains to the trust anchors.
func (c *Client) check(resp *identityv1.CertifyResponse, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		return nil, fmt.Errorf("the identity service answered with an unreadable certificate: %w", err)
	}
	chain := []*x509.Certificate{leaf}
	raw := [][]byte{leaf.Raw}
	for i, der := range resp.GetIntermediateCertificates() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("the identity service answered with an unreadable intermediate certificate %d: %w", i+1, err)
		}
		chain = append(chain, cert)
		raw = append(raw, der)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("the identity service answered with a certificate for another key; check the identity service's address")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := c.verifier.VerifyIdentity(chain, usage, c.opts.Identity); err != nil {
			return nil, fmt.Errorf("the certificate from the identity service is not usable: %w", err)
		}
	}
	return &tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf}, nil
}

func readToken(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read the ServiceAccount token: %w; mount a projected token with audience identity.lightmesh.io there", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the ServiceAccount token %s: %w", file, err)
	}
	if len(data) > maxTokenBytes {
		return nil, fmt.Errorf("the ServiceAccount token %s is over %d bytes: mount a projected ServiceAccount token there", file, maxTokenBytes)
	}
	token := bytes.TrimSpace(data)
	if len(token) == 0 {
		return nil, fmt.Errorf("the ServiceAccount token %s is empty: mount a projected token with audience identity.lightmesh.io there", file)
	}
	return token, nil
}
