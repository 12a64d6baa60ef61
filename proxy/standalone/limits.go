package standalone

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/envoy"
)

// Envoy's circuit breaker defaults (DEFAULT priority).
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

// Envoy's outlier detection and retry back-off defaults.
const (
	DefaultOutlierInterval       = 10 * time.Second
	DefaultBaseEjectionTime      = 30 * time.Second
	DefaultMaxEjectionPercent    = 10
	DefaultConsecutive5xx        = 5
	DefaultConsecutiveGateway    = 5
	DefaultHealthyPanicThreshold = 50
	DefaultRetryBaseInterval     = 25 * time.Millisecond
)

// Names of the circuit breakers, as the breaker label of circuit_breaker_overflow_total.
const (
	BreakerMaxConnections     = "max_connections"
	BreakerMaxPendingRequests = "max_pending_requests"
	BreakerMaxRequests        = "max_requests"
	BreakerMaxRetries         = "max_retries"
)

// errOverflow is a request refused by a circuit breaker.
var errOverflow = errors.New("circuit breaker overflow")

// breakers are a cluster's DEFAULT-priority circuit breakers.
//
// The standalone proxy speaks HTTP/1.1 to upstreams, where a connection carries one request
// at a time, so max_connections bounds the upstream connections busy with a request: each
// request attempt holds one of max_connections slots from before it is sent until its
// response has been copied. A request that finds every slot busy is pending (it waits for a
// connection, as in Envoy's HTTP/1 pool); at most max_pending_requests wait, for at most the
// route timeout, and the next one overflows. max_requests bounds the requests in progress
// (pending or sent), max_retries the retries in progress across the cluster (a retry holds
// its slot until the request's next retry decision or its end).
type breakers struct {
	maxConnections, maxPending, maxRequests, maxRetries int64

	slots    chan struct{} // one per busy connection
	pending  atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

func newBreakers(c envoy.Cluster) *breakers {
	b := &breakers{maxConnections: DefaultMaxConnections, maxPending: DefaultMaxPendingRequests,
		maxRequests: DefaultMaxRequests, maxRetries: DefaultMaxRetries}
	if c.CircuitBreakers != nil {
		for _, t := range c.CircuitBreakers.Thresholds {
			if t.Priority != "" && t.Priority != "DEFAULT" {
				continue
			}
			for _, f := range []struct {
				v   *uint32
				dst *int64
			}{{t.MaxConnections, &b.maxConnections}, {t.MaxPendingRequests, &b.maxPending},
				{t.MaxRequests, &b.maxRequests}, {t.MaxRetries, &b.maxRetries}} {
				if f.v != nil {
					*f.dst = int64(*f.v)
				}
			}
		}
	}
	b.slots = make(chan struct{}, b.maxConnections)
	return b
}

// admit counts a request against max_requests; release with b.requests.Add(-1).
func (b *breakers) admit() bool {
	if b.requests.Add(1) > b.maxRequests {
		b.requests.Add(-1)
		return false
	}
	return true
}

// connection takes a connection slot, waiting as a pending request when all are busy.
// It returns errOverflow (and which breaker) when the pending queue is full, or ctx's error.
func (b *breakers) connection(ctx context.Context) (string, error) {
	select {
	case b.slots <- struct{}{}:
		return "", nil
	default:
	}
	if b.maxConnections == 0 {
		return BreakerMaxConnections, errOverflow
	}
	if b.pending.Add(1) > b.maxPending {
		b.pending.Add(-1)
		return BreakerMaxPendingRequests, errOverflow
	}
	defer b.pending.Add(-1)
	select {
	case b.slots <- struct{}{}:
		return "", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// tryConnection takes a connection slot without waiting (tcp_proxy).
func (b *breakers) tryConnection() bool {
	select {
	case b.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (b *breakers) releaseConnection() { <-b.slots }

// retry counts a retry against max_retries; release with b.retries.Add(-1).
func (b *breakers) retry() bool {
	if b.retries.Add(1) > b.maxRetries {
		b.retries.Add(-1)
		return false
	}
	return true
}

// outlierConfig maps Envoy's outlier_detection onto internal/policy's Ejector.
func outlierConfig(c envoy.Cluster) (cfg policy.OutlierDetection, interval time.Duration) {
	od := c.OutlierDetection
	u := func(v *uint32, def uint32) uint32 {
		if v == nil {
			return def
		}
		return *v
	}
	d := func(v *envoy.Duration, def time.Duration) time.Duration {
		if v == nil || v.Duration <= 0 {
			return def
		}
		return v.Duration
	}
	cfg = policy.OutlierDetection{
		Consecutive5xxErrors:     u(od.Consecutive5xx, DefaultConsecutive5xx),
		ConsecutiveGatewayErrors: u(od.ConsecutiveGatewayFailure, DefaultConsecutiveGateway),
		BaseEjectionTime:         policy.Duration(d(od.BaseEjectionTime, DefaultBaseEjectionTime)),
		MaxEjectionPercent:       u(od.MaxEjectionPercent, DefaultMaxEjectionPercent),
		MinHealthPercent:         DefaultHealthyPanicThreshold,
	}
	interval = d(od.Interval, DefaultOutlierInterval)
	cfg.Interval = policy.Duration(interval)
	// enforcing_*: Envoy's defaults are 100 for 5xx and 0 for gateway failures; 0 disables.
	// Other percentages are reported unsupported by the parser and treated as 100.
	if u(od.EnforcingConsecutive5xx, 100) == 0 {
		cfg.Consecutive5xxErrors = 0
	}
	if u(od.EnforcingConsecutiveGatewayFailure, 0) == 0 {
		cfg.ConsecutiveGatewayErrors = 0
	}
	if lb := c.CommonLbConfig; lb != nil && lb.HealthyPanicThreshold != nil {
		cfg.MinHealthPercent = uint32(lb.HealthyPanicThreshold.Value)
	}
	return cfg, interval
}

// backOff is Envoy's JitteredExponentialBackOffStrategy: the n-th retry waits a uniformly
// random time in [0, (2^n - 1) * base), capped at max (the exponent stops growing once the
// range passes max).
type backOff struct {
	base, max time.Duration
	n         uint
}

func newBackOff(base, maxInterval time.Duration) *backOff {
	return &backOff{base: base, max: maxInterval, n: 1}
}

// next returns the wait before the next retry.
func (b *backOff) next(rng interface{ Int64N(int64) int64 }) time.Duration {
	ceiling := time.Duration((uint64(1)<<b.n)-1) * b.base
	if ceiling <= b.max && b.n < 62 {
		b.n++
	}
	if ceiling <= 0 {
		return 0
	}
	return min(time.Duration(rng.Int64N(int64(ceiling))), b.max)
}

// clusterMetrics are the counters of outlier ejections, circuit breaker overflows and DNS
// failures.
type clusterMetrics struct {
	ejections   *prometheus.CounterVec
	overflows   *prometheus.CounterVec
	dnsFailures *prometheus.CounterVec
}

func newClusterMetrics(reg prometheus.Registerer) *clusterMetrics {
	m := &clusterMetrics{
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outlier_ejections_total", Help: "Endpoints ejected by outlier detection.",
		}, []string{"cluster"}),
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "circuit_breaker_overflow_total", Help: "Requests, retries and connections refused by a circuit breaker.",
		}, []string{"cluster", "breaker"}),
	}
	m.dnsFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dns_resolution_failures_total", Help: "Failed DNS resolutions of a cluster (the previous addresses are kept).",
	}, []string{"cluster"})
	reg.MustRegister(m.ejections, m.overflows, m.dnsFailures)
	return m
}

// lockedRand also draws durations.
func (l *lockedRand) Int64N(n int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Int64N(n)
}

var _ interface{ Int64N(int64) int64 } = (*rand.Rand)(nil)
