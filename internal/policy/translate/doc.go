// Package translate turns Istio and Gateway API resources into lightmesh's routing and
// policy model (package policy). It reads them as YAML or JSON (TranslateYAML) or as
// unstructured objects from the API server (TranslateObjects):
//
//   - networking.istio.io v1alpha3, v1beta1 and v1: Gateway, VirtualService, DestinationRule;
//   - security.istio.io v1beta1 and v1: PeerAuthentication, AuthorizationPolicy;
//   - gateway.networking.k8s.io v1 (and v1beta1): HTTPRoute with Service parents (GAMMA).
//
// Istio's semantics decide every edge case. Short host names resolve in the resource's
// namespace ("user-service" in "microservices" is
// "user-service.microservices.svc.cluster.local"); a VirtualService without gateways binds to
// the mesh, one that lists gateways binds only to them unless "mesh" is listed too. Each
// VirtualService http rule becomes one route per match, in list order (first match wins);
// a route without retries gets Istio's default retry policy (2 retries on connect-failure,
// refused-stream, unavailable, cancelled and 503); a DestinationRule's outlier detection
// gets Envoy's defaults for the fields it leaves out. HTTPRoute matches of one Service are
// sorted by Gateway API precedence across all its HTTPRoutes (exact path, regular
// expression, longest prefix, method, most headers, most query parameters, oldest route,
// namespace/name); PathPrefix matches whole segments.
//
// Nothing is silently ignored. Decoding is strict: an unknown field (a typo) and every field
// lightmesh does not implement are returned as Unsupported entries (resource, field path,
// reason), for status conditions and `mesh check`. Where an unsupported field guards access,
// translation fails closed: an AuthorizationPolicy ALLOW rule that uses one is left out
// (it allows nothing), a DENY rule is enforced without it (it denies more), a CUSTOM policy
// is enforced as DENY, and an HTTPRoute rule with an ExternalAuth or ExtensionRef filter
// answers 500. An unsupported route match condition (sourceLabels, sourceNamespace,
// per-match gateways) leaves the match out rather than widen it.
//
// Gateway servers: HTTP, HTTP2 and GRPC; HTTPS with tls.mode SIMPLE (the default) or MUTUAL
// and a credentialName (the Secret is resolved later, by the controller, in the gateway's
// namespace); tls.httpsRedirect on HTTP servers. PASSTHROUGH and other modes, certificate
// files and other protocols are reported and the server is left out.
//
// Invalid values (a bad regular expression, a negative weight, weights summing to 0, an
// unknown PeerAuthentication mode, a malformed duration, ...) are *FieldError errors naming
// the resource and the field; the resource is left out of the model and the others are
// still translated.
package translate
