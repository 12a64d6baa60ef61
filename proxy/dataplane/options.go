package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/lightmesh/lightmesh/internal/origdst"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/h1"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
	proxytap "github.com/lightmesh/lightmesh/proxy/tap"
	"github.com/lightmesh/lightmesh/proxy/tracing"
)

// Defaults of Options.
const (
	DefaultInboundAddr    = "0.0.0.0:4143"
	DefaultOutboundAddr   = "127.0.0.1:4140"
	DefaultDetectTimeout  = 10 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultShutdownGrace  = 20 * time.Second
	// DefaultMaxInFlightRequests bounds the HTTP requests a proxy serves at once, all
	// directions together (Envoy's default circuit breaker allows 1,024 requests per cluster).
	DefaultMaxInFlightRequests = 1000
	DefaultPeerInboundPort     = 4143
	// detectBufferSize is how many bytes protocol detection may read.
	detectBufferSize = 8 << 10
)

// DefaultOpaquePorts are ports whose server speaks first (SMTP, MySQL, PostgreSQL, Redis,
// memcached, ...): detection would wait for the client in vain, so they are opaque.
var DefaultOpaquePorts = []uint16{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}

// OrigDstFunc returns the original destination of an accepted connection.
type OrigDstFunc func(*net.TCPConn) (netip.AddrPort, error)

// DialFunc opens a TCP connection to an address.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options configure a Proxy. Zero fields take the defaults.
type Options struct {
	// InboundAddr is the inbound listener (DefaultInboundAddr); OutboundAddr the outbound
	// one (DefaultOutboundAddr). Port 0 picks a free port (tests).
	InboundAddr, OutboundAddr string
	// TLS makes and checks mTLS between proxies; nil disables identity: everything is
	// plaintext (tests and standalone runs).
	TLS *meshtls.TLS
	// Resolver answers discovery; nil means none (every connection is passthrough).
	Resolver discovery.Resolver
	// Gateway, when set, makes the proxy an ingress gateway too (gateway.go).
	Gateway *GatewayOptions
	// CoalesceWrites merges the small writes of each HTTP/2 connection made in one burst of
	// work into one write (coalesce.go). It pays with one worker (GOMAXPROCS=1), where the
	// burst is everything the running goroutine writes before it waits.
	CoalesceWrites bool
	// Tracer makes a span per HTTP request; nil means no tracing.
	Tracer *tracing.Tracer
	// Tap receives every finished HTTP request while someone taps (tap.go); nil means none.
	Tap *proxytap.Hub
	// Policy supplies routes, traffic policies and inbound authorization; nil means none.
	Policy discovery.PolicySource
	// Balancer picks endpoints (a PeakEWMA when nil). A discovery.LoadAware balancer is told
	// of every request (time to response headers) and opaque connection (connect time).
	Balancer discovery.Balancer
	// Metrics records traffic; a new registry when nil.
	Metrics *metrics.Registry
	// OpaquePorts skip protocol detection (DefaultOpaquePorts when nil; empty: none).
	OpaquePorts []uint16
	// DetectTimeout bounds protocol detection; a silent client is opaque after it.
	DetectTimeout time.Duration
	// ConnectTimeout bounds every connection the proxy opens, TLS handshake included.
	ConnectTimeout time.Duration
	// ShutdownGrace is how long Shutdown lets in-flight work finish.
	ShutdownGrace time.Duration
	// MaxInFlightRequests bounds the HTTP requests (and HTTP/2 streams) served at once;
	// beyond it a request is answered 503 at once (lightmesh-proxy-error: overloaded), so
	// that a proxy offered more than it can carry sheds the excess instead of queueing it
	// until it runs out of memory. DefaultMaxInFlightRequests when zero.
	MaxInFlightRequests int
	// PeerInboundPort is the inbound port of other proxies: opaque TCP to a meshed endpoint
	// goes there, with the application port in the transport header (DefaultPeerInboundPort).
	PeerInboundPort uint16
	// HTTP limits the HTTP servers (header size and count, timeouts).
	HTTP h1.Options
	// OrigDst reads the original destination of accepted connections; origdst.Get when nil.
	// Tests without iptables inject their own.
	OrigDst OrigDstFunc
	// Dial opens the proxy's connections; a net.Dialer when nil.
	Dial DialFunc
	// Logger; slog.Default() when nil.
	Logger *slog.Logger

	// Test hooks of the outbound policy (nil: the real thing). clock times outlier
	// ejections; random returns uniform numbers for weighted routing, fault injection and
	// retry back-off; ticker returns a channel that ticks every d (outlier detection's
	// interval) and a function that stops it.
	clock  policy.Clock
	random func() uint64
	ticker func(d time.Duration) (<-chan time.Time, func())
}

func (o *Options) validate() error {
	if o.InboundAddr == "" {
		o.InboundAddr = DefaultInboundAddr
	}
	if o.OutboundAddr == "" {
		o.OutboundAddr = DefaultOutboundAddr
	}
	if o.Balancer == nil {
		o.Balancer = &discovery.PeakEWMA{}
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.OpaquePorts == nil {
		o.OpaquePorts = DefaultOpaquePorts
	}
	if o.DetectTimeout == 0 {
		o.DetectTimeout = DefaultDetectTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.MaxInFlightRequests == 0 {
		o.MaxInFlightRequests = DefaultMaxInFlightRequests
	}
	if o.PeerInboundPort == 0 {
		o.PeerInboundPort = DefaultPeerInboundPort
	}
	if o.MaxInFlightRequests < 0 {
		return errors.New("dataplane: MaxInFlightRequests must be positive")
	}
	if o.DetectTimeout < 0 || o.ConnectTimeout < 0 || o.ShutdownGrace < 0 {
		return errors.New("dataplane: timeouts must be positive")
	}
	for _, addr := range []string{o.InboundAddr, o.OutboundAddr} {
		if _, err := netip.ParseAddrPort(addr); err != nil {
			return fmt.Errorf("dataplane: listen address %q: %w; write ip:port", addr, err)
		}
	}
	if o.OrigDst == nil {
		o.OrigDst = origdst.Get
	}
	if o.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.random == nil {
		o.random = rand.Uint64
	}
	if o.ticker == nil {
		o.ticker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	o.HTTP = o.HTTP.WithDefaults()
	o.HTTP.Logger = o.Logger
	o.HTTP.Handler = noHandler{} // replaced by the proxy's
	return nil
}
