// Package destination is the controller's destination service: proxies subscribe to an
// authority (name.ns.svc.cluster.local:port, a ClusterIP:port, or a pod IP:port) and receive
// its endpoints as a stream, the full set first, then additions and removals; and to the
// traffic policy of an authority (GetOutboundPolicy) or of their own pod (GetInboundPolicy).
//
// The service watches Services, EndpointSlices and Pods with shared informers (Informers). An
// endpoint is sent when it is ready and not terminating; it carries a TLS identity (the SPIFFE
// ID of the pod's ServiceAccount) only when the pod runs the injected proxy and belongs to
// this control plane (label lightmesh.io/control-plane-ns), and a protocol hint: HTTP/2
// between meshed proxies, opaque for the pod's opaque ports; and the pod's labels (for
// DestinationRule subsets). A pod IP that is no ClusterIP is that pod (with its identity when
// meshed, so direct pod traffic gets mTLS; not on the ports its proxy leaves alone: 4143,
// 4190, 4191 and skip-inbound-ports, nor through a Service); on its intercepted ports it declares the protocol of the
// Service ports of its namespace that select it and target that port (none when they
// conflict). An ExternalName service's name is resolved with DNS (A and AAAA, the servers of
// /etc/resolv.conf unless configured) while someone subscribes, again at the answer's TTL
// clamped to [5 s, 60 s]; its endpoints have the authority's port and no identity, and a
// failed resolution keeps the last answer.
//
// Policy streams carry the JSON form of internal/policy's OutboundPolicy and InboundPolicy
// (format "lightmesh.policy.v1+json"), computed from the model of a PolicySource
// (controller/policy.Watcher): the mesh route table of the service and the DestinationRules
// of every host it reaches; the pod's resolved PeerAuthentication, its AuthorizationPolicies
// (root namespaces: the control plane's and istio-system) and its HTTP probes. A new message
// is sent only when the policy changed. Only the pod's own ServiceAccount identity may read
// its inbound policy (PERMISSION_DENIED otherwise).
//
// Every informer event fires the keys of its object (a Service's name, namespace and cluster
// IPs, an EndpointSlice's Service, a Pod's name and IPs). The streams of one authority share a
// watch that records the keys its state was computed from and is recomputed, once per change
// for all its streams, by a small pool of workers when one of them fires. Each stream has its
// own goroutine and a one-slot "newer state" signal: neither events nor workers ever block on
// a stream; a slow stream diffs the newest state against what it last sent when it is ready to
// send, so states it had no time to send are coalesced into one diff. Policy streams listen to
// the policy model and to their authority's cluster IP or their own Pod the same way.
//
// The gRPC server is TLS-only, with a serving certificate from the identity issuer, and
// requires client certificates that chain to the trust anchors: streams are authenticated by
// the proxy's workload identity.
package destination
