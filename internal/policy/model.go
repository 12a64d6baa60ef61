package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Model is everything the translation of a set of Istio and Gateway API resources produces.
// The controller picks from it what each proxy needs (SelectVirtualHost,
// SelectAuthorizationPolicies, ResolvePeerAuthentication) and streams that.
type Model struct {
	// VirtualHosts are the outbound route tables, oldest resource first (Istio: for one host
	// the oldest VirtualService wins).
	VirtualHosts []VirtualHost `json:"virtualHosts,omitempty"`
	// Destinations are the traffic policies of destination hosts (DestinationRules).
	Destinations []Destination `json:"destinations,omitempty"`
	// Gateways are the servers of Istio Gateway resources.
	Gateways []Gateway `json:"gateways,omitempty"`
	// PeerAuthentications are every PeerAuthentication, unresolved: resolve them per workload
	// with ResolvePeerAuthentication.
	PeerAuthentications []PeerAuthentication `json:"peerAuthentications,omitempty"`
	// AuthorizationPolicies are every AuthorizationPolicy: pick a workload's with
	// SelectAuthorizationPolicies.
	AuthorizationPolicies []AuthorizationPolicy `json:"authorizationPolicies,omitempty"`
}

// MeshGateway is the gateway name that binds a VirtualHost to the sidecars of the mesh.
const MeshGateway = "mesh"

// VirtualHost is the ordered HTTP route table of the authorities in Hosts, as seen through the
// gateways in Gateways. SelectRoute evaluates Routes: the first route that matches wins.
type VirtualHost struct {
	// Source names the resources this table came from, such as
	// "VirtualService microservices/user-service".
	Source string `json:"source"`
	// Hosts are fully qualified host names, "*.suffix" wildcards or "*".
	Hosts []string `json:"hosts"`
	// Port, when not 0, restricts the table to requests to that service port.
	Port uint32 `json:"port,omitempty"`
	// Gateways are MeshGateway (the sidecars) and/or Istio Gateways as "namespace/name".
	Gateways []string `json:"gateways"`
	// Routes are in evaluation order. A request that matches none gets 404.
	Routes []Route `json:"routes"`
}

// Route is one match and what to do with the requests it matches. A resource rule with
// several matches becomes several Routes (as Envoy does), so that a rewrite knows which
// prefix matched and Gateway API precedence can order matches rather than rules.
type Route struct {
	// Name is the rule's name, if it has one.
	Name string `json:"name,omitempty"`
	// Source locates the rule and match, such as "VirtualService ns/vs spec.http[0].match[1]".
	Source string `json:"source,omitempty"`
	// Match selects requests; its zero value matches every request.
	Match Match `json:"match"`

	// Exactly one of Destinations, Redirect and DirectResponse is set.
	Destinations   []WeightedDestination `json:"destinations,omitempty"`
	Redirect       *Redirect             `json:"redirect,omitempty"`
	DirectResponse *DirectResponse       `json:"directResponse,omitempty"`

	// Timeout bounds the whole request, retries included; 0 means none.
	Timeout Duration `json:"timeout,omitempty"`
	// Retries, when set, retries failed attempts.
	Retries *RetryPolicy `json:"retries,omitempty"`
	// Rewrite changes the forwarded request's path and authority.
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// Fault injects delays and aborts.
	Fault *Fault `json:"fault,omitempty"`
	// RequestHeaders and ResponseHeaders modify the headers of every request forwarded and
	// response returned by this route.
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
}

// MatchKind is how a StringMatch compares.
type MatchKind string

// The match kinds. Prefix is Istio's plain string prefix ("/api/users" matches
// "/api/usersX"); SegmentPrefix is Gateway API's PathPrefix, which matches whole path
// segments ("/api/users" matches "/api/users" and "/api/users/1", not "/api/usersX").
const (
	MatchExact         MatchKind = "Exact"
	MatchPrefix        MatchKind = "Prefix"
	MatchSegmentPrefix MatchKind = "SegmentPrefix"
	MatchRegex         MatchKind = "Regex"
	// MatchPresent matches any value, as long as there is one (headers and query parameters).
	MatchPresent MatchKind = "Present"
)

// StringMatch compares a string. Regex matches the whole string (RE2 syntax, as Istio and
// Envoy). IgnoreCase applies to Exact, Prefix and SegmentPrefix (Istio's ignoreUriCase).
type StringMatch struct {
	Kind       MatchKind `json:"kind"`
	Value      string    `json:"value,omitempty"`
	Regex      *Regex    `json:"regex,omitempty"`
	IgnoreCase bool      `json:"ignoreCase,omitempty"`
}

// Match is a conjunction of conditions on a request; nil and empty fields match anything.
type Match struct {
	Path      *StringMatch `json:"path,omitempty"`
	Method    *StringMatch `json:"method,omitempty"`
	Authority *StringMatch `json:"authority,omitempty"`
	Scheme    *StringMatch `json:"scheme,omitempty"`
	// Port, when not 0, is the destination port the request must have been sent to.
	Port        uint32            `json:"port,omitempty"`
	Headers     []HeaderMatch     `json:"headers,omitempty"`
	QueryParams []QueryParamMatch `json:"queryParams,omitempty"`
}

// HeaderMatch matches a request header. Name is in Go's canonical form
// (textproto.CanonicalMIMEHeaderKey), so evaluation looks it up without allocating. Several
// values of one header are matched joined with ",", as Envoy does. With Invert the match
// succeeds when the header is absent or does not match (Istio's withoutHeaders).
type HeaderMatch struct {
	Name   string      `json:"name"`
	Value  StringMatch `json:"value"`
	Invert bool        `json:"invert,omitempty"`
}

// QueryParamMatch matches the first query parameter called Name, after percent-decoding.
type QueryParamMatch struct {
	Name  string      `json:"name"`
	Value StringMatch `json:"value"`
}

// WeightedDestination is one backend of a route. A route's destinations share its traffic in
// proportion to their weights: 9/1 and 90/10 are the same split; weight 0 gets none.
type WeightedDestination struct {
	// Host is the destination service's fully qualified name.
	Host string `json:"host"`
	// Port is the service port; 0 means the port the request was sent to.
	Port uint32 `json:"port,omitempty"`
	// Subset names a subset of the Destination for Host: the endpoints whose labels match its
	// label selector, with its traffic policy.
	Subset          string          `json:"subset,omitempty"`
	Weight          uint32          `json:"weight"`
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
}

// RetryPolicy retries failed attempts of a request.
type RetryPolicy struct {
	// Attempts is the number of retries after the first attempt.
	Attempts uint32 `json:"attempts"`
	// PerTryTimeout bounds each attempt; 0 means only the route's Timeout applies.
	PerTryTimeout Duration `json:"perTryTimeout,omitempty"`
	// RetryOn are Envoy retry conditions: 5xx, gateway-error, reset, connect-failure,
	// retriable-4xx, refused-stream, retriable-status-codes, and the gRPC cancelled,
	// deadline-exceeded, internal, resource-exhausted, unavailable.
	RetryOn []string `json:"retryOn,omitempty"`
	// RetriableStatusCodes are retried when RetryOn has retriable-status-codes.
	RetriableStatusCodes []uint32 `json:"retriableStatusCodes,omitempty"`
	// Backoff is the minimum wait between attempts; 0 means the proxy's default.
	Backoff Duration `json:"backoff,omitempty"`
}

// PathRewriteKind is how a PathRewrite replaces the path.
type PathRewriteKind string

// The path rewrite kinds.
const (
	// RewriteFullPath replaces the whole path.
	RewriteFullPath PathRewriteKind = "FullPath"
	// RewritePrefix is Istio's rewrite.uri: it replaces the matched prefix as a plain string
	// (the whole path when the route matched the path exactly or by regex, "/" when it did not
	// match on the path).
	RewritePrefix PathRewriteKind = "Prefix"
	// RewriteSegmentPrefix is Gateway API's ReplacePrefixMatch: it replaces the matched
	// segment prefix, and never leaves a doubled or missing slash.
	RewriteSegmentPrefix PathRewriteKind = "SegmentPrefix"
)

// PathRewrite replaces the path, or part of it, with Value.
type PathRewrite struct {
	Kind  PathRewriteKind `json:"kind"`
	Value string          `json:"value"`
}

// Rewrite changes a forwarded request. Empty fields change nothing.
type Rewrite struct {
	Path      *PathRewrite `json:"path,omitempty"`
	Authority string       `json:"authority,omitempty"`
}

// Redirect answers with a redirect. Empty fields keep the request's value.
type Redirect struct {
	Scheme    string       `json:"scheme,omitempty"`
	Authority string       `json:"authority,omitempty"`
	Port      uint32       `json:"port,omitempty"`
	Path      *PathRewrite `json:"path,omitempty"`
	// StatusCode is 301 (Istio's default), 302 (Gateway API's default), 303, 307 or 308.
	StatusCode uint32 `json:"statusCode"`
}

// DirectResponse answers without forwarding.
type DirectResponse struct {
	Status uint32 `json:"status"`
	Body   string `json:"body,omitempty"`
}

// Fault injects a delay and/or an abort into a share of requests.
type Fault struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay delays Percent per cent of requests by Delay.
type FaultDelay struct {
	Delay   Duration `json:"delay"`
	Percent float64  `json:"percent"`
}

// FaultAbort answers Percent per cent of requests with HTTP status Status.
type FaultAbort struct {
	Status  uint32  `json:"status"`
	Percent float64 `json:"percent"`
}

// HeaderModifier changes headers: Set replaces, Add appends, Remove deletes. Names are
// canonical (textproto.CanonicalMIMEHeaderKey).
type HeaderModifier struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Header is a header name and value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Destination is the traffic policy of one destination host (an Istio DestinationRule).
type Destination struct {
	Source        string        `json:"source"`
	Host          string        `json:"host"`
	TrafficPolicy TrafficPolicy `json:"trafficPolicy"`
	Subsets       []Subset      `json:"subsets,omitempty"`
}

// Subset is a named group of a destination's endpoints. Its TrafficPolicy is already merged
// with the destination's: each part the subset sets replaces the destination's.
type Subset struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels,omitempty"`
	TrafficPolicy TrafficPolicy     `json:"trafficPolicy"`
}

// LoadBalancer is a load-balancing algorithm.
type LoadBalancer string

// The load balancers. The zero value is the proxy's default (power of two choices over
// peak-EWMA latency).
const (
	LoadBalancerDefault      LoadBalancer = ""
	LoadBalancerRoundRobin   LoadBalancer = "ROUND_ROBIN"
	LoadBalancerLeastRequest LoadBalancer = "LEAST_REQUEST"
	LoadBalancerRandom       LoadBalancer = "RANDOM"
	LoadBalancerPassthrough  LoadBalancer = "PASSTHROUGH"
)

// TrafficPolicy is how a proxy talks to a destination's endpoints.
type TrafficPolicy struct {
	LoadBalancer     LoadBalancer      `json:"loadBalancer,omitempty"`
	ConnectionPool   *ConnectionPool   `json:"connectionPool,omitempty"`
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
}

// ConnectionPool limits connections and requests to a destination. Zero means no limit (for
// ConnectTimeout: the proxy's default).
type ConnectionPool struct {
	MaxConnections           uint32   `json:"maxConnections,omitempty"`
	ConnectTimeout           Duration `json:"connectTimeout,omitempty"`
	HTTP1MaxPendingRequests  uint32   `json:"http1MaxPendingRequests,omitempty"`
	HTTP2MaxRequests         uint32   `json:"http2MaxRequests,omitempty"`
	MaxRequestsPerConnection uint32   `json:"maxRequestsPerConnection,omitempty"`
	MaxRetries               uint32   `json:"maxRetries,omitempty"`
	IdleTimeout              Duration `json:"idleTimeout,omitempty"`
}

// OutlierDetection ejects endpoints that keep failing; see Ejector for the rules.
type OutlierDetection struct {
	// Consecutive5xxErrors ejects an endpoint after that many 5xx answers (and connection
	// failures) in a row; 0 disables it.
	Consecutive5xxErrors uint32 `json:"consecutive5xxErrors"`
	// ConsecutiveGatewayErrors ejects after that many 502, 503 or 504 in a row; 0 disables it.
	ConsecutiveGatewayErrors uint32   `json:"consecutiveGatewayErrors,omitempty"`
	Interval                 Duration `json:"interval"`
	BaseEjectionTime         Duration `json:"baseEjectionTime"`
	MaxEjectionPercent       uint32   `json:"maxEjectionPercent"`
	// MinHealthPercent: below that share of healthy endpoints, load balance over all of them.
	MinHealthPercent uint32 `json:"minHealthPercent,omitempty"`
}

// Gateway is an Istio Gateway: the servers of the gateway proxies its selector picks.
type Gateway struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Selector  map[string]string `json:"selector,omitempty"`
	Servers   []GatewayServer   `json:"servers"`
}

// GatewayServer is one listener of a Gateway.
type GatewayServer struct {
	Port     uint32   `json:"port"`
	PortName string   `json:"portName,omitempty"`
	Protocol string   `json:"protocol"`
	Hosts    []string `json:"hosts"`
	// TLS is the server's tls block (HTTPS termination, or an HTTP server's redirect).
	TLS *GatewayTLS `json:"tls,omitempty"`
}

// PeerAuthnMode is a PeerAuthentication mutual TLS mode.
type PeerAuthnMode string

// The modes. ModeUnset inherits the mode of the wider scope; with nothing set, PERMISSIVE.
const (
	ModeUnset      PeerAuthnMode = "UNSET"
	ModeDisable    PeerAuthnMode = "DISABLE"
	ModePermissive PeerAuthnMode = "PERMISSIVE"
	ModeStrict     PeerAuthnMode = "STRICT"
)

// PeerAuthentication is an Istio PeerAuthentication: whether workloads accept plain text.
type PeerAuthentication struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// CreationTimestamp decides between two policies of one scope: the oldest wins.
	CreationTimestamp time.Time `json:"creationTimestamp,omitzero"`
	// Selector picks workloads by label; nil means every workload of the namespace (of the
	// mesh, in a root namespace).
	Selector  map[string]string        `json:"selector,omitempty"`
	Mode      PeerAuthnMode            `json:"mode"`
	PortModes map[uint32]PeerAuthnMode `json:"portModes,omitempty"`
}

// Action is what an AuthorizationPolicy does with the requests its rules match.
type Action string

// The actions.
const (
	ActionAllow Action = "ALLOW"
	ActionDeny  Action = "DENY"
	ActionAudit Action = "AUDIT"
)

// AuthorizationPolicy is an Istio AuthorizationPolicy. A request matches the policy when it
// matches any rule. An ALLOW policy without rules (`spec: {}`) matches nothing, so it denies
// every request.
type AuthorizationPolicy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Selector picks workloads by label; nil means every workload of the namespace (of the
	// mesh, in a root namespace).
	Selector map[string]string `json:"selector,omitempty"`
	Action   Action            `json:"action"`
	Rules    []Rule            `json:"rules"`
}

// Rule matches a request when one of From matches (or From is empty), one of To matches (or
// To is empty), and every condition of When matches.
type Rule struct {
	From []Source    `json:"from,omitempty"`
	To   []Operation `json:"to,omitempty"`
	When []Condition `json:"when,omitempty"`
}

// Source matches the peer: every non-empty field must match. String fields hold patterns:
// exact, "prefix*", "*suffix" or "*". Principals and namespaces come from the peer's
// certificate; a plain-text peer has none, so it matches no pattern, not even "*", and
// matches every Not field.
type Source struct {
	Principals    []string       `json:"principals,omitempty"`
	NotPrincipals []string       `json:"notPrincipals,omitempty"`
	Namespaces    []string       `json:"namespaces,omitempty"`
	NotNamespaces []string       `json:"notNamespaces,omitempty"`
	IPBlocks      []netip.Prefix `json:"ipBlocks,omitempty"`
	NotIPBlocks   []netip.Prefix `json:"notIpBlocks,omitempty"`
	// RemoteIPBlocks match the original client address; lightmesh trusts no
	// X-Forwarded-For or PROXY header, so that is the peer's address, as for IPBlocks.
	RemoteIPBlocks    []netip.Prefix `json:"remoteIpBlocks,omitempty"`
	NotRemoteIPBlocks []netip.Prefix `json:"notRemoteIpBlocks,omitempty"`
}

// Operation matches the request: every non-empty field must match. Methods, paths and hosts
// are patterns (exact, "prefix*", "*suffix", "*"); hosts compare case-insensitively and a
// pattern without a port also matches the host with any port.
type Operation struct {
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
	Ports      []uint32 `json:"ports,omitempty"`
	NotPorts   []uint32 `json:"notPorts,omitempty"`
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
}

// ConditionKey is the attribute a Condition tests.
type ConditionKey string

// The condition keys lightmesh evaluates.
const (
	KeyRequestHeader   ConditionKey = "request.headers"
	KeySourceIP        ConditionKey = "source.ip"
	KeyRemoteIP        ConditionKey = "remote.ip"
	KeySourceNamespace ConditionKey = "source.namespace"
	KeySourcePrincipal ConditionKey = "source.principal"
	KeyDestinationIP   ConditionKey = "destination.ip"
	KeyDestinationPort ConditionKey = "destination.port"
)

// Condition is one `when` entry: the attribute Key (for request.headers, the header Header)
// must match one of Values (if any) and none of NotValues. IP keys use IPs/NotIPs, the port
// key Ports/NotPorts, the others the string patterns Values/NotValues.
type Condition struct {
	Key       ConditionKey   `json:"key"`
	Header    string         `json:"header,omitempty"`
	Values    []string       `json:"values,omitempty"`
	NotValues []string       `json:"notValues,omitempty"`
	IPs       []netip.Prefix `json:"ips,omitempty"`
	NotIPs    []netip.Prefix `json:"notIps,omitempty"`
	Ports     []uint32       `json:"ports,omitempty"`
	NotPorts  []uint32       `json:"notPorts,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d in Go's duration syntax.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("duration: %w; write it as a string such as \"30s\"", err)
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(parsed)
	return nil
}

// Regex is a compiled RE2 regular expression that matches whole strings. It reads and writes
// JSON as its expression.
type Regex struct {
	expr string
	re   *regexp.Regexp
}

// CompileRegex compiles expr, anchored at both ends, as Envoy's safe_regex does.
func CompileRegex(expr string) (*Regex, error) {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("regular expression %q: %w; use RE2 syntax", expr, err)
	}
	return &Regex{expr: expr, re: re}, nil
}

// MustCompileRegex is CompileRegex for expressions known to be valid; it panics otherwise.
func MustCompileRegex(expr string) *Regex {
	r, err := CompileRegex(expr)
	if err != nil {
		panic(err)
	}
	return r
}

// String returns the expression as written.
func (r *Regex) String() string { return r.expr }

// MatchString reports whether the whole of s matches.
func (r *Regex) MatchString(s string) bool { return r.re.MatchString(s) }

// MarshalText returns the expression.
func (r *Regex) MarshalText() ([]byte, error) { return []byte(r.expr), nil }

// UnmarshalText compiles the expression.
func (r *Regex) UnmarshalText(text []byte) error {
	compiled, err := CompileRegex(string(text))
	if err != nil {
		return err
	}
	*r = *compiled
	return nil
}
