// Package inject is the one transformation that adds lightmesh's data plane to Kubernetes
// workloads and takes it away again: `mesh inject` and `mesh uninject` run it on YAML
// streams, and the controller's admission webhook runs it on the pods it admits.
//
// # What injection adds to a pod template
//
// Only the pod template (a Pod's own metadata and spec) changes; the application's containers
// are never touched.
//
//   - initContainers[0], "mesh-init": the mesh-proxy-init image (version.Image), run as root
//     with NET_ADMIN and NET_RAW (all other capabilities dropped), with the iptables arguments
//     of proxy-init/README.md (--incoming-proxy-port 4143, --outgoing-proxy-port 4140,
//     --proxy-uid 2102, --inbound-ports-to-ignore 4190,4191[,skip-inbound-ports],
//     --outbound-ports-to-ignore, --subnets-to-ignore, --ipv6 when an IPv6 subnet is skipped).
//   - initContainers[1], "mesh-proxy": the proxy as a native sidecar (restartPolicy: Always),
//     user 2102, ports 4143 "mesh-proxy" and 4191 "mesh-admin", a startupProbe and a
//     readinessProbe on GET :4191/ready and a livenessProbe on GET :4191/live, the token
//     volume mounted read-only at /var/run/lightmesh/identity, and the environment below.
//     The application's own init containers follow, so their traffic is meshed too.
//   - volume "mesh-identity-token": a projected ServiceAccount token (audience
//     identity.lightmesh.io, expirationSeconds 86400, path "token"), so the proxy reads its
//     token at /var/run/lightmesh/identity/token.
//   - annotations lightmesh.io/proxy-version: <version> and lightmesh.io/injected-by:
//     "mesh-cli <version>" (or whoever injected), and the label
//     lightmesh.io/control-plane-ns: <control-plane namespace>.
//
// A Namespace, and with ModeAnnotateOnly a pod template, gets lightmesh.io/inject: enabled
// and lightmesh.io/annotated-by: "mesh-cli <version>", which tells uninject that inject added
// the first. Uninject removes exactly what inject added, so uninject(inject(x)) == x.
//
// # The proxy's environment
//
//	MESH_PROXY_POD_NAME, _POD_NAMESPACE, _POD_IP, _SERVICE_ACCOUNT   downward API
//	MESH_PROXY_LOG_LEVEL            debug|info|warn|error
//	MESH_PROXY_LOG_FORMAT           plain|json
//	MESH_PROXY_INBOUND_ADDR         0.0.0.0:4143
//	MESH_PROXY_OUTBOUND_ADDR        127.0.0.1:4140
//	MESH_PROXY_ADMIN_ADDR           0.0.0.0:4191
//	MESH_PROXY_SCHEDULER_POLL       true|false, only with proxy-scheduler-poll (else the proxy's true)
//	MESH_PROXY_MAX_IN_FLIGHT_REQUESTS  1-1000000, only with proxy-max-in-flight-requests
//	                                (else the proxy's 1000)
//	MESH_PROXY_OPAQUE_PORTS comma-separated ports and ranges; absent when none
//	MESH_PROXY_INGRESS_MODE         "true", only for lightmesh.io/inject: ingress
//	MESH_PROXY_DESTINATION_ADDR     destination.<cp-ns>.svc.<cluster-domain>:8086
//	MESH_PROXY_IDENTITY_ADDR        identity.<cp-ns>.svc.<cluster-domain>:8080 (its host is the
//	                                DNS name the identity service's certificate is checked for)
//	MESH_PROXY_IDENTITY_TOKEN_FILE  /var/run/lightmesh/identity/token
//	MESH_PROXY_TRUST_DOMAIN         cluster.local by default
//	MESH_PROXY_TRUST_ANCHORS        the trust anchors' PEM bundle
//	MESH_PROXY_TRACING_*            with tracing configured: SERVICE_NAME (the pod's app label),
//	                                SAMPLER_TYPE, SAMPLER_PARAM, AGENT_ADDR, LOG_SPANS
//
// # Configuration
//
// A Config holds the installation's settings (from the lightmesh-config ConfigMap or the
// defaults). Each pod template may override them with config.lightmesh.io/<key> annotations,
// and the caller (the CLI's flags) may override both; the keys are in OverrideKeys. Every
// value is validated strictly: a bad one is an error naming the document and the key.
//
// # Streams
//
// Run reads YAML or JSON streams with bounded memory (per-document and per-stream size caps,
// and a pre-scan that refuses alias bombs), transforms every document in memory, and returns
// the output only when all of it succeeded. Documents it does not change are written back as
// their original bytes; changed ones are re-encoded (keys sorted, comments dropped).
package inject
