package policy

import (
	"slices"
	"strings"
)

// GatewayPolicy is what an ingress gateway proxy needs: the listeners of the Istio Gateways
// whose selector matches its pod, the route tables (VirtualHosts) bound to those Gateways, and
// the traffic policies of every host the routes reach. Istio's default applies: a Gateway
// selects gateway pods of any namespace by their labels.
type GatewayPolicy struct {
	// Listeners are the Gateways' servers, exact-host servers before wildcard ones.
	Listeners []GatewayListener `json:"listeners,omitempty"`
	// VirtualHosts are the route tables bound to those Gateways.
	VirtualHosts []VirtualHost `json:"virtualHosts,omitempty"`
	// Destinations are the traffic policies of the hosts the routes reach.
	Destinations []Destination `json:"destinations,omitempty"`
}

// GatewayListener is one server of a Gateway: requests to Port whose host matches Hosts are
// routed by the VirtualHosts bound to Gateway ("namespace/name").
type GatewayListener struct {
	Gateway  string   `json:"gateway"`
	Port     uint32   `json:"port"`
	Protocol string   `json:"protocol"`
	Hosts    []string `json:"hosts"`
}

// BuildGatewayPolicy picks from m what a gateway pod with labels serves.
func BuildGatewayPolicy(m *Model, labels map[string]string) GatewayPolicy {
	var out GatewayPolicy
	gateways := map[string]bool{}
	for _, gw := range m.Gateways {
		if gw.Selector == nil || !SelectorMatches(gw.Selector, labels) {
			continue // a Gateway without selector selects no pod (Istio requires one)
		}
		ref := gw.Namespace + "/" + gw.Name
		gateways[ref] = true
		for _, s := range gw.Servers {
			hosts := make([]string, 0, len(s.Hosts))
			for _, h := range s.Hosts {
				hosts = append(hosts, serverHost(h))
			}
			out.Listeners = append(out.Listeners, GatewayListener{Gateway: ref, Port: s.Port, Protocol: s.Protocol, Hosts: hosts})
		}
	}
	slices.SortStableFunc(out.Listeners, func(a, b GatewayListener) int {
		return wildcardRank(a.Hosts) - wildcardRank(b.Hosts)
	})
	reached := map[string]bool{}
	for _, vh := range m.VirtualHosts {
		bound := false
		for _, g := range vh.Gateways {
			bound = bound || gateways[g]
		}
		if !bound {
			continue
		}
		out.VirtualHosts = append(out.VirtualHosts, vh)
		for _, r := range vh.Routes {
			for _, d := range r.Destinations {
				reached[d.Host] = true
			}
		}
	}
	for _, d := range m.Destinations {
		if reached[d.Host] {
			out.Destinations = append(out.Destinations, d)
		}
	}
	return out
}

// serverHost drops the namespace part of a Gateway server host ("ns/host", "*/host",
// "./host"): lightmesh does not restrict which namespaces' VirtualServices bind.
func serverHost(h string) string {
	if _, host, ok := strings.Cut(h, "/"); ok {
		return host
	}
	return h
}

// wildcardRank orders listeners: 0 when every host is exact, 1 with a "*.suffix", 2 with "*".
func wildcardRank(hosts []string) int {
	rank := 0
	for _, h := range hosts {
		switch {
		case h == "*":
			rank = max(rank, 2)
		case strings.HasPrefix(h, "*"):
			rank = max(rank, 1)
		}
	}
	return rank
}

// Ports returns the ports the gateway listens on, sorted, each once.
func (g *GatewayPolicy) Ports() []uint32 {
	var ports []uint32
	for _, l := range g.Listeners {
		if !slices.Contains(ports, l.Port) {
			ports = append(ports, l.Port)
		}
	}
	slices.Sort(ports)
	return ports
}

// Select returns the route table for a request that arrived on port for authority: the first
// listener on that port whose hosts match the request's host picks its Gateway, and that
// Gateway's VirtualHosts are selected as SelectVirtualHost does (the VirtualService hosts
// must match the request too). false means no listener or no route table: 404.
func (g *GatewayPolicy) Select(port uint32, authority string) (*VirtualHost, bool) {
	if g == nil {
		return nil, false
	}
	host := strings.TrimSuffix(stripPort(authority), ".")
	for _, l := range g.Listeners {
		if l.Port != port || !slices.ContainsFunc(l.Hosts, func(p string) bool { return HostMatches(p, host) }) {
			continue
		}
		if vh, ok := SelectVirtualHost(g.VirtualHosts, l.Gateway, authority, port); ok {
			return vh, true
		}
	}
	return nil, false
}

// Destination returns the traffic policy of host, or nil.
func (g *GatewayPolicy) Destination(host string) *Destination {
	if g == nil {
		return nil
	}
	for i := range g.Destinations {
		if g.Destinations[i].Host == host {
			return &g.Destinations[i]
		}
	}
	return nil
}
