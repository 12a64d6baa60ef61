package discovery

import (
	"context"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// Defaults of PeakEWMA.
const (
	// DefaultDecay is the time constant of the latency average: an observation's weight
	// falls to 1/e after it. Finagle and Linkerd use 10 s; at that, one latency spike keeps a
	// replica out of most picks for 20 s or more, so similar replicas do not share traffic
	// evenly (issue 7 asks that none gets under half its fair share); at 2 s a 20 ms spike
	// on a 1.3 ms replica is forgotten in about 7 s.
	DefaultDecay = 2 * time.Second
	// DefaultRTT is the latency assumed of an endpoint never observed.
	DefaultRTT = 30 * time.Millisecond
	// DefaultIdleTimeout is how long the statistics of an endpoint nobody sends to are kept:
	// after ten decay constants its average has decayed to nothing anyway.
	DefaultIdleTimeout = 100 * time.Second
	// MaxFailureCost bounds what failures in a row can raise an endpoint's average to (a
	// slower answer still counts in full). Without it every failure doubled the average: after
	// an outage of its peer an endpoint stood at astronomical costs (or NaN) and, decaying at
	// the same rate as the others, got no traffic for many minutes after it had recovered.
	// From 10 s the default decay brings it back to milliseconds in about 20 s.
	MaxFailureCost = 10 * time.Second
)

// PeakEWMA is the power-of-two-choices balancer over peak-EWMA latency (Finagle's and
// Linkerd's): Pick draws two distinct endpoints at random and takes the one with the lower
// load, its latency average times one more than its requests in flight; loads within a
// quarter of each other count as a tie and the first drawn is taken, so replicas that answer
// about as fast share the traffic evenly rather than by small latency differences. The average jumps
// to any latency above it (peak) and decays towards lower ones with time constant Decay, so a
// slow endpoint is avoided at once and tried again gradually.
//
// Latencies come from the caller: Acquire before sending to an endpoint and end the
// returned Release when the answer comes (its latency is measured with Clock). An endpoint
// never tried costs nothing, so it is tried at once, one request at a time until it answers
// (its average starts at DefaultRTT).
//
// The statistics of an endpoint that has not been acquired for IdleTimeout and has nothing in
// flight are forgotten (Prune), so endpoints that left every destination do not stay in
// memory: Acquire prunes when it meets a new endpoint, at most once per IdleTimeout, so the
// table holds at most the endpoints used within the last two IdleTimeouts. It is safe for
// concurrent use.
type PeakEWMA struct {
	// Decay is the averaging time constant; DefaultDecay when zero.
	Decay time.Duration
	// DefaultRTT is the latency of an endpoint without observations; DefaultRTT when zero.
	DefaultRTT time.Duration
	// Clock tells the time; nil means the system clock.
	Clock identity.Clock
	// Rand returns a number in [0, n); nil means math/rand/v2.IntN.
	Rand func(n int) int
	// IdleTimeout is how long the statistics of an unused endpoint are kept;
	// DefaultIdleTimeout when zero.
	IdleTimeout time.Duration

	// leastRequest ignores latency: the load is the requests in flight (NewLeastRequest).
	leastRequest bool

	mu        sync.RWMutex
	stats     map[netip.AddrPort]*ewmaStats
	lastPrune time.Time
}

// NewLeastRequest returns Envoy's LEAST_REQUEST balancer: of two endpoints drawn at random,
// the one with fewer requests in flight (counted with Acquire). rnd returns a number in
// [0, n); nil means math/rand/v2.IntN.
func NewLeastRequest(rnd func(n int) int) *PeakEWMA {
	return &PeakEWMA{Rand: rnd, leastRequest: true}
}

var _ LoadAware = (*PeakEWMA)(nil)

type ewmaStats struct {
	pending atomic.Int64
	// used is when the endpoint was last acquired (Unix nanoseconds).
	used  atomic.Int64
	mu    sync.Mutex
	cost  float64 // nanoseconds
	stamp time.Time
}

func (b *PeakEWMA) now() time.Time {
	if b.Clock == nil {
		return time.Now()
	}
	return b.Clock.Now()
}

func (b *PeakEWMA) decay() float64 {
	if b.Decay <= 0 {
		return float64(DefaultDecay)
	}
	return float64(b.Decay)
}

func (b *PeakEWMA) defaultCost() float64 {
	if b.DefaultRTT <= 0 {
		return float64(DefaultRTT)
	}
	return float64(b.DefaultRTT)
}

func (b *PeakEWMA) intn(n int) int {
	if b.Rand == nil {
		return rand.IntN(n)
	}
	return b.Rand(n)
}

// Pick returns the less loaded of two endpoints drawn at random.
func (b *PeakEWMA) Pick(dst *Destination) (Endpoint, error) {
	if dst == nil || len(dst.Endpoints) == 0 {
		return Endpoint{}, ErrNoEndpoints
	}
	n := len(dst.Endpoints)
	if n == 1 {
		return dst.Endpoints[0], nil
	}
	i := b.intn(n)
	j := b.intn(n - 1)
	if j >= i {
		j++
	}
	a, c := dst.Endpoints[i], dst.Endpoints[j]
	now := b.now()
	la, lc := b.load(a.Addr, now), b.load(c.Addr, now)
	// Loads within tieMargin of each other are a tie, and a is already a random one of the
	// two: replicas that answer about as fast share the traffic about evenly, instead of a
	// ranking by small latency differences sending most of it to whichever is ahead.
	if lc < la*tieMargin {
		return c, nil
	}
	return a, nil
}

// tieMargin: a load below tieMargin times the other's is lower; above it, a tie.
const tieMargin = 0.75

// Load returns the endpoint's load now: its decayed latency average (ns) times one more than
// its requests in flight.
func (b *PeakEWMA) Load(addr netip.AddrPort) float64 { return b.load(addr, b.now()) }

func (b *PeakEWMA) load(addr netip.AddrPort, now time.Time) float64 {
	b.mu.RLock()
	s := b.stats[addr]
	b.mu.RUnlock()
	if s == nil {
		// Never tried: try it now. Acquire then creates its stats at DefaultRTT with one
		// request in flight, so it gets one probe at a time until it has answered, rather
		// than the flood a zero cost would attract, or the starvation of a constant
		// DefaultRTT next to endpoints that answer faster.
		return 0
	}
	pending := float64(s.pending.Load() + 1)
	if b.leastRequest {
		return pending
	}
	s.mu.Lock()
	cost := b.decayed(s, now)
	s.mu.Unlock()
	return cost * pending
}

// decayed is s's cost decayed to now (s.mu held).
func (b *PeakEWMA) decayed(s *ewmaStats, now time.Time) float64 {
	elapsed := now.Sub(s.stamp)
	if elapsed <= 0 {
		return s.cost
	}
	return s.cost * math.Exp(-float64(elapsed)/b.decay())
}

func (b *PeakEWMA) idleTimeout() time.Duration {
	if b.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return b.IdleTimeout
}

func (b *PeakEWMA) statsOf(addr netip.AddrPort) *ewmaStats {
	b.mu.RLock()
	s := b.stats[addr]
	b.mu.RUnlock()
	if s != nil {
		return s
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stats == nil {
		b.stats = map[netip.AddrPort]*ewmaStats{}
		b.lastPrune = now
	}
	if s = b.stats[addr]; s == nil {
		if now.Sub(b.lastPrune) >= b.idleTimeout() {
			b.pruneLocked(now)
		}
		s = &ewmaStats{cost: b.defaultCost(), stamp: now}
		s.used.Store(now.UnixNano())
		b.stats[addr] = s
	}
	return s
}

// Prune forgets the statistics of every endpoint not acquired for IdleTimeout that has no
// request in flight, and returns how many it forgot. Acquire calls it on its own (see
// PeakEWMA); call it to free memory at a time of your choosing.
func (b *PeakEWMA) Prune() int {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pruneLocked(now)
}

func (b *PeakEWMA) pruneLocked(now time.Time) int {
	b.lastPrune = now
	idle := b.idleTimeout()
	n := 0
	for addr, s := range b.stats {
		if s.pending.Load() == 0 && now.Sub(time.Unix(0, s.used.Load())) >= idle {
			delete(b.stats, addr)
			n++
		}
	}
	return n
}

// Tracked returns how many endpoints the balancer keeps statistics of.
func (b *PeakEWMA) Tracked() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.stats)
}

// Release ends one request counted by Acquire: call Done (or DoneAfter) exactly once. The
// zero Release does nothing, so callers may end one that was never acquired.
type Release struct {
	b     *PeakEWMA
	s     *ewmaStats
	start time.Time
}

// Done ends the request with the latency since Acquire, by the balancer's clock.
func (r Release) Done(o Outcome) {
	if r.s == nil {
		return
	}
	r.DoneAfter(r.b.now().Sub(r.start), o)
}

// DoneAfter ends the request with the latency rtt.
func (r Release) DoneAfter(rtt time.Duration, o Outcome) {
	if r.s == nil {
		return
	}
	r.s.pending.Add(-1)
	if r.b.leastRequest {
		return
	}
	r.b.observe(r.s, rtt, o)
}

// Acquire counts a request in flight to addr until the returned Release is done.
func (b *PeakEWMA) Acquire(addr netip.AddrPort) Release {
	s := b.statsOf(addr)
	s.pending.Add(1)
	now := b.now()
	s.used.Store(now.UnixNano())
	return Release{b: b, s: s, start: now}
}

// InFlight returns the requests in flight to addr (acquired and not yet released).
func (b *PeakEWMA) InFlight(addr netip.AddrPort) int64 {
	b.mu.RLock()
	s := b.stats[addr]
	b.mu.RUnlock()
	if s == nil {
		return 0
	}
	return s.pending.Load()
}

// Observe records a latency of addr outside Acquire.
func (b *PeakEWMA) Observe(addr netip.AddrPort, rtt time.Duration) {
	b.observe(b.statsOf(addr), rtt, Success)
}

// observe folds one latency into s. A failure costs at least twice the current average (and
// DefaultRTT, up to MaxFailureCost), so an endpoint that fails fast does not attract traffic; a canceled request's
// latency is a lower bound, so it can only raise the average.
func (b *PeakEWMA) observe(s *ewmaStats, rtt time.Duration, o Outcome) {
	now := b.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rttf := float64(max(rtt, 0))
	switch o {
	case Canceled:
		if rttf <= s.cost {
			return
		}
	case Failure:
		rttf = max(rttf, min(max(2*b.decayed(s, now), b.defaultCost()), float64(MaxFailureCost)))
	}
	if rttf > s.cost {
		s.cost = rttf // peak: jump up at once
	} else {
		elapsed := float64(now.Sub(s.stamp))
		if elapsed < 0 {
			elapsed = 0
		}
		w := math.Exp(-elapsed / b.decay())
		s.cost = s.cost*w + rttf*(1-w)
	}
	s.stamp = now
}

// Forget drops the statistics of endpoints not in keep (call it when endpoints go away).
func (b *PeakEWMA) Forget(keep func(netip.AddrPort) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for addr := range b.stats {
		if !keep(addr) {
			delete(b.stats, addr)
		}
	}
}

// Chain asks each resolver in turn and returns the first that finds the target.
type Chain []Resolver

// Resolve returns the first answer found; an error stops the chain.
func (c Chain) Resolve(ctx context.Context, target Target) (*Destination, bool, error) {
	for _, r := range c {
		dst, found, err := r.Resolve(ctx, target)
		if err != nil || found {
			return dst, found, err
		}
	}
	return nil, false, nil
}
