// Package injector is the controller's mutating admission webhook: the API server sends it
// every Pod being created (outside kube-system and the control plane's namespace), and it
// answers with a JSONPatch that adds lightmesh's proxy when the pod, or else its namespace,
// is annotated lightmesh.io/inject: enabled (or ingress, on the pod).
//
// The sidecar is internal/inject's transformation with the installation's configuration (the
// lightmesh-config ConfigMap, read as `mesh inject` reads it), so a pod the webhook injects
// has exactly the spec `mesh inject` gives it; only lightmesh.io/injected-by says who did it.
//
// A request that is not an AdmissionReview (bad JSON, no request, another kind, a body over
// MaxBodyBytes) gets HTTP 400. A review of a pod that cannot be injected (bad annotations,
// hostNetwork, a name clash, no configuration) is allowed unchanged with a warning, so a
// lightmesh problem never blocks a workload; pods annotated disabled, already injected, or
// in an excluded namespace are allowed unchanged silently.
package injector
