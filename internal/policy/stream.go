package policy

// OutboundPolicy is what a client proxy needs to send requests to one service: the route
// table that applies to the service's authority for the mesh (sidecars) or for one gateway,
// and the traffic policies of every host those routes reach. The destination service streams
// it per authority; the proxy keeps the last one it received.
type OutboundPolicy struct {
	// Authority is the service the policy is for, as name.namespace.svc.<domain>:port.
	Authority string `json:"authority"`
	// VirtualHost is the route table that applies (SelectVirtualHost for the mesh gateway, or
	// for the gateway the proxy runs as); nil means no routes: requests go to the service
	// itself, as without policy.
	VirtualHost *VirtualHost `json:"virtualHost,omitempty"`
	// Destinations are the traffic policies (DestinationRules) of the service and of every
	// host VirtualHost's routes send to, by Destination.Host.
	Destinations []Destination `json:"destinations,omitempty"`
}

// Destination returns the traffic policy of host, or nil.
func (p *OutboundPolicy) Destination(host string) *Destination {
	if p == nil {
		return nil
	}
	for i := range p.Destinations {
		if p.Destinations[i].Host == host {
			return &p.Destinations[i]
		}
	}
	return nil
}

// InboundPolicy is what a server proxy enforces on the requests and connections it accepts
// for its workload: the resolved mutual TLS mode and the authorization policies that select
// the workload. The destination service streams it per pod.
type InboundPolicy struct {
	// PeerAuthentication is the workload's resolved mode (ResolvePeerAuthentication).
	PeerAuthentication WorkloadPeerAuthentication `json:"peerAuthentication"`
	// AuthorizationPolicies select the workload (SelectAuthorizationPolicies), in the order
	// Authorize evaluates them.
	AuthorizationPolicies []AuthorizationPolicy `json:"authorizationPolicies,omitempty"`
	// Probes are the kubelet's HTTP probes of the pod's containers. A plain-text GET or HEAD
	// to exactly one of them is exempt from PeerAuthentication and authorization (as Istio
	// and Linkerd let probes through), so a STRICT or deny-all policy does not kill the pod.
	Probes []Probe `json:"probes,omitempty"`
}

// Probe is one HTTP probe of a pod's container: the container port and the path.
type Probe struct {
	Port uint32 `json:"port"`
	Path string `json:"path"`
}

// IsProbe reports whether a request for path on port is one of the probes.
func (p *InboundPolicy) IsProbe(port uint32, path string) bool {
	if p == nil {
		return false
	}
	for _, probe := range p.Probes {
		if probe.Port == port && probe.Path == path {
			return true
		}
	}
	return false
}
