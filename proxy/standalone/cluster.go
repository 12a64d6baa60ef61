package standalone

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/envoy"
)

// DefaultDNSRefreshRate is Envoy's dns_refresh_rate default.
const DefaultDNSRefreshRate = 5 * time.Second

// endpoint is one upstream address with its own connection pool, so a removed address can
// be drained without touching the others.
type endpoint struct {
	addr      string // ip:port; for LOGICAL_DNS the logical host:port
	active    atomic.Int64
	removed   atomic.Bool
	transport *http.Transport
	dial      func(ctx context.Context) (net.Conn, error)
}

func (e *endpoint) done() {
	e.active.Add(-1)
	if e.removed.Load() {
		e.transport.CloseIdleConnections()
	}
}

type hostPort struct {
	host string
	port uint32
}

// cluster is a running Envoy cluster.
type cluster struct {
	name           string
	kind           string // STATIC, STRICT_DNS, LOGICAL_DNS
	lb             string
	connectTimeout time.Duration
	refreshRate    time.Duration
	hosts          []hostPort
	br             *breakers
	tls            *tls.Config // nil: plain TCP

	// ejector applies outlier_detection (nil without it); sweep is its interval.
	ejector *policy.Ejector
	sweep   time.Duration
	metrics *clusterMetrics

	resolver Resolver
	log      *slog.Logger
	rng      *lockedRand

	mu      sync.Mutex
	eps     []*endpoint
	rr      uint64
	current atomic.Pointer[string] // LOGICAL_DNS: the address new connections dial
}

func newCluster(c envoy.Cluster, res Resolver, rng *lockedRand, log *slog.Logger, clock policy.Clock) (*cluster, error) {
	cl := &cluster{
		name: c.Name, kind: c.Type, lb: c.LbPolicy, connectTimeout: 5 * time.Second,
		refreshRate: DefaultDNSRefreshRate, resolver: res, rng: rng, log: log.With("cluster", c.Name),
		br: newBreakers(c),
	}
	if ts := c.TransportSocket; ts != nil && ts.TLS != nil {
		cfg, err := upstreamTLS(c.Name, ts.TLS)
		if err != nil {
			return nil, err
		}
		cl.tls = cfg
	}
	if cl.kind == "" {
		cl.kind = "STATIC"
	}
	if cl.lb == "" {
		cl.lb = "ROUND_ROBIN"
	}
	if c.ConnectTimeout != nil && c.ConnectTimeout.Duration > 0 {
		cl.connectTimeout = c.ConnectTimeout.Duration
	}
	if c.DNSRefreshRate != nil && c.DNSRefreshRate.Duration > 0 {
		cl.refreshRate = c.DNSRefreshRate.Duration
	}
	for _, sa := range c.Addresses() {
		cl.hosts = append(cl.hosts, hostPort{sa.Address, sa.PortValue})
	}
	switch cl.kind {
	case "STATIC":
		var eps []*endpoint
		for _, h := range cl.hosts {
			if _, err := netip.ParseAddr(h.host); err != nil {
				return nil, fmt.Errorf("cluster %s: a STATIC endpoint must be an IP address, not %q (use type STRICT_DNS)", c.Name, h.host)
			}
			eps = append(eps, cl.newEndpoint(joinHP(h.host, h.port)))
		}
		cl.eps = eps
	case "LOGICAL_DNS":
		h := cl.hosts[0]
		ep := cl.newEndpoint(joinHP(h.host, h.port))
		ep.dial = func(ctx context.Context) (net.Conn, error) {
			cur := cl.current.Load()
			if cur == nil {
				return nil, fmt.Errorf("cluster %s: %s is not resolved yet", cl.name, h.host)
			}
			return cl.dialAddr(ctx, *cur)
		}
		cl.eps = []*endpoint{ep}
	}
	if c.OutlierDetection != nil {
		cfg, interval := outlierConfig(c)
		hosts := make([]string, len(cl.eps))
		for i, e := range cl.eps {
			hosts[i] = cl.hostOf(e)
		}
		cl.ejector = policy.NewEjector(cfg, clock, hosts)
		cl.sweep = interval
	}
	return cl, nil
}

// dialAddr opens a connection to addr within connect_timeout, with the cluster's TLS
// handshake when it has a transport socket.
func (c *cluster) dialAddr(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || c.tls == nil {
		return conn, err
	}
	tc := tls.Client(conn, c.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

func joinHP(h string, p uint32) string { return net.JoinHostPort(h, strconv.FormatUint(uint64(p), 10)) }

func (c *cluster) newEndpoint(addr string) *endpoint {
	ep := &endpoint{addr: addr}
	ep.dial = func(ctx context.Context) (net.Conn, error) { return c.dialAddr(ctx, addr) }
	ep.transport = &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return ep.dial(ctx) },
		MaxIdleConnsPerHost: int(min(64, max(c.br.maxConnections, 1))),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return ep
}

// pick chooses an endpoint by the lb policy, or nil when there is none. Ejected endpoints
// are skipped unless fewer than the panic threshold are healthy (then all are used, as
// Envoy does). The caller calls ep.done() when the request ends.
func (c *cluster) pick() *endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kind == "LOGICAL_DNS" && c.current.Load() == nil {
		return nil
	}
	eps := c.eps
	if c.ejector != nil && !c.ejector.Panic() {
		eps = make([]*endpoint, 0, len(c.eps))
		for _, e := range c.eps {
			if !c.ejector.Ejected(c.hostOf(e)) {
				eps = append(eps, e)
			}
		}
	}
	n := len(eps)
	if n == 0 {
		return nil
	}
	var ep *endpoint
	switch c.lb {
	case "RANDOM":
		ep = eps[c.rng.IntN(n)]
	case "LEAST_REQUEST":
		// power of two distinct choices
		i := c.rng.IntN(n)
		ep = eps[i]
		if n > 1 {
			if b := eps[(i+1+c.rng.IntN(n-1))%n]; b.active.Load() < ep.active.Load() {
				ep = b
			}
		}
	default:
		ep = eps[c.rr%uint64(n)]
		c.rr++
	}
	ep.active.Add(1)
	return ep
}

// hostOf is the outlier detection host of e: its address (for LOGICAL_DNS, the one host).
func (c *cluster) hostOf(e *endpoint) string { return e.addr }

// record feeds an attempt's outcome (HTTP status; 503 for a connect failure or reset, 504
// for a timeout) to outlier detection.
func (c *cluster) record(e *endpoint, status int) {
	if c.ejector == nil {
		return
	}
	if c.ejector.Record(c.hostOf(e), status) {
		c.log.Warn("outlier detection ejected an endpoint", "addr", e.addr, "status", status,
			"multiplier", c.ejector.Multiplier(c.hostOf(e)))
		if c.metrics != nil {
			c.metrics.ejections.WithLabelValues(c.name).Inc()
		}
	}
}

// sweepOutliers runs outlier detection's interval check.
func (c *cluster) sweepOutliers() {
	if c.ejector == nil {
		return
	}
	for _, h := range c.ejector.Sweep() {
		c.log.Info("outlier detection returned an endpoint to service", "addr", h)
	}
}

// runOutliers sweeps every interval until ctx ends.
func (c *cluster) runOutliers(ctx context.Context, newTicker func(time.Duration) Ticker, onSweep func(string)) {
	if c.ejector == nil {
		return
	}
	t := newTicker(c.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.sweepOutliers()
			if onSweep != nil {
				onSweep(c.name)
			}
		}
	}
}

// endpoints lists the current endpoint addresses (for tests and the admin).
func (c *cluster) endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.eps))
	for i, e := range c.eps {
		out[i] = e.addr
	}
	if c.kind == "LOGICAL_DNS" {
		if cur := c.current.Load(); cur != nil {
			out = []string{*cur}
		} else {
			out = nil
		}
	}
	return out
}

// refresh resolves the cluster's hosts once. On failure the previous endpoints stay.
func (c *cluster) refresh(ctx context.Context) {
	switch c.kind {
	case "LOGICAL_DNS":
		h := c.hosts[0]
		addrs, err := c.resolver.LookupAddrs(ctx, h.host)
		if err != nil || len(addrs) == 0 {
			c.dnsFailed()
			c.log.Warn("DNS resolution failed; keeping the previous address", "host", h.host, "error", err)
			return
		}
		a := joinHP(addrs[0].String(), h.port)
		c.current.Store(&a) // existing connections are never drained
	case "STRICT_DNS":
		var want []string
		for _, h := range c.hosts {
			addrs, err := c.resolver.LookupAddrs(ctx, h.host)
			if err != nil {
				c.dnsFailed()
				c.log.Warn("DNS resolution failed; keeping the previous endpoints", "host", h.host, "error", err)
				return
			}
			for _, a := range addrs {
				want = append(want, joinHP(a.String(), h.port))
			}
		}
		c.mu.Lock()
		old := map[string]*endpoint{}
		for _, e := range c.eps {
			old[e.addr] = e
		}
		eps := make([]*endpoint, 0, len(want))
		for _, a := range want {
			if e, ok := old[a]; ok {
				eps = append(eps, e)
				delete(old, a)
				continue
			}
			eps = append(eps, c.newEndpoint(a))
		}
		c.eps = eps
		if c.ejector != nil {
			c.ejector.SetHosts(want)
		}
		c.mu.Unlock()
		for _, e := range old { // drain removed addresses
			e.removed.Store(true)
			e.transport.CloseIdleConnections()
			c.log.Info("draining a removed endpoint", "addr", e.addr)
		}
	}
}

func (c *cluster) dnsFailed() {
	if c.metrics != nil {
		c.metrics.dnsFailures.WithLabelValues(c.name).Inc()
	}
}

// run refreshes DNS clusters every refreshRate until ctx ends.
func (c *cluster) run(ctx context.Context, newTicker func(time.Duration) Ticker, onRefresh func(string)) {
	if c.kind == "STATIC" {
		return
	}
	t := newTicker(c.refreshRate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c.refresh(rctx)
			cancel()
			if onRefresh != nil {
				onRefresh(c.name)
			}
		}
	}
}

func (c *cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.eps {
		e.transport.CloseIdleConnections()
	}
}

// lockedRand is a *rand.Rand safe for concurrent use.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

func (l *lockedRand) Uint32N(n uint32) uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint32N(n)
}
