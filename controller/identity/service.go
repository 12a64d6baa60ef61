package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// Defaults and limits of the identity service.
const (
	// DefaultTokenAudience is the audience proxies' projected ServiceAccount tokens are made for.
	DefaultTokenAudience = "identity.lightmesh.io"
	// DefaultServingName is the DNS name of the identity service's own serving certificate.
	DefaultServingName = "identity.lightmesh.svc.cluster.local"
	// DefaultReloadInterval is how often the issuer files are read for changes.
	DefaultReloadInterval = 5 * time.Second
	// DefaultTokenReviewTimeout bounds one TokenReview call.
	DefaultTokenReviewTimeout = 10 * time.Second

	// MaxRequestBytes is the largest gRPC message the service accepts.
	MaxRequestBytes = 64 << 10
	// MaxCSRBytes is the largest CSR accepted. An ECDSA P-384 CSR with the longest SPIFFE ID
	// (2048 bytes) is about 2.4 KiB; a 16384-bit RSA CSR is over 4 KiB and is refused unparsed.
	MaxCSRBytes = 4 << 10
	// MaxTokenBytes is the largest token accepted; projected tokens are about 1 KiB.
	MaxTokenBytes = 16 << 10

	// Names of the issuer files in the issuer directory (a kubernetes.io/tls Secret).
	IssuerCertFile   = "tls.crt"
	IssuerKeyFile    = "tls.key"
	TrustAnchorsFile = "ca.crt"

	// renewFraction is the part of the serving certificate's life after which it is renewed.
	renewFraction = 0.7
)

// TokenReview is what the Kubernetes API server says of a token.
type TokenReview struct {
	// Authenticated is true when the token is valid for the audience asked for.
	Authenticated bool
	// Username is the token's user, system:serviceaccount:NS:SA for a ServiceAccount.
	Username string
	// Audiences are the audiences the API server confirmed: the ones both asked for and in
	// the token.
	Audiences []string
	// Error is the API server's reason for not authenticating the token.
	Error string
}

// TokenReviewer checks tokens; KubeTokenReviewer does it with the TokenReview API.
type TokenReviewer interface {
	Review(ctx context.Context, token, audience string) (TokenReview, error)
}

// EventRecorder records events about the controller; KubeEventRecorder creates them on the
// controller's Pod. eventType is "Normal" or "Warning".
type EventRecorder interface {
	Event(ctx context.Context, eventType, reason, message string) error
}

// Options configure a Service. Zero fields take the defaults named on each.
type Options struct {
	// TrustDomain of the identities issued; meshid.DefaultTrustDomain when empty.
	TrustDomain string
	// IssuerDir holds tls.crt (the issuer certificate, then any intermediates) and tls.key.
	IssuerDir string
	// TrustAnchorsFile is the PEM bundle of trust anchors; IssuerDir/ca.crt when empty.
	TrustAnchorsFile string
	// LeafLifetime is the validity of workload certificates; meshid.DefaultLeafLifetime when zero.
	LeafLifetime time.Duration
	// ClockSkew is how far in the past certificates' NotBefore is set;
	// meshid.DefaultClockSkewAllowance when zero.
	ClockSkew time.Duration
	// TokenAudience is the audience tokens must have; DefaultTokenAudience when empty.
	TokenAudience string
	// ServingName is the DNS name of the service's serving certificate; DefaultServingName
	// when empty.
	ServingName string
	// ReloadInterval is how often Watch reads the issuer files; DefaultReloadInterval when zero.
	ReloadInterval time.Duration
	// TokenReviewTimeout bounds each TokenReview; DefaultTokenReviewTimeout when zero.
	TokenReviewTimeout time.Duration
	// Reviewer checks tokens. Required.
	Reviewer TokenReviewer
	// Events records issuer reloads; nil records none (they are still logged).
	Events EventRecorder
	// Clock tells the time; nil means the system clock.
	Clock meshid.Clock
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.TrustDomain == "" {
		o.TrustDomain = meshid.DefaultTrustDomain
	}
	if o.TrustAnchorsFile == "" && o.IssuerDir != "" {
		o.TrustAnchorsFile = filepath.Join(o.IssuerDir, TrustAnchorsFile)
	}
	if o.LeafLifetime == 0 {
		o.LeafLifetime = meshid.DefaultLeafLifetime
	}
	if o.ClockSkew == 0 {
		o.ClockSkew = meshid.DefaultClockSkewAllowance
	}
	if o.TokenAudience == "" {
		o.TokenAudience = DefaultTokenAudience
	}
	if o.ServingName == "" {
		o.ServingName = DefaultServingName
	}
	if o.ReloadInterval == 0 {
		o.ReloadInterval = DefaultReloadInterval
	}
	if o.TokenReviewTimeout == 0 {
		o.TokenReviewTimeout = DefaultTokenReviewTimeout
	}
	if o.Clock == nil {
		o.Clock = meshid.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	if err := meshid.ValidateTrustDomain(o.TrustDomain); err != nil {
		return fmt.Errorf("trust domain: %w", err)
	}
	if o.IssuerDir == "" {
		return errors.New("no issuer directory given: pass the directory where the issuer Secret (tls.crt, tls.key) is mounted")
	}
	if o.LeafLifetime < time.Minute {
		return fmt.Errorf("leaf lifetime %s is too short: give at least 1m (the default is %s)", o.LeafLifetime, meshid.DefaultLeafLifetime)
	}
	if o.ClockSkew < 0 || o.ClockSkew >= o.LeafLifetime {
		return fmt.Errorf("clock skew allowance %s must be at least zero and shorter than the leaf lifetime %s", o.ClockSkew, o.LeafLifetime)
	}
	if o.ReloadInterval < 0 || o.TokenReviewTimeout < 0 {
		return errors.New("the reload interval and the token review timeout must be positive durations")
	}
	if strings.ContainsAny(o.ServingName, " /:") {
		return fmt.Errorf("serving name %q is not a DNS name: give the identity Service's DNS name, such as %s", o.ServingName, DefaultServingName)
	}
	if o.Reviewer == nil {
		return errors.New("no token reviewer given: the identity service needs one to check tokens")
	}
	return nil
}

// Service is the identity service: it implements identityv1.IdentityServer and keeps the
// issuer and its own serving certificate current. Create it with New.
type Service struct {
	identityv1.UnimplementedIdentityServer

	opts    Options
	log     *slog.Logger
	issuer  atomic.Pointer[loadedIssuer]
	serving atomic.Pointer[tls.Certificate]
	serves  atomic.Bool

	// reloadMu serialises Reload; lastFailed is the digest of the last content that failed to
	// load, so that one bad issuer is reported once, not on every poll.
	reloadMu   sync.Mutex
	lastFailed [32]byte

	requests *prometheus.CounterVec
	reloads  *prometheus.CounterVec
}

// New loads the issuer and trust anchors, issues the serving certificate and registers the
// metrics. It fails when the issuer cannot be loaded: the service never starts without one.
func New(opts Options) (*Service, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Service{
		opts: opts,
		log:  opts.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_certify_requests_total",
			Help: "Certify requests answered, by gRPC status code.",
		}, []string{"code"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_issuer_reloads_total",
			Help: "Changes of the issuer files seen, by result (loaded, rejected).",
		}, []string{"result"}),
	}
	loaded, err := s.readIssuer()
	if err != nil {
		return nil, fmt.Errorf("load the issuer: %w", err)
	}
	s.issuer.Store(loaded)
	if err := s.renewServingCertificate(loaded); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		ttl := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "issuer_cert_ttl_seconds",
			Help: "Seconds until the issuer certificate in use expires (negative once it has).",
		}, func() float64 {
			return s.issuer.Load().issuer.Certificate.NotAfter.Sub(s.opts.Clock.Now()).Seconds()
		})
		for _, c := range []prometheus.Collector{ttl, s.requests, s.reloads} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register identity metrics: %w", err)
			}
		}
	}
	s.log.Info("identity service ready to issue", "trustDomain", opts.TrustDomain,
		"issuer", loaded.issuer.Certificate.Subject.String(), "issuerNotAfter", loaded.issuer.Certificate.NotAfter.UTC())
	return s, nil
}

// Issuer returns the issuer in use.
func (s *Service) Issuer() *meshid.Issuer { return s.issuer.Load().issuer }

// TrustAnchors returns the trust anchors the issuer in use was checked against.
func (s *Service) TrustAnchors() []*x509.Certificate { return s.issuer.Load().anchors }

// Ready reports whether the service serves and its issuer is valid now.
func (s *Service) Ready() bool {
	cert := s.issuer.Load().issuer.Certificate
	now := s.opts.Clock.Now()
	return s.serves.Load() && !now.Before(cert.NotBefore) && !now.After(cert.NotAfter)
}

// Certify implements identityv1.IdentityServer.
func (s *Service) Certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	resp, err := s.certify(ctx, req)
	code := status.Code(err)
	s.requests.WithLabelValues(code.String()).Inc()
	if err != nil {
		level := slog.LevelInfo
		if code == codes.Internal || code == codes.FailedPrecondition || code == codes.Unavailable {
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "certify refused", "identity", truncate(req.GetIdentity(), 256), "code", code.String(), "reason", status.Convert(err).Message())
		return nil, err
	}
	s.log.Debug("certified", "identity", req.GetIdentity(), "validUntil", resp.GetValidUntil().AsTime())
	return resp, nil
}

func (s *Service) certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	token := req.GetToken()
	csrDER := req.GetCertificateSigningRequest()
	audience := s.opts.TokenAudience

	// Sizes first: nothing big is parsed.
	if len(csrDER) == 0 {
		return nil, status.Error(codes.InvalidArgument, "CSR check failed: the request has no certificate_signing_request; send a DER PKCS#10 CSR")
	}
	if len(csrDER) > MaxCSRBytes {
		return nil, status.Errorf(codes.InvalidArgument, "CSR check failed: the CSR is %d bytes, the limit is %d; use an ECDSA P-256 key (an RSA key is refused)", len(csrDER), MaxCSRBytes)
	}
	if len(token) == 0 {
		return nil, status.Errorf(codes.PermissionDenied, "token check failed: the request has no token; send the pod's projected ServiceAccount token with audience %q", audience)
	}
	if len(token) > MaxTokenBytes {
		return nil, status.Errorf(codes.PermissionDenied, "token check failed: the token is %d bytes, the limit is %d; send the pod's projected ServiceAccount token", len(token), MaxTokenBytes)
	}

	// The identity asked for.
	id, err := meshid.ParseSpiffeID(req.GetIdentity())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "identity check failed: %v", err)
	}
	if id.TrustDomain != s.opts.TrustDomain {
		return nil, status.Errorf(codes.PermissionDenied, "identity check failed: %s is not in this mesh's trust domain %q; ask for spiffe://%s/ns/<namespace>/sa/<serviceaccount>", id, s.opts.TrustDomain, s.opts.TrustDomain)
	}

	// The CSR's structure (its signature is checked when signing).
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR check failed: the CSR does not parse as DER PKCS#10 (%s); send a CSR as identity.NewCSR makes it", truncate(err.Error(), 160))
	}
	if err := checkCSRShape(csr, id); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR check failed: %v", err)
	}

	// The token.
	reviewCtx, cancel := context.WithTimeout(ctx, s.opts.TokenReviewTimeout)
	review, err := s.opts.Reviewer.Review(reviewCtx, string(token), audience)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "token check failed: the TokenReview could not be made: %v; retry later", err)
	}
	if !review.Authenticated {
		reason := review.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return nil, status.Errorf(codes.PermissionDenied, "token check failed: the token is not valid for audience %q: %s; mount a current projected ServiceAccount token with that audience", audience, reason)
	}
	if !slices.Contains(review.Audiences, audience) {
		return nil, status.Errorf(codes.PermissionDenied, "token check failed: the TokenReview confirmed audiences %q, not %q; use a token made for audience %q", review.Audiences, audience, audience)
	}
	namespace, serviceAccount, ok := parseServiceAccountUser(review.Username)
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "token check failed: the token is of user %q, not of a ServiceAccount; send the pod's projected ServiceAccount token", review.Username)
	}
	if namespace != id.Namespace || serviceAccount != id.ServiceAccount {
		return nil, status.Errorf(codes.PermissionDenied, "identity check failed: the token is of ServiceAccount %s/%s but the request asks for %s; ask for spiffe://%s/ns/%s/sa/%s", namespace, serviceAccount, id, id.TrustDomain, namespace, serviceAccount)
	}

	// Sign.
	loaded := s.issuer.Load()
	cert, err := loaded.issuer.Sign(csr, id, s.opts.LeafLifetime)
	switch {
	case errors.Is(err, meshid.ErrInvalidCSR):
		return nil, status.Errorf(codes.InvalidArgument, "CSR check failed: %v", err)
	case errors.Is(err, meshid.ErrIssuerExpired):
		return nil, status.Errorf(codes.FailedPrecondition, "the issuer cannot sign: %v", err)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "signing failed: %v", err)
	}
	return &identityv1.CertifyResponse{
		LeafCertificate:          cert.Raw,
		IntermediateCertificates: loaded.chain,
		ValidUntil:               timestamppb.New(cert.NotAfter),
	}, nil
}

// checkCSRShape does the cheap checks of the CSR before the TokenReview: the key type and
// the identity. meshid.Issuer.Sign repeats them, then checks the signature.
func checkCSRShape(csr *x509.CertificateRequest, id meshid.SpiffeID) error {
	key, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("the key is %s, not ECDSA; use ECDSA P-256 (identity.GenerateKey) or P-384", csr.PublicKeyAlgorithm)
	}
	if key.Curve != elliptic.P256() && key.Curve != elliptic.P384() {
		return fmt.Errorf("the ECDSA key is on curve %s; use P-256 (identity.GenerateKey) or P-384", key.Curve.Params().Name)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		uris := make([]string, len(csr.URIs))
		for i, u := range csr.URIs {
			uris[i] = truncate(u.String(), 256)
		}
		return fmt.Errorf("the CSR names %q but the request asks for %s; put exactly that identity in the CSR's one URI SAN", uris, id)
	}
	return nil
}

// parseServiceAccountUser splits system:serviceaccount:NS:SA.
func parseServiceAccountUser(user string) (namespace, serviceAccount string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, serviceAccount, ok = strings.Cut(rest, ":")
	if !ok || namespace == "" || serviceAccount == "" || strings.Contains(serviceAccount, ":") {
		return "", "", false
	}
	return namespace, serviceAccount, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
