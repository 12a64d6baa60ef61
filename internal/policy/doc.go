// Package policy is lightmesh's one routing and policy model, and its evaluation. The
// controller translates Istio and Gateway API resources into it (package policy/translate)
// and streams it to proxies; the proxy evaluates it. It imports nothing from Kubernetes, so
// the proxy links it without client-go.
//
// # Outbound: route tables
//
// A VirtualHost is the ordered route table of some hosts (fully qualified, "*.suffix" or
// "*") through some gateways ("mesh" for sidecars, "namespace/name" for an Istio Gateway);
// SelectVirtualHost picks one for a request (exact host before wildcard, then the oldest
// resource). Each Route holds a single Match: a resource rule with several matches becomes
// several Routes, as in Envoy. SelectRoute returns the first Route whose Match the request
// satisfies; there is no other precedence at evaluation time. Istio's VirtualService rules
// keep their list order (first matching rule wins); HTTPRoute matches are sorted at
// translation by Gateway API's precedence. No match means 404.
//
// Path matches come in two prefix kinds: MatchPrefix is Istio's plain string prefix
// ("/api/users" matches "/api/usersX"), MatchSegmentPrefix is Gateway API's PathPrefix (whole
// segments: "/api/users" matches "/api/users", "/api/users/" and "/api/users/1", not
// "/api/usersX"). Regular expressions are RE2 and match the whole string.
//
// A route's WeightedDestinations share traffic in proportion to their weights (PickWeighted);
// 9/1 and 90/10 are the same split. A Destination (DestinationRule) gives a destination host
// its TrafficPolicy (load balancer, connection pool, outlier detection) and its Subsets
// (label selectors with their own merged policy).
//
// # Inbound: mTLS mode and authorization
//
// ResolvePeerAuthentication resolves a workload's PeerAuthentication by scope (workload
// selector, then namespace, then mesh: a policy without selector in one of the configured
// root namespaces, such as "lightmesh" or Istio's "istio-system"); MTLSMode gives the mode of
// a port. SelectAuthorizationPolicies picks the AuthorizationPolicies of a workload, and
// Authorize decides a request with Istio's rules: DENY first, then ALLOW (no ALLOW policy
// allows; some ALLOW policy and none matching denies; an ALLOW policy without rules, `spec:
// {}`, denies everything); AUDIT never changes the decision. Patterns are exact, "prefix*",
// "*suffix" or "*", so "/api/users/*" does not match "/api/users".
//
// # Paths
//
// NormalizePath gives the one path that is both matched and forwarded: unreserved escapes
// decoded, dot segments removed, slashes merged, query dropped, invalid escapes rejected.
// "%2F" is kept as written and is not a separator (Envoy's default KEEP_UNCHANGED).
//
// # Outlier detection
//
// EjectionTime, MayEject and Panic are Envoy's ejection arithmetic; an Ejector applies them to
// a destination's hosts with an injected Clock.
//
// SelectRoute, Authorize and NormalizePath (for an already normal path) do not allocate; the
// benchmarks check it.
package policy
