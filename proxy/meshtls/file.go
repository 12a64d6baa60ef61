package meshtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// Default file names in FileSourceOptions.Dir: those of a Kubernetes TLS secret with a CA.
const (
	DefaultCertFile    = "tls.crt"
	DefaultKeyFile     = "tls.key"
	DefaultAnchorsFile = "ca.crt"
	// DefaultReloadInterval is how often FileSource.Run looks for changed files.
	DefaultReloadInterval = 10 * time.Second
)

// FileSourceOptions configure a FileSource.
type FileSourceOptions struct {
	// Dir holds the three files. Required unless every file is an absolute path.
	Dir string
	// CertFile is the PEM workload certificate followed by its intermediates (DefaultCertFile).
	CertFile string
	// KeyFile is the PEM private key of the certificate (DefaultKeyFile).
	KeyFile string
	// AnchorsFile is the PEM bundle of trust anchors (DefaultAnchorsFile).
	AnchorsFile string
	// ReloadInterval is how often Run checks the files for changes (DefaultReloadInterval).
	ReloadInterval time.Duration
	// Clock tells the time for validity checks; nil means the system clock.
	Clock identity.Clock
	// Logger receives reload messages; nil means slog.Default().
	Logger *slog.Logger
}

func (o *FileSourceOptions) validate() error {
	def := func(name *string, value string) {
		if *name == "" {
			*name = value
		}
		if !filepath.IsAbs(*name) {
			*name = filepath.Join(o.Dir, *name)
		}
	}
	if o.Dir == "" && (!filepath.IsAbs(o.CertFile) || !filepath.IsAbs(o.KeyFile) || !filepath.IsAbs(o.AnchorsFile)) {
		return errors.New("file identity: no directory given; set the folder holding tls.crt, tls.key and ca.crt")
	}
	def(&o.CertFile, DefaultCertFile)
	def(&o.KeyFile, DefaultKeyFile)
	def(&o.AnchorsFile, DefaultAnchorsFile)
	if o.ReloadInterval == 0 {
		o.ReloadInterval = DefaultReloadInterval
	}
	if o.ReloadInterval < 0 {
		return fmt.Errorf("file identity: reload interval %s is negative; give a positive duration", o.ReloadInterval)
	}
	if o.Clock == nil {
		o.Clock = identity.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// FileSource is a Source that reads PEM files and reloads them when they change (a
// Kubernetes secret volume swaps them atomically). A bad new set of files is logged and the
// last good one kept.
type FileSource struct {
	opts  FileSourceOptions
	state atomic.Pointer[fileState]
}

type fileState struct {
	cert    *tls.Certificate
	anchors *x509.CertPool
	id      identity.SpiffeID
	stamp   string // the files' sizes and modification times when read
}

var _ Source = (*FileSource)(nil)

// NewFileSource reads the files once; it fails when they are missing or invalid.
func NewFileSource(opts FileSourceOptions) (*FileSource, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &FileSource{opts: opts}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Certificate returns the last good certificate.
func (s *FileSource) Certificate() *tls.Certificate {
	if st := s.state.Load(); st != nil {
		return st.cert
	}
	return nil
}

// TrustAnchors returns the last good trust anchors.
func (s *FileSource) TrustAnchors() *x509.CertPool {
	if st := s.state.Load(); st != nil {
		return st.anchors
	}
	return nil
}

// Identity returns the identity of the certificate.
func (s *FileSource) Identity() identity.SpiffeID {
	if st := s.state.Load(); st != nil {
		return st.id
	}
	return identity.SpiffeID{}
}

// Ready reports whether there is a certificate valid now.
func (s *FileSource) Ready() bool {
	st := s.state.Load()
	if st == nil || st.cert.Leaf == nil {
		return false
	}
	now := s.opts.Clock.Now()
	return !now.Before(st.cert.Leaf.NotBefore) && !now.After(st.cert.Leaf.NotAfter)
}

// Run checks the files every ReloadInterval until ctx ends, reloading them when they changed.
func (s *FileSource) Run(ctx context.Context) {
	ticker := time.NewTicker(s.opts.ReloadInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			changed, err := s.Reload()
			switch {
			case err != nil:
				s.opts.Logger.Error("identity files changed but cannot be used; keeping the previous certificate", "err", err)
			case changed:
				s.opts.Logger.Info("reloaded the identity files", "identity", s.Identity().String())
			}
		}
	}
}

// Reload reads the files again if their size or modification time changed, and reports
// whether it loaded a new certificate.
func (s *FileSource) Reload() (bool, error) {
	stamp, err := s.stamp()
	if err != nil {
		return false, err
	}
	if old := s.state.Load(); old != nil && old.stamp == stamp {
		return false, nil
	}
	st, err := s.load()
	if err != nil {
		return false, err
	}
	st.stamp = stamp
	s.state.Store(st)
	return true, nil
}

func (s *FileSource) stamp() (string, error) {
	var stamp string
	for _, name := range []string{s.opts.CertFile, s.opts.KeyFile, s.opts.AnchorsFile} {
		info, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("file identity: %w; mount the identity files (tls.crt, tls.key, ca.crt) there", err)
		}
		stamp += fmt.Sprintf("%d/%d;", info.Size(), info.ModTime().UnixNano())
	}
	return stamp, nil
}

func (s *FileSource) load() (*fileState, error) {
	certPEM, err := os.ReadFile(s.opts.CertFile)
	if err != nil {
		return nil, fmt.Errorf("file identity: %w", err)
	}
	keyPEM, err := os.ReadFile(s.opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("file identity: %w", err)
	}
	anchorsPEM, err := os.ReadFile(s.opts.AnchorsFile)
	if err != nil {
		return nil, fmt.Errorf("file identity: %w", err)
	}
	anchors, err := identity.ParseTrustAnchors(anchorsPEM)
	if err != nil {
		return nil, fmt.Errorf("file identity: %s: %w", s.opts.AnchorsFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("file identity: %s, %s: %w; give the workload certificate and its own key", s.opts.CertFile, s.opts.KeyFile, err)
	}
	pool := x509.NewCertPool()
	for _, anchor := range anchors {
		pool.AddCert(anchor)
	}
	verifier, err := identity.NewVerifier(anchors, "", s.opts.Clock)
	if err != nil {
		return nil, fmt.Errorf("file identity: %w", err)
	}
	chain := make([]*x509.Certificate, 0, len(cert.Certificate))
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("file identity: %s: %w", s.opts.CertFile, err)
		}
		chain = append(chain, c)
	}
	cert.Leaf = chain[0]
	id, err := identity.SpiffeIDFromCertificate(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("file identity: %s: %w", s.opts.CertFile, err)
	}
	// The trust domain is the certificate's own: check the chain, not the domain.
	if _, err := verifier.Verify(chain, x509.ExtKeyUsageServerAuth); err != nil && !errors.Is(err, identity.ErrWrongTrustDomain) {
		return nil, fmt.Errorf("file identity: %s: %w", s.opts.CertFile, err)
	}
	return &fileState{cert: &cert, anchors: pool, id: id}, nil
}
