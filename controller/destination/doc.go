// Package destination is the controller's destination service: proxies subscribe to an
// authority (name.ns.svc.cluster.local:port, or a ClusterIP:port) and receive its endpoints as
// a stream, the full set first, then additions and removals.
//
// The service watches Services, EndpointSlices and Pods with shared informers (Informers).
// An endpoint is sent when it is ready and not terminating; it carries a TLS identity (the
// SPIFFE ID of the pod's ServiceAccount) only when the pod runs the injected proxy and belongs
// to this control plane (label lightmesh.io/control-plane-ns), and a protocol hint: HTTP/2
// between meshed proxies, opaque for the pod's opaque ports. ExternalName services are
// reported as existing without endpoints (DNS resolution of the external name is future work).
//
// Each subscriber has its own goroutine and a one-slot "dirty" signal: informer events never
// block on a subscriber; a slow subscriber computes the newest state when it is ready to send,
// so states it had no time to send are coalesced into one diff.
//
// The gRPC server is TLS-only, with a serving certificate from the identity issuer, and
// requires client certificates that chain to the trust anchors: streams are authenticated by
// the proxy's workload identity.
package destination
