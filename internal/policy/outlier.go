package policy

import (
	"slices"
	"sync"
	"time"
)

// Clock tells the time; the Ejector reads it so that tests can drive it.
// identity.FakeClock satisfies it.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// DefaultMaxEjectionTime is Envoy's max_ejection_time, which Istio does not expose: an
// ejection never lasts longer than this, or than the base ejection time if that is longer.
const DefaultMaxEjectionTime = 300 * time.Second

// EjectionTime is how long a host stays ejected, by Envoy's rule: base times the host's
// ejection multiplier (the number of times it was ejected, less the healthy intervals since),
// capped at max(DefaultMaxEjectionTime, base).
func EjectionTime(base time.Duration, multiplier uint32) time.Duration {
	limit := max(DefaultMaxEjectionTime, base)
	if multiplier == 0 {
		multiplier = 1
	}
	if base > 0 && time.Duration(multiplier) > limit/base {
		return limit
	}
	return min(base*time.Duration(multiplier), limit)
}

// MayEject reports whether one more of hosts may be ejected while ejected already are, by
// Envoy's rule: only while 100*(ejected+1)/hosts <= maxEjectionPercent. With the default
// 10 % no host of a pool smaller than ten is ever ejected.
func MayEject(ejected, hosts int, maxEjectionPercent uint32) bool {
	if hosts <= 0 {
		return false
	}
	return 100*uint64(ejected+1) <= uint64(maxEjectionPercent)*uint64(hosts)
}

// Panic reports whether fewer than minHealthPercent of hosts are healthy; the balancer then
// uses every host, ejected or not (Istio's minHealthPercent, Envoy's panic threshold).
func Panic(healthy, hosts int, minHealthPercent uint32) bool {
	if hosts <= 0 || minHealthPercent == 0 {
		return false
	}
	return 100*uint64(healthy) < uint64(minHealthPercent)*uint64(hosts)
}

// Ejector applies a destination's OutlierDetection to its hosts with Envoy's rules:
//
//   - Record counts consecutive 5xx (and consecutive 502/503/504) answers per host; the
//     answer that reaches a threshold ejects the host at once, if MayEject allows it, and
//     resets its counters; any other answer resets them.
//   - Each ejection raises the host's multiplier by one (while EjectionTime is below its cap).
//   - Sweep, which the proxy calls every Interval, returns to service each ejected host whose
//     EjectionTime has passed since its ejection, and lowers by one the multiplier of every
//     host that was not ejected during the interval.
//
// It is safe for concurrent use.
type Ejector struct {
	mu      sync.Mutex
	config  OutlierDetection
	clock   Clock
	hosts   map[string]*hostState
	ejected int
}

type hostState struct {
	consecutive5xx     uint32
	consecutiveGateway uint32
	ejected            bool
	ejectedAt          time.Time
	multiplier         uint32
}

// NewEjector returns an Ejector for hosts (endpoint addresses) under config; clock nil means
// the system clock.
func NewEjector(config OutlierDetection, clock Clock, hosts []string) *Ejector {
	if clock == nil {
		clock = systemClock{}
	}
	e := &Ejector{config: config, clock: clock, hosts: make(map[string]*hostState, len(hosts))}
	e.SetHosts(hosts)
	return e
}

// SetHosts replaces the set of hosts: new ones start healthy, gone ones are forgotten, the
// others keep their state.
func (e *Ejector) SetHosts(hosts []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	keep := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		keep[h] = true
		if _, ok := e.hosts[h]; !ok {
			e.hosts[h] = &hostState{}
		}
	}
	for h, state := range e.hosts {
		if !keep[h] {
			if state.ejected {
				e.ejected--
			}
			delete(e.hosts, h)
		}
	}
}

// Record counts an answer of host: status is the HTTP status, or 503 for a failure to
// connect or a reset (Envoy counts those as 5xx and gateway errors). It returns true when
// this answer ejected the host.
func (e *Ejector) Record(host string, status int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	state, ok := e.hosts[host]
	if !ok || state.ejected {
		return false
	}
	if status < 500 || status > 599 {
		state.consecutive5xx, state.consecutiveGateway = 0, 0
		return false
	}
	state.consecutive5xx++
	if status == 502 || status == 503 || status == 504 {
		state.consecutiveGateway++
	} else {
		state.consecutiveGateway = 0
	}
	tripped := (e.config.Consecutive5xxErrors > 0 && state.consecutive5xx >= e.config.Consecutive5xxErrors) ||
		(e.config.ConsecutiveGatewayErrors > 0 && state.consecutiveGateway >= e.config.ConsecutiveGatewayErrors)
	if !tripped {
		return false
	}
	state.consecutive5xx, state.consecutiveGateway = 0, 0
	if !MayEject(e.ejected, len(e.hosts), e.config.MaxEjectionPercent) {
		return false
	}
	state.ejected = true
	state.ejectedAt = e.clock.Now()
	base := e.config.BaseEjectionTime.D()
	if base <= 0 || time.Duration(state.multiplier)*base < max(DefaultMaxEjectionTime, base) {
		state.multiplier++
	}
	e.ejected++
	return true
}

// Sweep runs the interval check: it returns the hosts it returned to service, sorted.
func (e *Ejector) Sweep() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	var returned []string
	for h, state := range e.hosts {
		if !state.ejected {
			if state.multiplier > 0 {
				state.multiplier--
			}
			continue
		}
		if now.Sub(state.ejectedAt) >= EjectionTime(e.config.BaseEjectionTime.D(), state.multiplier) {
			state.ejected = false
			e.ejected--
			returned = append(returned, h)
		}
	}
	slices.Sort(returned)
	return returned
}

// Ejected reports whether host is ejected.
func (e *Ejector) Ejected(host string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	state, ok := e.hosts[host]
	return ok && state.ejected
}

// Multiplier returns host's ejection multiplier (for tests and the admin endpoint).
func (e *Ejector) Multiplier(host string) uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if state, ok := e.hosts[host]; ok {
		return state.multiplier
	}
	return 0
}

// Panic reports whether fewer than MinHealthPercent of the hosts are healthy: the balancer
// should then ignore ejections.
func (e *Ejector) Panic() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Panic(len(e.hosts)-e.ejected, len(e.hosts), e.config.MinHealthPercent)
}
