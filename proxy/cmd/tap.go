package cmd

import (
	"crypto/x509"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/config"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
	proxytap "github.com/lightmesh/lightmesh/proxy/tap"
)

// newTapServer returns the tap server of cfg, or nil when tapping is off (TAP_ADDR none) or
// impossible (identity disabled: the tap is mTLS only).
func newTapServer(cfg *config.Config, tlsConf *meshtls.TLS, registry *metrics.Registry, log *slog.Logger) (*proxytap.Server, error) {
	if cfg.TapAddr == "" {
		return nil, nil
	}
	if tlsConf == nil {
		log.Warn("identity is disabled: no tap server (it serves the controller's identity over mTLS only)")
		return nil, nil
	}
	hub := proxytap.NewHub(0, 0)
	registry.Registerer().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tap_dropped_events_total",
		Help: "Tapped requests dropped because a tap reader was too slow.",
	}, func() float64 { return float64(hub.Dropped()) }))
	return proxytap.NewServer(proxytap.ServerOptions{
		Addr: cfg.TapAddr, Hub: hub, Certificate: tlsConf.Certificate,
		VerifyClient: func(raw [][]byte) (identity.SpiffeID, error) {
			return tlsConf.VerifyPeer(raw, x509.ExtKeyUsageClientAuth)
		},
		Allowed: cfg.TapIdentity, Logger: log,
	})
}
