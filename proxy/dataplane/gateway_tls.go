package dataplane

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// gatewayHandshakeTimeout bounds a TLS handshake on a gateway's HTTPS port.
const gatewayHandshakeTimeout = 10 * time.Second

// errNoGatewayCertificate fails a handshake for a server name no HTTPS server has a
// certificate for.
var errNoGatewayCertificate = errors.New("no certificate for this server name")

// serveGatewayTLS terminates TLS on a port of HTTPS Gateway servers: the certificate is the
// one of the server whose hosts match the client's SNI, read from the current gateway
// policy at each handshake (so a rotated Secret is served without a restart). A server
// whose Secret is missing or invalid has none: the handshake fails.
func (p *Proxy) serveGatewayTLS(ctx context.Context, c *net.TCPConn, g gatewayListener, ci *connInfo) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return p.gatewayTLSConfig(g, hello.ServerName)
		},
	}
	tc := tls.Server(p.meter(c, ci), cfg)
	hsCtx, cancel := context.WithTimeout(ctx, gatewayHandshakeTimeout)
	err := tc.HandshakeContext(hsCtx)
	cancel()
	if err != nil {
		p.log.Debug("gateway TLS handshake failed", "port", g.port, "remote", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		ci.h2 = true
		p.serveH2(tc, ci)
		return
	}
	p.h1.ServeConn(withConnInfo(ctx, ci), tc)
}

// gatewayTLSConfig is the server configuration for a client naming sni on g's port.
func (p *Proxy) gatewayTLSConfig(g gatewayListener, sni string) (*tls.Config, error) {
	l := p.opts.Gateway.policy().ListenerForSNI(g.port, sni)
	if l == nil {
		p.log.Debug("no HTTPS server for the server name", "port", g.port, "sni", sni)
		return nil, fmt.Errorf("%w %q on port %d", errNoGatewayCertificate, sni, g.port)
	}
	if l.TLS.Credential == nil {
		p.log.Warn("the HTTPS server has no certificate: the handshake fails", "gateway", l.Gateway, "port", g.port, "sni", sni, "credential", l.TLS.CredentialName, "reason", l.TLS.Error)
		return nil, fmt.Errorf("%w %q: %s", errNoGatewayCertificate, sni, l.TLS.Error)
	}
	cfg, err := g.certs.config(l.TLS)
	if err != nil {
		p.log.Warn("the HTTPS server's certificate is unusable: the handshake fails", "gateway", l.Gateway, "credential", l.TLS.CredentialName, "err", err)
		return nil, err
	}
	return cfg, nil
}

// credentialCache keeps the parsed TLS configuration of each credential, by content, so
// handshakes do not parse PEM; entries of credentials no longer served are dropped when the
// cache grows.
type credentialCache struct {
	mu      sync.Mutex
	configs map[[sha256.Size]byte]*tls.Config
}

// maxCachedCredentials bounds the cache; beyond it, it starts over.
const maxCachedCredentials = 64

func newCredentialCache() *credentialCache {
	return &credentialCache{configs: map[[sha256.Size]byte]*tls.Config{}}
}

// config returns the server configuration of t's credential.
func (c *credentialCache) config(t *policy.ListenerTLS) (*tls.Config, error) {
	cred := t.Credential
	key := sha256.Sum256([]byte(t.Mode + "\x00" + cred.CertChain + "\x00" + cred.PrivateKey + "\x00" + cred.CACert))
	c.mu.Lock()
	defer c.mu.Unlock()
	if cfg, ok := c.configs[key]; ok {
		return cfg, nil
	}
	cert, err := tls.X509KeyPair([]byte(cred.CertChain), []byte(cred.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", t.CredentialName, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if t.Mode == policy.GatewayTLSMutual {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cred.CACert)) {
			return nil, fmt.Errorf("credential %s: no CA certificate to verify clients with", t.CredentialName)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	if len(c.configs) >= maxCachedCredentials {
		clear(c.configs)
	}
	c.configs[key] = cfg
	return cfg, nil
}

// httpsRedirect answers 301 with the request's URL on https (Envoy's https_redirect: the
// default port, so the authority loses its port).
func httpsRedirect(ex *Exchange) {
	r := ex.R
	host := r.Host
	if host == "" {
		host = ex.Authority
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	location := "https://" + host + r.URL.RequestURI()
	h := ex.W.Header()
	h.Set("Location", location)
	h.Set("Content-Length", "0")
	ex.Status = http.StatusMovedPermanently
	ex.W.WriteHeader(http.StatusMovedPermanently)
}
