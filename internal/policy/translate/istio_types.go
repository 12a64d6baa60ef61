package translate

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Istio resources, as their JSON reads (networking.istio.io v1alpha3/v1beta1/v1 and
// security.istio.io v1beta1/v1 share these fields). Every field Istio defines is here, so
// that strict decoding tells a typo (unknown field) from a field lightmesh does not support:
// the fields typed json.RawMessage are the unsupported ones, reported when present.

type istioObject[Spec any] struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            Spec              `json:"spec"`
	Status          json.RawMessage   `json:"status,omitempty"`
}

// networking.istio.io

type gatewaySpec struct {
	Selector map[string]string `json:"selector,omitempty"`
	Servers  []gatewayServer   `json:"servers,omitempty"`
}

type gatewayServer struct {
	Port            *gatewayPort    `json:"port,omitempty"`
	Bind            json.RawMessage `json:"bind,omitempty"`
	Hosts           []string        `json:"hosts,omitempty"`
	TLS             *serverTLS      `json:"tls,omitempty"`
	DefaultEndpoint json.RawMessage `json:"defaultEndpoint,omitempty"`
	Name            string          `json:"name,omitempty"`
}

// serverTLS is a Gateway server's tls block (networking.istio.io ServerTLSSettings).
type serverTLS struct {
	HTTPSRedirect         bool            `json:"httpsRedirect,omitempty"`
	Mode                  string          `json:"mode,omitempty"`
	CredentialName        string          `json:"credentialName,omitempty"`
	CredentialNames       json.RawMessage `json:"credentialNames,omitempty"`
	TLSCertificates       json.RawMessage `json:"tlsCertificates,omitempty"`
	ServerCertificate     json.RawMessage `json:"serverCertificate,omitempty"`
	PrivateKey            json.RawMessage `json:"privateKey,omitempty"`
	CACertificates        json.RawMessage `json:"caCertificates,omitempty"`
	CACrl                 json.RawMessage `json:"caCrl,omitempty"`
	SubjectAltNames       json.RawMessage `json:"subjectAltNames,omitempty"`
	VerifyCertificateSpki json.RawMessage `json:"verifyCertificateSpki,omitempty"`
	VerifyCertificateHash json.RawMessage `json:"verifyCertificateHash,omitempty"`
	MinProtocolVersion    json.RawMessage `json:"minProtocolVersion,omitempty"`
	MaxProtocolVersion    json.RawMessage `json:"maxProtocolVersion,omitempty"`
	CipherSuites          json.RawMessage `json:"cipherSuites,omitempty"`
}

type gatewayPort struct {
	Number     uint32          `json:"number"`
	Protocol   string          `json:"protocol"`
	Name       string          `json:"name,omitempty"`
	TargetPort json.RawMessage `json:"targetPort,omitempty"`
}

type virtualServiceSpec struct {
	Hosts    []string        `json:"hosts,omitempty"`
	Gateways []string        `json:"gateways,omitempty"`
	HTTP     []httpRoute     `json:"http,omitempty"`
	TLS      json.RawMessage `json:"tls,omitempty"`
	TCP      json.RawMessage `json:"tcp,omitempty"`
	ExportTo json.RawMessage `json:"exportTo,omitempty"`
}

type httpRoute struct {
	Name             string                 `json:"name,omitempty"`
	Match            []httpMatchRequest     `json:"match,omitempty"`
	Route            []httpRouteDestination `json:"route,omitempty"`
	Redirect         *httpRedirect          `json:"redirect,omitempty"`
	DirectResponse   *httpDirectResponse    `json:"directResponse,omitempty"`
	Delegate         json.RawMessage        `json:"delegate,omitempty"`
	Rewrite          *httpRewrite           `json:"rewrite,omitempty"`
	Timeout          *string                `json:"timeout,omitempty"`
	Retries          *httpRetry             `json:"retries,omitempty"`
	Fault            *httpFaultInjection    `json:"fault,omitempty"`
	Mirror           json.RawMessage        `json:"mirror,omitempty"`
	Mirrors          json.RawMessage        `json:"mirrors,omitempty"`
	MirrorPercent    json.RawMessage        `json:"mirrorPercent,omitempty"`
	MirrorPercentage json.RawMessage        `json:"mirrorPercentage,omitempty"`
	CorsPolicy       json.RawMessage        `json:"corsPolicy,omitempty"`
	Headers          *istioHeaders          `json:"headers,omitempty"`
}

type istioStringMatch struct {
	Exact  *string `json:"exact,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
	Regex  *string `json:"regex,omitempty"`
}

type httpMatchRequest struct {
	Name            string                      `json:"name,omitempty"`
	URI             *istioStringMatch           `json:"uri,omitempty"`
	Scheme          *istioStringMatch           `json:"scheme,omitempty"`
	Method          *istioStringMatch           `json:"method,omitempty"`
	Authority       *istioStringMatch           `json:"authority,omitempty"`
	Headers         map[string]istioStringMatch `json:"headers,omitempty"`
	Port            uint32                      `json:"port,omitempty"`
	SourceLabels    json.RawMessage             `json:"sourceLabels,omitempty"`
	Gateways        json.RawMessage             `json:"gateways,omitempty"`
	QueryParams     map[string]istioStringMatch `json:"queryParams,omitempty"`
	IgnoreURICase   bool                        `json:"ignoreUriCase,omitempty"`
	WithoutHeaders  map[string]istioStringMatch `json:"withoutHeaders,omitempty"`
	SourceNamespace json.RawMessage             `json:"sourceNamespace,omitempty"`
	StatPrefix      json.RawMessage             `json:"statPrefix,omitempty"`
}

type istioDestination struct {
	Host   string        `json:"host"`
	Subset string        `json:"subset,omitempty"`
	Port   *portSelector `json:"port,omitempty"`
}

type portSelector struct {
	Number uint32 `json:"number,omitempty"`
}

type httpRouteDestination struct {
	Destination *istioDestination `json:"destination,omitempty"`
	Weight      *int32            `json:"weight,omitempty"`
	Headers     *istioHeaders     `json:"headers,omitempty"`
}

type istioHeaders struct {
	Request  *headerOperations `json:"request,omitempty"`
	Response *headerOperations `json:"response,omitempty"`
}

type headerOperations struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

type httpRedirect struct {
	URI          string          `json:"uri,omitempty"`
	Authority    string          `json:"authority,omitempty"`
	Port         uint32          `json:"port,omitempty"`
	DerivePort   json.RawMessage `json:"derivePort,omitempty"`
	Scheme       string          `json:"scheme,omitempty"`
	RedirectCode uint32          `json:"redirectCode,omitempty"`
}

type httpDirectResponse struct {
	Status uint32 `json:"status"`
	Body   *struct {
		String *string `json:"string,omitempty"`
		Bytes  []byte  `json:"bytes,omitempty"`
	} `json:"body,omitempty"`
}

type httpRewrite struct {
	URI             string          `json:"uri,omitempty"`
	Authority       string          `json:"authority,omitempty"`
	URIRegexRewrite json.RawMessage `json:"uriRegexRewrite,omitempty"`
}

type httpRetry struct {
	Attempts                 int32           `json:"attempts,omitempty"`
	PerTryTimeout            *string         `json:"perTryTimeout,omitempty"`
	RetryOn                  string          `json:"retryOn,omitempty"`
	RetryRemoteLocalities    json.RawMessage `json:"retryRemoteLocalities,omitempty"`
	RetryIgnorePreviousHosts json.RawMessage `json:"retryIgnorePreviousHosts,omitempty"`
	Backoff                  *string         `json:"backoff,omitempty"`
}

type istioPercent struct {
	Value float64 `json:"value"`
}

type httpFaultInjection struct {
	Delay *struct {
		FixedDelay       *string         `json:"fixedDelay,omitempty"`
		ExponentialDelay json.RawMessage `json:"exponentialDelay,omitempty"`
		Percentage       *istioPercent   `json:"percentage,omitempty"`
		Percent          *int32          `json:"percent,omitempty"`
	} `json:"delay,omitempty"`
	Abort *struct {
		HTTPStatus *int32          `json:"httpStatus,omitempty"`
		GRPCStatus json.RawMessage `json:"grpcStatus,omitempty"`
		HTTP2Error json.RawMessage `json:"http2Error,omitempty"`
		Percentage *istioPercent   `json:"percentage,omitempty"`
	} `json:"abort,omitempty"`
}

type destinationRuleSpec struct {
	Host             string          `json:"host"`
	TrafficPolicy    *trafficPolicy  `json:"trafficPolicy,omitempty"`
	Subsets          []istioSubset   `json:"subsets,omitempty"`
	ExportTo         json.RawMessage `json:"exportTo,omitempty"`
	WorkloadSelector json.RawMessage `json:"workloadSelector,omitempty"`
}

type istioSubset struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels,omitempty"`
	TrafficPolicy *trafficPolicy    `json:"trafficPolicy,omitempty"`
}

type trafficPolicy struct {
	LoadBalancer      *loadBalancerSettings   `json:"loadBalancer,omitempty"`
	ConnectionPool    *connectionPoolSettings `json:"connectionPool,omitempty"`
	OutlierDetection  *outlierDetection       `json:"outlierDetection,omitempty"`
	TLS               *clientTLSSettings      `json:"tls,omitempty"`
	PortLevelSettings json.RawMessage         `json:"portLevelSettings,omitempty"`
	Tunnel            json.RawMessage         `json:"tunnel,omitempty"`
	ProxyProtocol     json.RawMessage         `json:"proxyProtocol,omitempty"`
	RetryBudget       json.RawMessage         `json:"retryBudget,omitempty"`
}

type loadBalancerSettings struct {
	Simple             string          `json:"simple,omitempty"`
	ConsistentHash     json.RawMessage `json:"consistentHash,omitempty"`
	LocalityLbSetting  json.RawMessage `json:"localityLbSetting,omitempty"`
	WarmupDurationSecs json.RawMessage `json:"warmupDurationSecs,omitempty"`
	Warmup             json.RawMessage `json:"warmup,omitempty"`
}

type connectionPoolSettings struct {
	TCP *struct {
		MaxConnections        *int32          `json:"maxConnections,omitempty"`
		ConnectTimeout        *string         `json:"connectTimeout,omitempty"`
		TCPKeepalive          json.RawMessage `json:"tcpKeepalive,omitempty"`
		MaxConnectionDuration json.RawMessage `json:"maxConnectionDuration,omitempty"`
		IdleTimeout           json.RawMessage `json:"idleTimeout,omitempty"`
	} `json:"tcp,omitempty"`
	HTTP *struct {
		HTTP1MaxPendingRequests  *int32          `json:"http1MaxPendingRequests,omitempty"`
		HTTP2MaxRequests         *int32          `json:"http2MaxRequests,omitempty"`
		MaxRequestsPerConnection *int32          `json:"maxRequestsPerConnection,omitempty"`
		MaxRetries               *int32          `json:"maxRetries,omitempty"`
		IdleTimeout              *string         `json:"idleTimeout,omitempty"`
		H2UpgradePolicy          json.RawMessage `json:"h2UpgradePolicy,omitempty"`
		UseClientProtocol        json.RawMessage `json:"useClientProtocol,omitempty"`
		MaxConcurrentStreams     json.RawMessage `json:"maxConcurrentStreams,omitempty"`
	} `json:"http,omitempty"`
}

type outlierDetection struct {
	SplitExternalLocalOriginErrors json.RawMessage `json:"splitExternalLocalOriginErrors,omitempty"`
	ConsecutiveLocalOriginFailures json.RawMessage `json:"consecutiveLocalOriginFailures,omitempty"`
	ConsecutiveGatewayErrors       *int64          `json:"consecutiveGatewayErrors,omitempty"`
	Consecutive5xxErrors           *int64          `json:"consecutive5xxErrors,omitempty"`
	Interval                       *string         `json:"interval,omitempty"`
	BaseEjectionTime               *string         `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent             *int32          `json:"maxEjectionPercent,omitempty"`
	MinHealthPercent               *int32          `json:"minHealthPercent,omitempty"`
	ConsecutiveErrors              json.RawMessage `json:"consecutiveErrors,omitempty"`
}

type clientTLSSettings struct {
	Mode               string          `json:"mode,omitempty"`
	ClientCertificate  json.RawMessage `json:"clientCertificate,omitempty"`
	PrivateKey         json.RawMessage `json:"privateKey,omitempty"`
	CACertificates     json.RawMessage `json:"caCertificates,omitempty"`
	CredentialName     json.RawMessage `json:"credentialName,omitempty"`
	SubjectAltNames    json.RawMessage `json:"subjectAltNames,omitempty"`
	SNI                json.RawMessage `json:"sni,omitempty"`
	InsecureSkipVerify json.RawMessage `json:"insecureSkipVerify,omitempty"`
	CACrl              json.RawMessage `json:"caCrl,omitempty"`
}

// security.istio.io

type workloadSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

type peerAuthenticationSpec struct {
	Selector      *workloadSelector      `json:"selector,omitempty"`
	MTLS          *mtlsSetting           `json:"mtls,omitempty"`
	PortLevelMTLS map[string]mtlsSetting `json:"portLevelMtls,omitempty"`
}

type mtlsSetting struct {
	Mode string `json:"mode,omitempty"`
}

type authorizationPolicySpec struct {
	Selector   *workloadSelector `json:"selector,omitempty"`
	TargetRef  json.RawMessage   `json:"targetRef,omitempty"`
	TargetRefs json.RawMessage   `json:"targetRefs,omitempty"`
	Rules      []authzRule       `json:"rules,omitempty"`
	Action     string            `json:"action,omitempty"`
	Provider   json.RawMessage   `json:"provider,omitempty"`
}

type authzRule struct {
	From []struct {
		Source *authzSource `json:"source,omitempty"`
	} `json:"from,omitempty"`
	To []struct {
		Operation *authzOperation `json:"operation,omitempty"`
	} `json:"to,omitempty"`
	When []authzCondition `json:"when,omitempty"`
}

type authzSource struct {
	Principals           []string        `json:"principals,omitempty"`
	NotPrincipals        []string        `json:"notPrincipals,omitempty"`
	RequestPrincipals    json.RawMessage `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals json.RawMessage `json:"notRequestPrincipals,omitempty"`
	Namespaces           []string        `json:"namespaces,omitempty"`
	NotNamespaces        []string        `json:"notNamespaces,omitempty"`
	ServiceAccounts      json.RawMessage `json:"serviceAccounts,omitempty"`
	NotServiceAccounts   json.RawMessage `json:"notServiceAccounts,omitempty"`
	IPBlocks             []string        `json:"ipBlocks,omitempty"`
	NotIPBlocks          []string        `json:"notIpBlocks,omitempty"`
	RemoteIPBlocks       []string        `json:"remoteIpBlocks,omitempty"`
	NotRemoteIPBlocks    []string        `json:"notRemoteIpBlocks,omitempty"`
}

type authzOperation struct {
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
	Ports      []string `json:"ports,omitempty"`
	NotPorts   []string `json:"notPorts,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

type authzCondition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}

// set reports whether a raw field was given (and not null).
func set(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}
