package standalone

import (
	"context"
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
	maxRequests    int64
	inflight       atomic.Int64

	resolver Resolver
	log      *slog.Logger
	rng      *lockedRand

	mu      sync.Mutex
	eps     []*endpoint
	rr      uint64
	current atomic.Pointer[string] // LOGICAL_DNS: the address new connections dial
}

func newCluster(c envoy.Cluster, res Resolver, rng *lockedRand, log *slog.Logger) (*cluster, error) {
	cl := &cluster{
		name: c.Name, kind: c.Type, lb: c.LbPolicy, connectTimeout: 5 * time.Second,
		refreshRate: DefaultDNSRefreshRate, resolver: res, rng: rng, log: log.With("cluster", c.Name),
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
	if c.CircuitBreakers != nil {
		for _, t := range c.CircuitBreakers.Thresholds {
			if (t.Priority == "" || t.Priority == "DEFAULT") && t.MaxRequests != nil {
				cl.maxRequests = int64(*t.MaxRequests)
			}
		}
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
			d := net.Dialer{Timeout: cl.connectTimeout}
			return d.DialContext(ctx, "tcp", *cur)
		}
		cl.eps = []*endpoint{ep}
	}
	return cl, nil
}

func joinHP(h string, p uint32) string { return net.JoinHostPort(h, strconv.FormatUint(uint64(p), 10)) }

func (c *cluster) newEndpoint(addr string) *endpoint {
	ep := &endpoint{addr: addr}
	ep.dial = func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: c.connectTimeout}
		return d.DialContext(ctx, "tcp", addr)
	}
	ep.transport = &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return ep.dial(ctx) },
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return ep
}

// pick chooses an endpoint by the lb policy, or nil when there is none. The caller calls
// ep.done() when the request ends.
func (c *cluster) pick() *endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.eps)
	if n == 0 {
		return nil
	}
	if c.kind == "LOGICAL_DNS" && c.current.Load() == nil {
		return nil
	}
	var ep *endpoint
	switch c.lb {
	case "RANDOM":
		ep = c.eps[c.rng.IntN(n)]
	case "LEAST_REQUEST":
		// power of two distinct choices
		i := c.rng.IntN(n)
		ep = c.eps[i]
		if n > 1 {
			if b := c.eps[(i+1+c.rng.IntN(n-1))%n]; b.active.Load() < ep.active.Load() {
				ep = b
			}
		}
	default:
		ep = c.eps[c.rr%uint64(n)]
		c.rr++
	}
	ep.active.Add(1)
	return ep
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
		c.mu.Unlock()
		for _, e := range old { // drain removed addresses
			e.removed.Store(true)
			e.transport.CloseIdleConnections()
			c.log.Info("draining a removed endpoint", "addr", e.addr)
		}
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
