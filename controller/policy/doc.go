// Package policy is the controller's policy watcher: it watches the Istio resources
// (networking.istio.io VirtualService, DestinationRule, Gateway; security.istio.io
// PeerAuthentication, AuthorizationPolicy) and Gateway API HTTPRoutes with dynamic informers,
// translates them all with internal/policy/translate into one policy.Model, and tells the
// destination service when the model changed, so that it streams the new policy to proxies.
//
// Each kind is watched at the newest version the API server serves (networking.istio.io v1,
// then v1beta1, then v1alpha3; security.istio.io v1, then v1beta1; gateway.networking.k8s.io
// v1). A kind whose CRD is not installed is looked for again every RetryInterval, so
// installing Istio's CRDs later needs no restart, and never stops the controller.
//
// Changes are coalesced: a burst of events is one translation. Every field lightmesh does
// not support and every invalid resource is logged once per resource generation and
// reported on the resource through its status subresource: Istio resources get
// status.conditions Accepted and Reconciled, HTTPRoutes a status.parents entry per Service
// parent with controllerName lightmesh.io/mesh-controller and the conditions Accepted and
// ResolvedRefs. Status is written only when it changes.
//
// Gateways with HTTPS servers take their certificates from Secrets of the ingress gateway's
// namespace (Options.GatewayNamespace), which the watcher then watches too: GatewayCredential
// serves them to the destination service, a Secret change re-translates (so a rotation reaches
// the gateway live), and such a Gateway gets a ResolvedRefs condition naming every Secret that
// is missing or holds no usable certificate.
package policy
