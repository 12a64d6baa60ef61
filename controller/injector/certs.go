package injector

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
)

// DefaultCertificateCheckInterval is how often the serving certificate files are read again.
const DefaultCertificateCheckInterval = 30 * time.Second

// CertificateFiles serves the certificate in Dir (tls.crt, tls.key) and reads it again at most
// every Interval, so a renewed Secret is used without a restart. A renewed pair that does not
// load is logged and the one in use kept.
type CertificateFiles struct {
	Dir string
	// Interval defaults to DefaultCertificateCheckInterval; Now to time.Now; Logger to
	// slog.Default().
	Interval time.Duration
	Now      func() time.Time
	Logger   *slog.Logger

	mu        sync.Mutex
	current   *tls.Certificate
	checkedAt time.Time
}

// Load reads the certificate; call it once before serving, to fail early.
func (c *CertificateFiles) Load() error {
	cert, err := c.read()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current, c.checkedAt = cert, c.now()
	return nil
}

// GetCertificate is a tls.Config.GetCertificate.
func (c *CertificateFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	interval := c.Interval
	if interval == 0 {
		interval = DefaultCertificateCheckInterval
	}
	if c.current != nil && c.now().Sub(c.checkedAt) < interval {
		return c.current, nil
	}
	c.checkedAt = c.now()
	cert, err := c.read()
	if err != nil {
		if c.current == nil {
			return nil, err
		}
		log := c.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Warn("keeping the serving certificate in use", "reason", err.Error())
		return c.current, nil
	}
	c.current = cert
	return cert, nil
}

func (c *CertificateFiles) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *CertificateFiles) read() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.Dir, "tls.crt"), filepath.Join(c.Dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("load the serving certificate from %s: %w", c.Dir, err)
	}
	return &cert, nil
}
