package discovery

import (
	"context"
	"strings"
	"sync"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// PolicySource supplies routing and authorization policy to the proxy. The destination
// client (proxy/destination) implements it with the controller's policy streams;
// StaticPolicy is a fixed table for tests and standalone runs. A proxy without a
// PolicySource applies none: no routes, PERMISSIVE, every request allowed.
type PolicySource interface {
	// Outbound returns the policy of the service at authority (name.ns.svc.<domain>:port, as
	// Destination.Name), nil when there is none. The first call for an authority may wait
	// for the first answer until ctx ends; later calls answer from the last state received.
	Outbound(ctx context.Context, authority string) (*policy.OutboundPolicy, error)
	// Inbound returns this workload's inbound policy; nil means the defaults (PERMISSIVE, no
	// authorization policy: everything allowed).
	Inbound() *policy.InboundPolicy
}

// StaticPolicy is a PolicySource with fixed answers, changeable at run time (tests). It is
// safe for concurrent use.
type StaticPolicy struct {
	mu       sync.RWMutex
	outbound map[string]*policy.OutboundPolicy
	inbound  *policy.InboundPolicy
}

// NewStaticPolicy returns a source with no policy.
func NewStaticPolicy() *StaticPolicy {
	return &StaticPolicy{outbound: map[string]*policy.OutboundPolicy{}}
}

// SetOutbound sets (nil: removes) the policy of p.Authority.
func (s *StaticPolicy) SetOutbound(authority string, p *policy.OutboundPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		delete(s.outbound, strings.ToLower(authority))
		return
	}
	s.outbound[strings.ToLower(authority)] = p
}

// SetInbound sets the inbound policy (nil: the defaults).
func (s *StaticPolicy) SetInbound(p *policy.InboundPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inbound = p
}

// Outbound returns the policy set for authority.
func (s *StaticPolicy) Outbound(_ context.Context, authority string) (*policy.OutboundPolicy, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.outbound[strings.ToLower(authority)], nil
}

// Inbound returns the inbound policy set.
func (s *StaticPolicy) Inbound() *policy.InboundPolicy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.inbound
}
