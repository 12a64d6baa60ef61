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
	// Protocol is what the destination service says the endpoint speaks; ProtocolUnknown
	// lets the proxy detect it.
	Protocol ProtocolHint
	// Labels are the endpoint pod's labels (DestinationRule subsets select by them); nil
	// when unknown.
	Labels map[string]string
	// AppProtocol is the protocol the Service's port declares (its appProtocol, or the
	// prefix of its name as Istio reads it: http, http2, grpc, tcp, ...), lower case; empty
	// when it declares none.
	AppProtocol string
}

// ClientSpeaksFirst reports whether the endpoint's port declares a protocol whose client
// speaks first: HTTP/1, HTTP/2, gRPC or WebSocket.
func (e Endpoint) ClientSpeaksFirst() bool {
	switch e.AppProtocol {
	case "http", "http2", "h2c", "grpc", "grpc-web", "kubernetes.io/h2c", "kubernetes.io/ws":
		return true
	}
	return false
}

// ProtocolHint tells the outbound proxy how to reach an endpoint.
type ProtocolHint uint8

// Protocol hints.
const (
	// ProtocolUnknown: no hint; the proxy detects the protocol.
	ProtocolUnknown ProtocolHint = iota
	// ProtocolHTTP2: the endpoint's proxy accepts HTTP/2 from other proxies.
	ProtocolHTTP2
	// ProtocolOpaque: the endpoint's port is opaque; the proxy carries the connection's
	// bytes without HTTP handling (over the mesh transport when the endpoint is meshed).
	ProtocolOpaque
)

// String returns the hint's name.
func (h ProtocolHint) String() string {
	switch h {
	case ProtocolHTTP2:
		return "http2"
	case ProtocolOpaque:
		return "opaque"
	}
	return "unknown"
}

// Opaque reports whether the endpoint must be reached as opaque TCP.
func (e Endpoint) Opaque() bool { return e.Protocol == ProtocolOpaque }

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

// Opaque reports whether any endpoint of dst is hinted opaque: its connections must skip
// HTTP handling (a port's endpoints share the hint; during a change, opaque wins).
func (d *Destination) Opaque() bool {
	if d == nil {
		return false
	}
	for i := range d.Endpoints {
		if d.Endpoints[i].Opaque() {
			return true
		}
	}
	return false
}

// ClientSpeaksFirst reports whether every endpoint of dst declares a protocol whose client
// speaks first (Endpoint.ClientSpeaksFirst): then a connection on which the client has sent
// nothing yet is an idle one, not a server-speaks-first protocol waiting for its greeting.
func (d *Destination) ClientSpeaksFirst() bool {
	if d == nil || len(d.Endpoints) == 0 {
		return false
	}
	for i := range d.Endpoints {
		if !d.Endpoints[i].ClientSpeaksFirst() {
			return false
		}
	}
	return true
}

// Balancer picks one endpoint of a destination.
type Balancer interface {
	Pick(dst *Destination) (Endpoint, error)
}

// LoadAware is a Balancer that learns from the traffic it balances: the proxy calls Acquire
// just before sending to the endpoint picked and ends the returned Release once, when the
// answer (response headers, or the connection) or the failure comes.
type LoadAware interface {
	Balancer
	Acquire(addr netip.AddrPort) Release
}

// Outcome is how a request counted by Acquire ended.
type Outcome uint8

// Outcomes.
const (
	// Success: the endpoint answered (whatever the status).
	Success Outcome = iota
	// Failure: the endpoint failed (refused, reset, timed out): its cost rises.
	Failure
	// Canceled: the caller gave up first; the latency is only a lower bound.
	Canceled
)

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
