// Package discovery answers where a connection or request should go: the endpoints of a
// destination (addresses and, for meshed pods, their identities) and how to pick one. Both
// are small interfaces; Static is a fixed table for tests and standalone runs (the
// controller's destination service is proxy/destination), RoundRobin a simple balancer and
// PeakEWMA the power-of-two-choices balancer over peak-EWMA latency. Without an answer the
// proxy forwards to the original destination unchanged (passthrough).
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// Endpoint is one place a destination can be reached.
type Endpoint struct {
	// Addr is the pod's address and port.
	Addr netip.AddrPort
	// Identity is the endpoint proxy's identity; zero when the endpoint is not meshed.
	Identity identity.SpiffeID
}

// Meshed reports whether the endpoint runs a proxy the client must reach over mTLS.
func (e Endpoint) Meshed() bool { return !e.Identity.IsZero() }

// Destination is what discovery knows of a target.
type Destination struct {
	// Name labels the destination in metrics (an authority or an address).
	Name string
	// Endpoints are the places to balance over. A found Destination without endpoints is a
	// service that exists but has none ready: the proxy answers 503 (or closes opaque
	// connections) instead of passing through.
	Endpoints []Endpoint
}

// Target is what the proxy asks about: the authority of an HTTP request (empty for TCP)
// and the original destination address.
type Target struct {
	Authority string
	Addr      netip.AddrPort
}

// Resolver finds destinations. Resolve returns found=false when it knows nothing of the
// target (passthrough); an error means it cannot answer now.
type Resolver interface {
	Resolve(ctx context.Context, target Target) (dst *Destination, found bool, err error)
}

// Balancer picks one endpoint of a destination.
type Balancer interface {
	Pick(dst *Destination) (Endpoint, error)
}

// ErrNoEndpoints means a destination has no endpoint to pick.
var ErrNoEndpoints = errors.New("the destination has no endpoints")

// RoundRobin picks endpoints in turn. It is safe for concurrent use.
type RoundRobin struct{ next atomic.Uint64 }

// Pick returns the next endpoint.
func (r *RoundRobin) Pick(dst *Destination) (Endpoint, error) {
	if dst == nil || len(dst.Endpoints) == 0 {
		return Endpoint{}, ErrNoEndpoints
	}
	if len(dst.Endpoints) == 1 {
		return dst.Endpoints[0], nil
	}
	return dst.Endpoints[(r.next.Add(1)-1)%uint64(len(dst.Endpoints))], nil
}

// Static is a fixed table of destinations, by authority (host:port) and by address.
// Authorities are looked up first. It is safe for concurrent reads.
type Static struct {
	byAuthority map[string]*Destination
	byAddr      map[netip.AddrPort]*Destination
}

// NewStatic returns an empty table.
func NewStatic() *Static {
	return &Static{byAuthority: map[string]*Destination{}, byAddr: map[netip.AddrPort]*Destination{}}
}

// Add maps key, an address ("10.0.0.1:80") or an authority ("web.shop.svc.cluster.local:80"),
// to endpoints. Call it before the proxy starts.
func (s *Static) Add(key string, endpoints ...Endpoint) error {
	if len(endpoints) == 0 {
		return fmt.Errorf("discovery: %q has no endpoints; give at least one", key)
	}
	dst := &Destination{Name: key, Endpoints: endpoints}
	if addr, err := netip.ParseAddrPort(key); err == nil {
		s.byAddr[addr] = dst
		return nil
	}
	host, port, ok := strings.Cut(key, ":")
	if !ok || host == "" || port == "" {
		return fmt.Errorf("discovery: %q is neither ip:port nor host:port; write it as web.shop.svc.cluster.local:80 or 10.0.0.1:80", key)
	}
	s.byAuthority[strings.ToLower(key)] = dst
	return nil
}

// Resolve looks up the authority, then the address.
func (s *Static) Resolve(_ context.Context, target Target) (*Destination, bool, error) {
	if target.Authority != "" {
		if dst, ok := s.byAuthority[target.Authority]; ok {
			return dst, true, nil
		}
	}
	if dst, ok := s.byAddr[target.Addr]; ok {
		return dst, true, nil
	}
	return nil, false, nil
}

// ParseStatic reads a table written as entries separated by commas or white space, each
// KEY=ENDPOINT[|ENDPOINT...], where KEY is ip:port or host:port and ENDPOINT is ip:port,
// optionally followed by @ and the endpoint proxy's SPIFFE ID:
//
//	web.shop.svc.cluster.local:80=10.0.0.5:8080@spiffe://cluster.local/ns/shop/sa/web|10.0.0.6:8080
func ParseStatic(text string) (*Static, error) {
	s := NewStatic()
	for _, entry := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		key, list, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("discovery entry %q: write KEY=ENDPOINT[|ENDPOINT], e.g. 10.0.0.1:80=10.0.0.1:80@spiffe://cluster.local/ns/shop/sa/web", entry)
		}
		var endpoints []Endpoint
		for _, spec := range strings.Split(list, "|") {
			addrText, idText, meshed := strings.Cut(spec, "@")
			addr, err := netip.ParseAddrPort(addrText)
			if err != nil {
				return nil, fmt.Errorf("discovery entry %q: endpoint %q: %w; write ip:port", entry, spec, err)
			}
			ep := Endpoint{Addr: addr}
			if meshed {
				if ep.Identity, err = identity.ParseSpiffeID(idText); err != nil {
					return nil, fmt.Errorf("discovery entry %q: %w", entry, err)
				}
			}
			endpoints = append(endpoints, ep)
		}
		if err := s.Add(key, endpoints...); err != nil {
			return nil, err
		}
	}
	return s, nil
}
