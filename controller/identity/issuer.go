package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// Reasons of the Kubernetes Events the service records.
const (
	EventIssuerUpdated  = "IssuerUpdated"
	EventIssuerRejected = "IssuerRejected"
)

// loadedIssuer is an issuer with the trust anchors it was checked against and the digest of
// the files it came from.
type loadedIssuer struct {
	issuer  *meshid.Issuer
	anchors []*x509.Certificate
	// chain is the issuer certificate and its intermediates in DER, as responses carry them.
	chain  [][]byte
	digest [32]byte
}

// issuerFiles is the content of the issuer and trust anchor files.
type issuerFiles struct {
	cert, key, anchors []byte
}

func (f issuerFiles) digest() [32]byte {
	h := sha256.New()
	for _, part := range [][]byte{f.cert, f.key, f.anchors} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func (s *Service) readFiles() (issuerFiles, error) {
	var f issuerFiles
	var err error
	if f.cert, err = os.ReadFile(filepath.Join(s.opts.IssuerDir, IssuerCertFile)); err != nil {
		return f, fmt.Errorf("read the issuer certificate: %w; mount the issuer Secret (tls.crt, tls.key) there", err)
	}
	if f.key, err = os.ReadFile(filepath.Join(s.opts.IssuerDir, IssuerKeyFile)); err != nil {
		return f, fmt.Errorf("read the issuer key: %w; mount the issuer Secret (tls.crt, tls.key) there", err)
	}
	if f.anchors, err = os.ReadFile(s.opts.TrustAnchorsFile); err != nil {
		return f, fmt.Errorf("read the trust anchors: %w; mount the trust anchor bundle there", err)
	}
	return f, nil
}

// readIssuer reads the files and loads the issuer they hold.
func (s *Service) readIssuer() (*loadedIssuer, error) {
	files, err := s.readFiles()
	if err != nil {
		return nil, err
	}
	return s.loadIssuer(files)
}

func (s *Service) loadIssuer(files issuerFiles) (*loadedIssuer, error) {
	anchors, err := meshid.ParseTrustAnchors(files.anchors)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.opts.TrustAnchorsFile, err)
	}
	issuer, err := meshid.LoadIssuer(files.cert, files.key, anchors, s.opts.Clock)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.opts.IssuerDir, err)
	}
	issuer.ClockSkewAllowance = s.opts.ClockSkew
	chain := make([][]byte, 0, 1+len(issuer.Intermediates))
	chain = append(chain, issuer.Certificate.Raw)
	for _, c := range issuer.Intermediates {
		chain = append(chain, c.Raw)
	}
	return &loadedIssuer{issuer: issuer, anchors: anchors, chain: chain, digest: files.digest()}, nil
}

// Reload reads the issuer files once. New content replaces the issuer when it loads and chains
// to the trust anchors; otherwise the issuer in use stays, and the first failure of that
// content is logged and recorded as an Event. It also renews the serving certificate when due.
// It returns the error of content that does not load.
func (s *Service) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	current := s.issuer.Load()
	files, err := s.readFiles()
	if err == nil && files.digest() == current.digest {
		return s.renewServingIfDue(current)
	}
	var loaded *loadedIssuer
	if err == nil {
		loaded, err = s.loadIssuer(files)
	}
	if err != nil {
		// A read error has no content to remember; key it by its message.
		failed := files.digest()
		if files.cert == nil || files.key == nil || files.anchors == nil {
			failed = sha256.Sum256([]byte(err.Error()))
		}
		if failed != s.lastFailed {
			s.lastFailed = failed
			s.reloads.WithLabelValues("rejected").Inc()
			msg := fmt.Sprintf("kept the issuer %s (serial %x, valid until %s): the new issuer files are not usable: %v",
				current.issuer.Certificate.Subject, current.issuer.Certificate.SerialNumber, current.issuer.Certificate.NotAfter.UTC().Format(time.RFC3339), err)
			s.log.Error("new issuer rejected, keeping the current one", "error", err,
				"currentIssuerSerial", fmt.Sprintf("%x", current.issuer.Certificate.SerialNumber))
			s.recordEvent(ctx, "Warning", EventIssuerRejected, msg)
		}
		if rerr := s.renewServingIfDue(current); rerr != nil {
			s.log.Error("renew the serving certificate", "error", rerr)
		}
		return err
	}
	s.lastFailed = [32]byte{}
	s.issuer.Store(loaded)
	s.reloads.WithLabelValues("loaded").Inc()
	cert := loaded.issuer.Certificate
	s.log.Info("loaded a new issuer", "issuer", cert.Subject.String(), "serial", fmt.Sprintf("%x", cert.SerialNumber),
		"notAfter", cert.NotAfter.UTC())
	s.recordEvent(ctx, "Normal", EventIssuerUpdated, fmt.Sprintf("loaded the issuer %s (serial %x, valid until %s)",
		cert.Subject, cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339)))
	return s.renewServingCertificate(loaded)
}

func (s *Service) recordEvent(ctx context.Context, eventType, reason, message string) {
	if s.opts.Events == nil {
		return
	}
	if err := s.opts.Events.Event(ctx, eventType, reason, message); err != nil {
		s.log.Warn("could not record an event", "reason", reason, "error", err)
	}
}

// Watch calls Reload on every tick until ctx ends. Errors are logged by Reload.
func (s *Service) Watch(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			_ = s.Reload(ctx)
		}
	}
}

// TLSConfig is the server TLS configuration: the serving certificate, renewed in place.
func (s *Service) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.serving.Load(), nil
		},
	}
}

// ServingCertificate returns the serving certificate in use.
func (s *Service) ServingCertificate() *tls.Certificate { return s.serving.Load() }

func (s *Service) renewServingIfDue(loaded *loadedIssuer) error {
	now := s.opts.Clock.Now()
	cur := s.serving.Load()
	if cur != nil {
		leaf := cur.Leaf
		renewAt := leaf.NotBefore.Add(time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * renewFraction))
		if now.Before(renewAt) {
			return nil
		}
	}
	if !now.Before(loaded.issuer.Certificate.NotAfter) {
		// Nothing valid can be issued; /ready and issuer_cert_ttl_seconds tell.
		return fmt.Errorf("the issuer expired at %s: the serving certificate cannot be renewed; rotate the issuer",
			loaded.issuer.Certificate.NotAfter.UTC().Format(time.RFC3339))
	}
	return s.renewServingCertificate(loaded)
}

// renewServingCertificate issues the serving certificate from loaded: the DNS name
// ServingName, serverAuth, valid as long as a workload certificate.
func (s *Service) renewServingCertificate(loaded *loadedIssuer) error {
	cert, err := issueServingCertificate(loaded, s.opts.ServingName, s.opts.LeafLifetime, s.opts.ClockSkew, s.opts.Clock.Now())
	if err != nil {
		return err
	}
	s.serving.Store(cert)
	s.log.Info("issued the serving certificate", "name", s.opts.ServingName, "notAfter", cert.Leaf.NotAfter.UTC())
	return nil
}

func issueServingCertificate(loaded *loadedIssuer, name string, lifetime, skew time.Duration, now time.Time) (*tls.Certificate, error) {
	key, err := meshid.GenerateKey()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serving certificate serial: %w", err)
	}
	issuer := loaded.issuer.Certificate
	notBefore := now.Add(-skew)
	if notBefore.Before(issuer.NotBefore) {
		notBefore = issuer.NotBefore
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	template := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuer, key.Public(), loaded.issuer.Key)
	if err != nil {
		return nil, fmt.Errorf("issue the serving certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the serving certificate: %w", err)
	}
	return &tls.Certificate{Certificate: append([][]byte{der}, loaded.chain...), PrivateKey: key, Leaf: leaf}, nil
}
