package dataplane

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// DestinationRule traffic policy, enforced per client proxy per destination cluster: a
// destination host and port, or one subset of it (Istio makes each subset a cluster of its
// own, with its own limits). A cluster holds
//
//   - the connection pool limits (limiter): requests in flight from HTTP/1 clients each hold
//     one of maxConnections slots, as Envoy's HTTP/1 upstream connections do, and those from
//     HTTP/2 clients one of http2MaxRequests; requests beyond wait in a pending queue of at
//     most http1MaxPendingRequests; beyond that they get 503 at once (reason "overflow",
//     x-envoy-overloaded: true). Opaque TCP connections take maxConnections slots without
//     queueing (admitTCP). maxRetries bounds the retries in flight;
//   - outlier detection: a policy.Ejector over the cluster's endpoints, fed every attempt's
//     status (503 for a failure to connect or a reset) and swept every interval;
//   - the load balancer: ROUND_ROBIN, LEAST_REQUEST, RANDOM, PASSTHROUGH (the address the
//     application dialled, unbalanced) or the proxy's balancer;
//   - the subset's endpoints: those whose labels match the subset's.
//
// A cluster is replaced when its policy changes; the old one's sweeper stops.

// clusterKey names a destination cluster.
type clusterKey struct {
	host   string
	port   uint32
	subset string
}

// clusters are the proxy's destination clusters.
type clusters struct {
	p       *Proxy
	mu      sync.Mutex
	byKey   map[clusterKey]*cluster
	closed  bool
	retries atomic.Uint64 // retries sent, for tests and logs
	// retryTotal counts retries by authority (the resolved service) in Prometheus.
	retryTotal *prometheus.CounterVec
}

func newClusters(p *Proxy) *clusters {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "retry_total", Help: "Total count of HTTP request attempts retried by the outbound policy.",
	}, []string{"direction", "authority"})
	if err := p.metrics.Registerer().Register(vec); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(*prometheus.CounterVec); ok {
				vec = existing
			}
		}
	}
	return &clusters{p: p, byKey: map[clusterKey]*cluster{}, retryTotal: vec}
}

type cluster struct {
	key    clusterKey
	policy policy.TrafficPolicy
	labels map[string]string // subset selector; nil: every endpoint

	limiter *limiter
	ejector *policy.Ejector
	// lb is the cluster's own balancer, nil for the proxy's; loadAware is told of requests.
	lb        discovery.Balancer
	loadAware discovery.LoadAware
	// passthrough (Istio's PASSTHROUGH) sends to the address the application dialled.
	passthrough bool
	random      func() uint64
	// retries in flight, against ConnectionPool.MaxRetries.
	retries    atomic.Int64
	maxRetries int64
	// connectTimeout is ConnectionPool.ConnectTimeout (0: the proxy's).
	connectTimeout time.Duration
	// h1 and h2c are the cluster's own plaintext clients when its pool changes their
	// behaviour (idle timeout, one request per connection); nil: the proxy's.
	h1, h2c *http.Transport

	mu   sync.Mutex
	last *discovery.Destination // the destination view was computed from
	view endpointView

	done chan struct{}
	// used is when the cluster was last looked up (clusters.mu).
	used time.Time
}

// Clusters are forgotten after clusterIdleTimeout without requests, once there are
// maxIdleClusters of them.
const (
	maxIdleClusters    = 256
	clusterIdleTimeout = 10 * time.Minute
)

// endpointView is a destination's endpoints that belong to the cluster, with their
// addresses as the ejector's host names.
type endpointView struct {
	dst   *discovery.Destination
	hosts []string
}

var errUnknownSubset = errors.New("the route's subset is not defined by any DestinationRule of the host")

// get returns the cluster of host:port (subset: of that subset) under pol, creating or
// replacing it when its policy changed.
func (cs *clusters) get(pol *policy.OutboundPolicy, host string, port uint32, subset string) (*cluster, error) {
	var tp policy.TrafficPolicy
	var labels map[string]string
	d := pol.Destination(host)
	if d != nil {
		tp = d.TrafficPolicy
	}
	if subset != "" {
		found := false
		if d != nil {
			for i := range d.Subsets {
				if d.Subsets[i].Name == subset {
					tp, labels, found = d.Subsets[i].TrafficPolicy, d.Subsets[i].Labels, true
					break
				}
			}
		}
		if !found {
			return nil, errUnknownSubset
		}
	}
	key := clusterKey{host: host, port: port, subset: subset}
	now := time.Now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c := cs.byKey[key]; c != nil && samePolicy(c.policy, tp) && maps.Equal(c.labels, labels) {
		c.used = now
		return c, nil
	}
	if len(cs.byKey) >= maxIdleClusters {
		// Bounded: forget the clusters nobody sent to for a while (their limits hold
		// nothing then, and their ejections have expired or soon will).
		for k, c := range cs.byKey {
			if now.Sub(c.used) > clusterIdleTimeout {
				c.stop()
				delete(cs.byKey, k)
			}
		}
	}
	if old := cs.byKey[key]; old != nil {
		old.stop()
	}
	c := cs.p.newCluster(key, tp, labels)
	c.used = now
	if cs.closed {
		c.stop()
	} else {
		cs.byKey[key] = c
	}
	return c, nil
}

// close stops every cluster (proxy shutdown).
func (cs *clusters) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	for key, c := range cs.byKey {
		c.stop()
		delete(cs.byKey, key)
	}
}

func samePolicy(a, b policy.TrafficPolicy) bool {
	if a.LoadBalancer != b.LoadBalancer {
		return false
	}
	if (a.ConnectionPool == nil) != (b.ConnectionPool == nil) || a.ConnectionPool != nil && *a.ConnectionPool != *b.ConnectionPool {
		return false
	}
	if (a.OutlierDetection == nil) != (b.OutlierDetection == nil) || a.OutlierDetection != nil && *a.OutlierDetection != *b.OutlierDetection {
		return false
	}
	return true
}

// defaultOutlierInterval is Istio's outlierDetection.interval default.
const defaultOutlierInterval = 10 * time.Second

func (p *Proxy) newCluster(key clusterKey, tp policy.TrafficPolicy, labels map[string]string) *cluster {
	c := &cluster{key: key, policy: tp, labels: labels, random: p.opts.random, done: make(chan struct{})}
	switch tp.LoadBalancer {
	case policy.LoadBalancerRoundRobin:
		c.lb = &discovery.RoundRobin{}
	case policy.LoadBalancerLeastRequest:
		rnd := c.random
		lr := discovery.NewLeastRequest(func(n int) int { return int(rnd() % uint64(n)) })
		c.lb, c.loadAware = lr, lr
	case policy.LoadBalancerRandom:
		c.lb = randomBalancer{random: c.random}
	case policy.LoadBalancerPassthrough:
		c.passthrough = true
	default:
		c.loadAware = p.loadAware
	}
	if cp := tp.ConnectionPool; cp != nil {
		c.limiter = newLimiter(int(cp.MaxConnections), int(cp.HTTP2MaxRequests), int(cp.HTTP1MaxPendingRequests))
		c.maxRetries = int64(cp.MaxRetries)
		c.connectTimeout = cp.ConnectTimeout.D()
		if cp.IdleTimeout > 0 || cp.MaxRequestsPerConnection == 1 {
			c.h1, c.h2c = p.clients.h1.Clone(), p.clients.h2c.Clone()
			if cp.IdleTimeout > 0 {
				c.h1.IdleConnTimeout, c.h2c.IdleConnTimeout = cp.IdleTimeout.D(), cp.IdleTimeout.D()
			}
			if cp.MaxRequestsPerConnection == 1 {
				c.h1.DisableKeepAlives = true
			}
		}
	}
	if od := tp.OutlierDetection; od != nil && (od.Consecutive5xxErrors > 0 || od.ConsecutiveGatewayErrors > 0) {
		c.ejector = policy.NewEjector(*od, p.opts.clock, nil)
		interval := od.Interval.D()
		if interval <= 0 {
			interval = defaultOutlierInterval
		}
		ticks, stopTicks := p.opts.ticker(interval)
		go func() {
			defer stopTicks()
			for {
				select {
				case <-ticks:
					if back := c.ejector.Sweep(); len(back) > 0 {
						p.log.Info("outlier detection returned endpoints to service", "host", key.host, "subset", key.subset, "endpoints", back)
					}
				case <-c.done:
					return
				}
			}
		}()
	}
	return c
}

func (c *cluster) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	if c.h1 != nil {
		c.h1.CloseIdleConnections()
		c.h2c.CloseIdleConnections()
	}
}

// endpoints returns the cluster's part of dst: the subset's endpoints, keeping the ejector's
// hosts in step.
func (c *cluster) endpoints(dst *discovery.Destination) endpointView {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == dst {
		return c.view
	}
	view := endpointView{dst: dst}
	if c.labels != nil {
		view.dst = &discovery.Destination{Name: dst.Name}
		for _, ep := range dst.Endpoints {
			if labelsMatch(c.labels, ep.Labels) {
				view.dst.Endpoints = append(view.dst.Endpoints, ep)
			}
		}
	}
	if c.ejector != nil {
		view.hosts = make([]string, len(view.dst.Endpoints))
		for i, ep := range view.dst.Endpoints {
			view.hosts[i] = ep.Addr.String()
		}
		c.ejector.SetHosts(view.hosts)
	}
	c.last, c.view = dst, view
	return view
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// pick balances over the cluster's endpoints of dst that are not ejected (all of them when
// too few are healthy: panic mode). It returns the endpoint and its ejector host name.
func (c *cluster) pick(p *Proxy, dst *discovery.Destination) (discovery.Endpoint, string, error) {
	view := c.endpoints(dst)
	candidates := view.dst
	var hosts []string
	if c.ejector != nil && !c.ejector.Panic() {
		var kept *discovery.Destination
		for i, h := range view.hosts {
			if !c.ejector.Ejected(h) {
				if kept != nil {
					kept.Endpoints = append(kept.Endpoints, view.dst.Endpoints[i])
					hosts = append(hosts, h)
				}
				continue
			}
			if kept == nil {
				kept = &discovery.Destination{Name: view.dst.Name, Endpoints: make([]discovery.Endpoint, 0, len(view.hosts))}
				kept.Endpoints = append(kept.Endpoints, view.dst.Endpoints[:i]...)
				hosts = append(make([]string, 0, len(view.hosts)), view.hosts[:i]...)
			}
		}
		if kept != nil {
			candidates = kept
		} else {
			hosts = view.hosts
		}
	} else {
		hosts = view.hosts
	}
	if len(candidates.Endpoints) == 0 {
		return discovery.Endpoint{}, "", discovery.ErrNoEndpoints
	}
	lb := c.lb
	if lb == nil {
		lb = p.opts.Balancer
	}
	ep, err := lb.Pick(candidates)
	if err != nil || c.ejector == nil {
		return ep, "", err
	}
	for i := range candidates.Endpoints {
		if candidates.Endpoints[i].Addr == ep.Addr {
			return ep, hosts[i], nil
		}
	}
	return ep, ep.Addr.String(), nil
}

// record tells outlier detection how an attempt to host ended: its status, or 503 for a
// failure to connect, a reset or a timeout. Attempts the client gave up are not counted.
func (c *cluster) record(host string, resp *http.Response, err error, clientGone bool) {
	if c.ejector == nil || host == "" || clientGone {
		return
	}
	status := http.StatusServiceUnavailable
	if err == nil {
		status = resp.StatusCode
	}
	c.ejector.Record(host, status)
}

// startRetry takes one of maxRetries; false when the retry budget is spent.
func (c *cluster) startRetry() bool {
	if c.maxRetries <= 0 {
		c.retries.Add(1)
		return true
	}
	if c.retries.Add(1) > c.maxRetries {
		c.retries.Add(-1)
		return false
	}
	return true
}

func (c *cluster) endRetry() { c.retries.Add(-1) }

// randomBalancer is Istio's RANDOM.
type randomBalancer struct{ random func() uint64 }

func (b randomBalancer) Pick(dst *discovery.Destination) (discovery.Endpoint, error) {
	if dst == nil || len(dst.Endpoints) == 0 {
		return discovery.Endpoint{}, discovery.ErrNoEndpoints
	}
	return dst.Endpoints[b.random()%uint64(len(dst.Endpoints))], nil
}

// errOverflow means a connection pool limit refused the request.
var errOverflow = errors.New("the destination's connection pool is full (DestinationRule connectionPool)")

// limiter enforces a cluster's connection pool limits; see the top of the file.
type limiter struct {
	mu         sync.Mutex
	max        [2]int // by class: HTTP/1 (and TCP) requests, HTTP/2 requests; 0: no limit
	active     [2]int
	waiting    [2][]chan struct{}
	maxPending int // 0: no limit
	pending    int
}

func newLimiter(maxConnections, http2MaxRequests, maxPending int) *limiter {
	return &limiter{max: [2]int{maxConnections, http2MaxRequests}, maxPending: maxPending}
}

// admit takes a slot of class (0 HTTP/1, 1 HTTP/2), waiting in the pending queue while the
// pool is full, until ctx ends. It returns the release, errOverflow when the queue is full
// too, or ctx's error.
func (l *limiter) admit(ctx context.Context, class int, queue bool) (func(), error) {
	if l == nil || l.max[class] <= 0 {
		return func() {}, nil
	}
	release := func() { l.release(class) }
	l.mu.Lock()
	if l.active[class] < l.max[class] && len(l.waiting[class]) == 0 {
		l.active[class]++
		l.mu.Unlock()
		return release, nil
	}
	if !queue || (l.maxPending > 0 && l.pending >= l.maxPending) {
		l.mu.Unlock()
		return nil, errOverflow
	}
	ready := make(chan struct{})
	l.waiting[class] = append(l.waiting[class], ready)
	l.pending++
	l.mu.Unlock()
	select {
	case <-ready:
		return release, nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, ch := range l.waiting[class] {
			if ch == ready {
				l.waiting[class] = append(l.waiting[class][:i], l.waiting[class][i+1:]...)
				l.pending--
				l.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		l.mu.Unlock()
		// The slot was handed over just as ctx ended: give it back.
		l.release(class)
		return nil, ctx.Err()
	}
}

// release frees a slot of class, handing it to the first request waiting, if any.
func (l *limiter) release(class int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiting[class]) > 0 {
		ready := l.waiting[class][0]
		l.waiting[class] = l.waiting[class][1:]
		l.pending--
		close(ready)
		return
	}
	l.active[class]--
}

// inFlight returns the requests holding slots and those waiting (tests).
func (l *limiter) inFlight() (active, pending int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active[0] + l.active[1], l.pending
}

// admitTCP applies the connection pool of dst's DestinationRule to an opaque TCP connection
// to dst (a resolved service): the connection takes one of maxConnections slots until
// release is called, and is refused (ok false: close it, as Envoy's TCP proxy does) when
// they are all taken. Without policy it always admits.
func (p *Proxy) admitTCP(dst *discovery.Destination) (release func(), ok bool) {
	if p.opts.Policy == nil || dst == nil {
		return func() {}, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.ConnectTimeout)
	defer cancel()
	pol, err := p.opts.Policy.Outbound(ctx, dst.Name)
	if err != nil || pol == nil {
		return func() {}, true
	}
	host, port := splitServiceName(dst.Name)
	c, err := p.traffic.get(pol, host, port, "")
	if err != nil {
		return func() {}, true
	}
	rel, err := c.limiter.admit(ctx, 0, false)
	if err != nil {
		p.log.Info("connection refused by the destination's connection pool", "authority", dst.Name, "err", err)
		return nil, false
	}
	return rel, true
}

// splitServiceName splits name.ns.svc.cluster.local:port.
func splitServiceName(name string) (string, uint32) {
	i := strings.LastIndexByte(name, ':')
	if i < 0 {
		return name, 0
	}
	port, err := strconv.ParseUint(name[i+1:], 10, 16)
	if err != nil {
		return name, 0
	}
	return name[:i], uint32(port)
}
