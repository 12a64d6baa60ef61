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
	// TLS is the server's TLS: termination (HTTPS) or a redirect to https (HTTP).
	TLS *ListenerTLS `json:"tls,omitempty"`
}

// The TLS modes of a Gateway server lightmesh terminates.
const (
	// GatewayTLSSimple terminates TLS with the server's certificate.
	GatewayTLSSimple = "SIMPLE"
	// GatewayTLSMutual also requires a client certificate signed by the credential's CA.
	GatewayTLSMutual = "MUTUAL"
)

// GatewayTLS is a Gateway server's tls block as translated.
type GatewayTLS struct {
	// HTTPSRedirect (HTTP servers) answers every request with 301 to its https URL.
	HTTPSRedirect bool `json:"httpsRedirect,omitempty"`
	// Mode (HTTPS servers) is GatewayTLSSimple or GatewayTLSMutual.
	Mode string `json:"mode,omitempty"`
	// CredentialName (HTTPS servers) is the kubernetes.io/tls Secret holding the server's
	// certificate and key, in the namespace of the gateway pod (as in Istio).
	CredentialName string `json:"credentialName,omitempty"`
}

// ListenerTLS is a listener's TLS with, for HTTPS, the credential the destination service
// read from the Secret CredentialName (sent only to the ingress gateway's own identity).
type ListenerTLS struct {
	GatewayTLS
	// Credential is the certificate; nil when the Secret is missing or invalid (Error says
	// why): the listener then serves no certificate for its hosts, so handshakes fail.
	Credential *Credential `json:"credential,omitempty"`
	Error      string      `json:"error,omitempty"`
}

// Credential is a TLS server certificate and key in PEM, and for MUTUAL the CA
// certificates client certificates are verified against.
type Credential struct {
	CertChain  string `json:"certChain"`
	PrivateKey string `json:"privateKey"`
	CACert     string `json:"caCert,omitempty"`
}

// Terminates reports whether the listener terminates TLS (an HTTPS server).
func (l *GatewayListener) Terminates() bool {
	return l.TLS != nil && l.TLS.Mode != ""
}

// CredentialLookup returns the credential of the Secret name in the gateway pod's namespace,
// or an error that says what is wrong with it (missing, not a key pair, no CA for MUTUAL).
type CredentialLookup func(name string, mutual bool) (*Credential, error)

// ResolveCredentials fills the credential of every HTTPS listener with lookup; a lookup
// error is kept in ListenerTLS.Error.
func (g *GatewayPolicy) ResolveCredentials(lookup CredentialLookup) {
	for i := range g.Listeners {
		l := &g.Listeners[i]
		if !l.Terminates() {
			continue
		}
		tls := *l.TLS
		tls.Credential, tls.Error = nil, ""
		c, err := lookup(tls.CredentialName, tls.Mode == GatewayTLSMutual)
		if err != nil {
			tls.Error = err.Error()
		} else {
			tls.Credential = c
		}
		l.TLS = &tls
	}
}

// TLSPort reports whether the gateway terminates TLS on port (some HTTPS server listens
// there; Istio does not mix HTTP and HTTPS servers on one port).
func (g *GatewayPolicy) TLSPort(port uint32) bool {
	if g == nil {
		return false
	}
	for i := range g.Listeners {
		if g.Listeners[i].Port == port && g.Listeners[i].Terminates() {
			return true
		}
	}
	return false
}

// ListenerForSNI returns the HTTPS listener on port whose certificate serves server name
// sni: an exact host first, then the longest wildcard; a client without SNI gets a listener
// with host "*". nil when none.
func (g *GatewayPolicy) ListenerForSNI(port uint32, sni string) *GatewayListener {
	if g == nil {
		return nil
	}
	sni = strings.TrimSuffix(strings.ToLower(sni), ".")
	var best *GatewayListener
	bestScore := -1
	for i := range g.Listeners {
		l := &g.Listeners[i]
		if l.Port != port || !l.Terminates() {
			continue
		}
		for _, h := range l.Hosts {
			score := -1
			switch {
			case h == "*":
				score = 0
			case sni == "":
			case strings.EqualFold(h, sni):
				score = 1 << 20
			case strings.HasPrefix(h, "*") && HostMatches(h, sni):
				score = len(h)
			}
			if score > bestScore {
				best, bestScore = l, score
			}
		}
	}
	return best
}

// HTTPSRedirect reports whether a request to port for authority must be redirected to https:
// the first listener on port whose hosts match it sets tls.httpsRedirect.
func (g *GatewayPolicy) HTTPSRedirect(port uint32, authority string) bool {
	if g == nil {
		return false
	}
	host := strings.TrimSuffix(stripPort(authority), ".")
	for _, l := range g.Listeners {
		if l.Port != port || !slices.ContainsFunc(l.Hosts, func(p string) bool { return HostMatches(p, host) }) {
			continue
		}
		return l.TLS != nil && l.TLS.HTTPSRedirect
	}
	return false
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
			l := GatewayListener{Gateway: ref, Port: s.Port, Protocol: s.Protocol, Hosts: hosts}
			if s.TLS != nil {
				l.TLS = &ListenerTLS{GatewayTLS: *s.TLS}
			}
			out.Listeners = append(out.Listeners, l)
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
