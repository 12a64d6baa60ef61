package meshtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// The ALPN protocols of connections between proxies.
const (
	ALPNHTTP2 = "lightmesh.h2"
	ALPNHTTP1 = "lightmesh.http1"
	ALPNTCP   = "lightmesh.tcp"
)

// serverALPNs are the protocols the inbound side accepts, in its order of preference.
var serverALPNs = []string{ALPNHTTP2, ALPNHTTP1, ALPNTCP}

// IsMeshALPN reports whether proto is one of the proxy-to-proxy protocols.
func IsMeshALPN(proto string) bool {
	return proto == ALPNHTTP2 || proto == ALPNHTTP1 || proto == ALPNTCP
}

// Source is where the proxy's workload certificate and the mesh's trust anchors come from.
// FileSource reads them from PEM files; the identity client (proxy/identity) gets them from
// the controller. Implementations are safe for concurrent use and may change what they return
// at any time (renewal, rotation); the proxy asks on every handshake.
type Source interface {
	// Certificate returns the workload certificate, its chain up to (not including) the trust
	// anchor, and its private key; nil when there is none yet.
	Certificate() *tls.Certificate
	// TrustAnchors returns the pool of trust anchors peers must chain to; nil when unknown.
	TrustAnchors() *x509.CertPool
	// Ready reports whether Certificate returns a certificate the proxy may use.
	Ready() bool
}

// ErrHandshake is wrapped by every failed client handshake.
var ErrHandshake = errors.New("mesh TLS handshake failed")

// ErrNoCertificate means the Source has no certificate yet.
var ErrNoCertificate = errors.New("no workload certificate yet")

// SNI returns the TLS server name that stands for id, as Linkerd derives it:
// <serviceaccount>.<namespace>.serviceaccount.identity.lightmesh.<trust-domain>. Every part
// must be a valid DNS name part (lower-case letters, digits, '-', and '.' in the trust domain
// and service account), else id cannot be named in SNI and the connection must not be made.
func SNI(id identity.SpiffeID) (string, error) {
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("sni: %w", err)
	}
	for _, part := range []struct{ what, value string }{
		{"service account", id.ServiceAccount}, {"namespace", id.Namespace}, {"trust domain", id.TrustDomain},
	} {
		if !isDNSName(part.value, part.what != "namespace") {
			return "", fmt.Errorf("sni: the %s %q of %s is not a DNS name (lower-case letters, digits, '-'); the proxy cannot name it in TLS", part.what, part.value, id)
		}
	}
	return id.ServiceAccount + "." + id.Namespace + ".serviceaccount.identity.lightmesh." + id.TrustDomain, nil
}

func isDNSName(s string, dotsAllowed bool) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
		if !dotsAllowed && label != s {
			return false
		}
	}
	return true
}

// Options configure a TLS.
type Options struct {
	// Source gives the certificate and trust anchors. Required.
	Source Source
	// TrustDomain is the only trust domain peers may belong to; identity.DefaultTrustDomain
	// when empty.
	TrustDomain string
	// Clock tells the time when verifying peers; nil means the system clock.
	Clock identity.Clock
}

func (o *Options) validate() error {
	if o.Source == nil {
		return errors.New("meshtls: no certificate source given; pass a FileSource or the identity client")
	}
	if o.TrustDomain == "" {
		o.TrustDomain = identity.DefaultTrustDomain
	}
	if err := identity.ValidateTrustDomain(o.TrustDomain); err != nil {
		return fmt.Errorf("meshtls: %w", err)
	}
	if o.Clock == nil {
		o.Clock = identity.SystemClock{}
	}
	return nil
}

// TLS makes and checks mutual TLS connections between proxies. It is safe for concurrent use.
type TLS struct {
	opts   Options
	server *tls.Config
}

// New returns a TLS for opts.
func New(opts Options) (*TLS, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	t := &TLS{opts: opts}
	t.server = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             serverALPNs,
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.certificate()
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := t.VerifyPeer(raw, x509.ExtKeyUsageClientAuth)
			return err
		},
	}
	return t, nil
}

// Ready reports whether the source has a certificate.
func (t *TLS) Ready() bool { return t.opts.Source.Ready() }

// Problem says why the proxy holds no valid certificate ("" when it holds one), for /ready.
func (t *TLS) Problem() string {
	cert := t.opts.Source.Certificate()
	now := t.opts.Clock.Now()
	switch {
	case cert == nil:
		return "no workload certificate yet: is the identity service reachable?"
	case cert.Leaf == nil:
		return ""
	case !now.Before(cert.Leaf.NotAfter):
		return fmt.Sprintf("the workload certificate expired at %s and is not renewed yet: is the identity service reachable?", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.Leaf.NotBefore):
		return fmt.Sprintf("the workload certificate is not valid before %s: is this node's clock right?", cert.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return ""
}

// Certificate returns the proxy's current certificate and chain, or ErrNoCertificate.
func (t *TLS) Certificate() (*tls.Certificate, error) { return t.certificate() }

func (t *TLS) certificate() (*tls.Certificate, error) {
	cert := t.opts.Source.Certificate()
	if cert == nil {
		return nil, fmt.Errorf("%w: the proxy has not obtained its certificate (is the identity service reachable, are the identity files there?)", ErrNoCertificate)
	}
	return cert, nil
}

// LocalIdentity returns the SPIFFE ID of the proxy's own certificate.
func (t *TLS) LocalIdentity() (identity.SpiffeID, error) {
	cert, err := t.certificate()
	if err != nil {
		return identity.SpiffeID{}, err
	}
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return identity.SpiffeID{}, fmt.Errorf("%w: the certificate chain is empty", ErrNoCertificate)
		}
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return identity.SpiffeID{}, fmt.Errorf("parse the proxy's certificate: %w", err)
		}
	}
	return identity.SpiffeIDFromCertificate(leaf)
}

// VerifyPeer checks a peer's chain (leaf first, as TLS presents it) for usage
// (x509.ExtKeyUsageServerAuth for a server, ExtKeyUsageClientAuth for a client) and returns
// its identity. The leaf must be an X509-SVID of the trust domain, every certificate valid
// now, and the chain must lead to one of the source's trust anchors. It applies the rules of
// identity.Verifier to a certificate pool, which is what a Source offers.
func (t *TLS) VerifyPeer(raw [][]byte, usage x509.ExtKeyUsage) (identity.SpiffeID, error) {
	if len(raw) == 0 {
		return identity.SpiffeID{}, fmt.Errorf("%w: the peer must present its workload certificate", identity.ErrNoPeerCertificate)
	}
	roots := t.opts.Source.TrustAnchors()
	if roots == nil {
		return identity.SpiffeID{}, errors.New("no trust anchors yet: the proxy cannot verify peers until it has them")
	}
	chain := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return identity.SpiffeID{}, fmt.Errorf("parse peer certificate %d: %w", i+1, err)
		}
		chain[i] = cert
	}
	leaf := chain[0]
	id, err := identity.SpiffeIDFromCertificate(leaf)
	if err != nil {
		return identity.SpiffeID{}, err
	}
	switch {
	case leaf.IsCA:
		return identity.SpiffeID{}, fmt.Errorf("%s: %w", id, identity.ErrLeafIsCA)
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return identity.SpiffeID{}, fmt.Errorf("%s: %w", id, identity.ErrLeafCanSign)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return identity.SpiffeID{}, fmt.Errorf("%s: %w", id, identity.ErrLeafKeyUsage)
	}
	now := t.opts.Clock.Now()
	for _, cert := range chain {
		if now.Before(cert.NotBefore) {
			return identity.SpiffeID{}, fmt.Errorf("%s: %w (valid from %s); the clocks disagree", id, identity.ErrNotYetValid, cert.NotBefore.UTC().Format("2006-01-02T15:04:05Z"))
		}
		if now.After(cert.NotAfter) {
			return identity.SpiffeID{}, fmt.Errorf("%s: %w (at %s); the peer must renew its certificate", id, identity.ErrExpired, cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		}
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return identity.SpiffeID{}, fmt.Errorf("%s: %w: %w", id, identity.ErrUntrusted, err)
	}
	if id.TrustDomain != t.opts.TrustDomain {
		return identity.SpiffeID{}, fmt.Errorf("%w: %s is not in trust domain %q", identity.ErrWrongTrustDomain, id, t.opts.TrustDomain)
	}
	return id, nil
}

// ClientConfig returns the configuration of a connection to the proxy of server, offering
// alpn: server's SNI, the proxy's certificate, and a check that the server is server.
func (t *TLS) ClientConfig(server identity.SpiffeID, alpn string) (*tls.Config, error) {
	sni, err := SNI(server)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: sni,
		NextProtos: []string{alpn},
		// The standard verification knows nothing of SPIFFE IDs; VerifyPeerCertificate
		// does all of it and fails closed.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return t.certificate()
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			got, err := t.VerifyPeer(raw, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return identity.MatchIdentity(got, server)
		},
	}, nil
}

// Conn is a client mesh connection and the moment it must end by: the earlier expiry of the
// two certificates of its handshake, the server's leaf and the one this proxy presented.
type Conn struct {
	*tls.Conn
	NotAfter time.Time
}

// Client performs the client handshake on conn with server's proxy, offering alpn. It
// returns the TLS connection, or an error after closing conn.
func (t *TLS) Client(ctx context.Context, conn net.Conn, server identity.SpiffeID, alpn string) (*Conn, error) {
	cfg, err := t.ClientConfig(server, alpn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Remember the certificate presented: a renewal during the handshake must not lengthen
	// the connection's life beyond it.
	var presented *tls.Certificate
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cert, err := t.certificate()
		presented = cert
		return cert, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w with %s at %s: %w", ErrHandshake, server, conn.RemoteAddr(), err)
	}
	state := tc.ConnectionState()
	if got := state.NegotiatedProtocol; got != alpn {
		tc.Close()
		return nil, fmt.Errorf("%w with %s at %s: it chose protocol %q, not %q; is it a lightmesh proxy of this version?", ErrHandshake, server, conn.RemoteAddr(), got, alpn)
	}
	notAfter := Expiry(state, presented)
	if !notAfter.IsZero() && !t.opts.Clock.Now().Before(notAfter) {
		// This proxy's own certificate has expired (the peer's was verified): the server
		// refuses it once it reads it, which TLS 1.3 lets happen after the client is done.
		tc.Close()
		return nil, fmt.Errorf("%w with %s at %s: this proxy's certificate expired at %s; it is renewed when the identity service answers", ErrHandshake, server, conn.RemoteAddr(), notAfter.UTC().Format(time.RFC3339))
	}
	return &Conn{Conn: tc, NotAfter: notAfter}, nil
}

// Expiry returns when a mesh connection must end: the earlier NotAfter of the peer's leaf
// and of local, the certificate this proxy presented (nil: the peer's alone). It is the zero
// time when neither is known.
func Expiry(state tls.ConnectionState, local *tls.Certificate) time.Time {
	var at time.Time
	if len(state.PeerCertificates) > 0 {
		at = state.PeerCertificates[0].NotAfter
	}
	if local != nil && local.Leaf != nil && (at.IsZero() || local.Leaf.NotAfter.Before(at)) {
		at = local.Leaf.NotAfter
	}
	return at
}

// ServerConfig returns the configuration of the inbound side: TLS 1.3, the proxy's
// certificate, a required client certificate verified against the trust anchors, and the
// mesh ALPN protocols.
func (t *TLS) ServerConfig() *tls.Config { return t.server }

// PeerIdentity returns the identity of the verified peer of a finished handshake.
func PeerIdentity(cs tls.ConnectionState) (identity.SpiffeID, error) {
	if len(cs.PeerCertificates) == 0 {
		return identity.SpiffeID{}, identity.ErrNoPeerCertificate
	}
	return identity.SpiffeIDFromCertificate(cs.PeerCertificates[0])
}
