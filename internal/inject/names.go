package inject

// Annotations and labels.
const (
	// AnnotationInject is read on pod templates and namespaces: enabled, disabled or ingress.
	AnnotationInject = "lightmesh.io/inject"
	// AnnotationProxyVersion records the proxy version an injected pod template got.
	AnnotationProxyVersion = "lightmesh.io/proxy-version"
	// AnnotationInjectedBy records what injected the pod template ("mesh-cli 0.1.0").
	AnnotationInjectedBy = "lightmesh.io/injected-by"
	// AnnotationAnnotatedBy marks a pod template or Namespace that mesh inject annotated
	// lightmesh.io/inject: enabled (--annotate-only, or any Namespace), so that uninject
	// removes that annotation only where inject added it.
	AnnotationAnnotatedBy = "lightmesh.io/annotated-by"
	// LabelControlPlaneNS marks an injected pod template with the namespace of its control plane.
	LabelControlPlaneNS = "lightmesh.io/control-plane-ns"
	// ConfigAnnotationPrefix starts every per-workload configuration annotation.
	ConfigAnnotationPrefix = "config.lightmesh.io/"

	InjectEnabled  = "enabled"
	InjectDisabled = "disabled"
	InjectIngress  = "ingress"
)

// Containers, volumes, ports and paths.
const (
	InitContainerName  = "mesh-init"
	ProxyContainerName = "mesh-proxy"
	TokenVolumeName    = "mesh-identity-token"

	// TokenAudience is the audience of the proxy's projected ServiceAccount token; the
	// identity service's TokenReview asks for it.
	TokenAudience = "identity.lightmesh.io"
	// TokenExpirationSeconds is the projected token's requested lifetime.
	TokenExpirationSeconds = 86400
	// TokenMountPath is where the token volume is mounted (read-only) in the proxy.
	TokenMountPath = "/var/run/lightmesh/identity"
	// TokenFileName is the token's file name inside TokenMountPath.
	TokenFileName = "token"
	// TokenFile is the token's full path in the proxy container.
	TokenFile = TokenMountPath + "/" + TokenFileName

	ProxyUID = 2102
	// ProxyInitUID is the user proxy-init runs as (nobody): its image's iptables binaries
	// carry the capabilities it needs.
	ProxyInitUID    = 65534
	InboundPort     = 4143
	OutboundPort    = 4140
	AdminPort       = 4191
	ControlPort     = 4190
	InboundPortName = "mesh-proxy"
	AdminPortName   = "mesh-admin"
	ReadyPath       = "/ready"
	LivePath        = "/live"
	IdentityPort    = 8080
	DestinationPort = 8086
)

// The proxy's environment variables.
const (
	EnvPodName              = "MESH_PROXY_POD_NAME"
	EnvPodNamespace         = "MESH_PROXY_POD_NAMESPACE"
	EnvPodIP                = "MESH_PROXY_POD_IP"
	EnvServiceAccount       = "MESH_PROXY_SERVICE_ACCOUNT"
	EnvLogLevel             = "MESH_PROXY_LOG_LEVEL"
	EnvLogFormat            = "MESH_PROXY_LOG_FORMAT"
	EnvInboundAddr          = "MESH_PROXY_INBOUND_ADDR"
	EnvOutboundAddr         = "MESH_PROXY_OUTBOUND_ADDR"
	EnvAdminAddr            = "MESH_PROXY_ADMIN_ADDR"
	EnvInboundPortsOpaque   = "MESH_PROXY_OPAQUE_PORTS"
	EnvIngressMode          = "MESH_PROXY_INGRESS_MODE"
	EnvDestinationAddr      = "MESH_PROXY_DESTINATION_ADDR"
	EnvIdentityAddr         = "MESH_PROXY_IDENTITY_ADDR"
	EnvIdentityTokenFile    = "MESH_PROXY_IDENTITY_TOKEN_FILE"
	EnvTrustDomain          = "MESH_PROXY_TRUST_DOMAIN"
	EnvTrustAnchors         = "MESH_PROXY_TRUST_ANCHORS"
	EnvTracingServiceName   = "MESH_PROXY_TRACING_SERVICE_NAME"
	EnvTracingSamplerType   = "MESH_PROXY_TRACING_SAMPLER_TYPE"
	EnvTracingSamplerParam  = "MESH_PROXY_TRACING_SAMPLER_PARAM"
	EnvTracingAgentAddr     = "MESH_PROXY_TRACING_AGENT_ADDR"
	EnvTracingLogSpans      = "MESH_PROXY_TRACING_LOG_SPANS"
	EnvSchedulerPoll        = "MESH_PROXY_SCHEDULER_POLL"
	EnvMaxInFlightRequests  = "MESH_PROXY_MAX_IN_FLIGHT_REQUESTS"
	defaultControlPlaneNS   = "lightmesh"
	defaultClusterDomain    = "cluster.local"
	defaultInjectedByPrefix = "mesh-cli "
)

// Override keys: config.lightmesh.io/<key> annotations and the CLI flags of the same names.
const (
	KeySkipInboundPorts         = "skip-inbound-ports"
	KeySkipOutboundPorts        = "skip-outbound-ports"
	KeySkipSubnets              = "skip-subnets"
	KeyOpaquePorts              = "opaque-ports"
	KeyProxyCPURequest          = "proxy-cpu-request"
	KeyProxyCPULimit            = "proxy-cpu-limit"
	KeyProxyMemoryRequest       = "proxy-memory-request"
	KeyProxyMemoryLimit         = "proxy-memory-limit"
	KeyProxyLogLevel            = "proxy-log-level"
	KeyProxyLogFormat           = "proxy-log-format"
	KeyProxyImage               = "proxy-image"
	KeyProxyInitImage           = "proxy-init-image"
	KeyProxySchedulerPoll       = "proxy-scheduler-poll"
	KeyProxyMaxInFlightRequests = "proxy-max-in-flight-requests"
)

// OverrideKeys lists every override key, in the order they are applied and documented.
var OverrideKeys = []string{
	KeySkipInboundPorts, KeySkipOutboundPorts, KeySkipSubnets, KeyOpaquePorts,
	KeyProxyCPURequest, KeyProxyCPULimit, KeyProxyMemoryRequest, KeyProxyMemoryLimit,
	KeyProxyLogLevel, KeyProxyLogFormat, KeyProxyImage, KeyProxyInitImage,
	KeyProxySchedulerPoll, KeyProxyMaxInFlightRequests,
}

// LogLevels are the proxy log levels accepted, LogFormats its log formats.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"plain", "json"}
	// SchedulerPollValues are the values of proxy-scheduler-poll.
	SchedulerPollValues = []string{"true", "false"}
)

// The range of proxy-max-in-flight-requests, the proxy's own (proxy/config;
// TestMaxInFlightRangeIsTheProxys keeps the two together).
const (
	MinMaxInFlightRequests = 1
	MaxMaxInFlightRequests = 1_000_000
)
