// Package tap is the proxy's side of live request tapping: a Hub that the data plane
// publishes finished requests to (at no cost while nobody taps: one atomic load), and a
// Server that streams them, filtered, as newline-delimited JSON (internal/tap.Event) to the
// controller over mutual TLS on port 4190. Only the controller's identity may open a tap.
//
// A slow reader never slows traffic: each tap has a bounded buffer, and events that do not
// fit are dropped and counted (the stream ends with a StreamError line saying how many).
// At most MaxTaps taps run at once per proxy.
package tap

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/lightmesh/lightmesh/internal/tap"
)

// Defaults of a Hub.
const (
	// DefaultMaxTaps is how many taps may run at once on one proxy.
	DefaultMaxTaps = 4
	// DefaultBuffer is how many events a tap holds for its reader before dropping.
	DefaultBuffer = 256
)

// ErrTooManyTaps is returned by Subscribe when MaxTaps taps are already running.
var ErrTooManyTaps = errors.New("too many taps on this proxy; wait for one to end")

// Hub hands every published event to the taps whose filter it matches. It is safe for
// concurrent use.
type Hub struct {
	maxTaps, buffer int
	// subs is the current list of taps, replaced (copy on write) when one starts or ends, so
	// Publish reads it without a lock; active mirrors its length for the data plane's check.
	subs    atomic.Pointer[[]*Subscription]
	active  atomic.Int32
	mu      sync.Mutex // serialises changes of subs
	dropped atomic.Uint64
}

// NewHub returns a hub allowing maxTaps taps at once (DefaultMaxTaps when 0), each with a
// buffer of buffer events (DefaultBuffer when 0).
func NewHub(maxTaps, buffer int) *Hub {
	if maxTaps <= 0 {
		maxTaps = DefaultMaxTaps
	}
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	h := &Hub{maxTaps: maxTaps, buffer: buffer}
	h.subs.Store(&[]*Subscription{})
	return h
}

// Active reports whether anyone taps: the data plane builds no event when it is false.
// A nil hub is never active.
func (h *Hub) Active() bool { return h != nil && h.active.Load() > 0 }

// Dropped returns how many events all taps have dropped since the hub started.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Subscription is one running tap.
type Subscription struct {
	hub     *Hub
	filter  tap.Filter
	events  chan tap.Event
	dropped atomic.Uint64
	once    sync.Once
}

// Subscribe starts a tap of the events that match f; Close ends it. It fails with
// ErrTooManyTaps when MaxTaps are running.
func (h *Hub) Subscribe(f tap.Filter) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.subs.Load()
	if len(old) >= h.maxTaps {
		return nil, ErrTooManyTaps
	}
	s := &Subscription{hub: h, filter: f, events: make(chan tap.Event, h.buffer)}
	next := append(old[:len(old):len(old)], s)
	h.subs.Store(&next)
	h.active.Store(int32(len(next)))
	return s, nil
}

// Events delivers the tap's events. It is never closed: stop reading after Close.
func (s *Subscription) Events() <-chan tap.Event { return s.events }

// Dropped returns how many events this tap dropped because its reader was behind.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the tap; it is safe to call more than once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		h := s.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		old := *h.subs.Load()
		next := make([]*Subscription, 0, len(old))
		for _, o := range old {
			if o != s {
				next = append(next, o)
			}
		}
		h.subs.Store(&next)
		h.active.Store(int32(len(next)))
	})
}

// Publish hands ev to every tap whose filter matches it, without ever blocking: a tap whose
// buffer is full drops it.
func (h *Hub) Publish(ev *tap.Event) {
	for _, s := range *h.subs.Load() {
		if !s.filter.MatchEvent(ev) {
			continue
		}
		select {
		case s.events <- *ev:
		default:
			s.dropped.Add(1)
			h.dropped.Add(1)
		}
	}
}
