package inject

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/version"
)

// Config is what injection needs to know of the installation. DefaultConfig gives the
// defaults of a fresh `mesh install`; install.Values.InjectConfig gives an installation's.
type Config struct {
	ProxyImage      string
	ProxyInitImage  string
	ImagePullPolicy corev1.PullPolicy
	LogLevel        string
	LogFormat       string
	// SchedulerPoll and MaxInFlightRequests, when set (not nil, not zero), become the
	// proxy's MESH_PROXY_SCHEDULER_POLL and MESH_PROXY_MAX_IN_FLIGHT_REQUESTS; unset, the
	// proxy container gets neither and the proxy's defaults apply (true, 1000).
	SchedulerPoll       *bool
	MaxInFlightRequests int
	// ProxyResources and ProxyInitResources are the containers' requests and limits.
	ProxyResources     corev1.ResourceRequirements
	ProxyInitResources corev1.ResourceRequirements
	SkipInboundPorts   Ports
	SkipOutboundPorts  Ports
	OpaquePorts        Ports
	SkipSubnets        []netip.Prefix
	// ControlPlaneNamespace and ClusterDomain make the controller's addresses.
	ControlPlaneNamespace string
	ClusterDomain         string
	TrustDomain           string
	// TrustAnchorsPEM is the PEM bundle the proxy trusts; required to inject a sidecar.
	TrustAnchorsPEM string
	// Version goes into lightmesh.io/proxy-version, InjectedBy into lightmesh.io/injected-by.
	Version    string
	InjectedBy string
	// Tracing, when set, makes the proxies send a span per request to a Jaeger agent.
	Tracing *Tracing
}

// Tracing is the seed's Jaeger client settings (sampler type and param, reporter
// localAgentHostPort and logSpans), for the proxies.
type Tracing struct {
	SamplerType        string
	SamplerParam       string
	LocalAgentHostPort string
	LogSpans           bool
}

// Validate checks the settings as the proxy will read them.
func (t *Tracing) Validate() error {
	switch t.SamplerType {
	case "const", "probabilistic", "ratelimiting":
	default:
		return fmt.Errorf("tracing sampler type %q: use const, probabilistic or ratelimiting", t.SamplerType)
	}
	if v, err := strconv.ParseFloat(t.SamplerParam, 64); err != nil || v < 0 {
		return fmt.Errorf("tracing sampler param %q: give a number such as 1 (const), 0.1 (probabilistic) or 5 (ratelimiting)", t.SamplerParam)
	}
	if _, _, err := net.SplitHostPort(t.LocalAgentHostPort); err != nil {
		return fmt.Errorf("tracing agent address %q: write host:port, such as jaeger-agent.observability:6831", t.LocalAgentHostPort)
	}
	return nil
}

// Default resources of the containers injection adds. The proxy's are the seed's Istio
// sidecar resources (IstioOperator values.global.proxy.resources).
const (
	DefaultProxyCPURequest        = "100m"
	DefaultProxyCPULimit          = "200m"
	DefaultProxyMemoryRequest     = "128Mi"
	DefaultProxyMemoryLimit       = "128Mi"
	DefaultProxyInitCPURequest    = "10m"
	DefaultProxyInitCPULimit      = "100m"
	DefaultProxyInitMemoryRequest = "20Mi"
	DefaultProxyInitMemoryLimit   = "50Mi"
	// DefaultOpaquePorts are Linkerd's: server-speaks-first protocols (SMTP, MySQL, Galera,
	// PostgreSQL, Redis, Elasticsearch, Memcached) whose protocol detection would stall.
	DefaultOpaquePorts = "25,587,3306,4444,5432,6379,9300,11211"
)

// DefaultConfig returns the configuration of a default installation, without trust anchors.
func DefaultConfig() Config {
	return Config{
		ProxyImage:            version.Image("", "mesh-proxy"),
		ProxyInitImage:        version.Image("", "mesh-proxy-init"),
		ImagePullPolicy:       corev1.PullIfNotPresent,
		LogLevel:              "info",
		LogFormat:             "plain",
		ProxyResources:        Resources(DefaultProxyCPURequest, DefaultProxyCPULimit, DefaultProxyMemoryRequest, DefaultProxyMemoryLimit),
		ProxyInitResources:    Resources(DefaultProxyInitCPURequest, DefaultProxyInitCPULimit, DefaultProxyInitMemoryRequest, DefaultProxyInitMemoryLimit),
		OpaquePorts:           mustPorts(DefaultOpaquePorts),
		ControlPlaneNamespace: defaultControlPlaneNS,
		ClusterDomain:         defaultClusterDomain,
		TrustDomain:           identity.DefaultTrustDomain,
		Version:               version.Version,
		InjectedBy:            defaultInjectedByPrefix + version.Version,
	}
}

// Resources builds requests and limits from quantities; an empty string leaves that one out.
// It panics on a malformed quantity: use it with constants or validated values.
func Resources(cpuRequest, cpuLimit, memoryRequest, memoryLimit string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{}
	set := func(list *corev1.ResourceList, name corev1.ResourceName, value string) {
		if value == "" {
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = resource.MustParse(value)
	}
	set(&r.Requests, corev1.ResourceCPU, cpuRequest)
	set(&r.Limits, corev1.ResourceCPU, cpuLimit)
	set(&r.Requests, corev1.ResourceMemory, memoryRequest)
	set(&r.Limits, corev1.ResourceMemory, memoryLimit)
	return r
}

// Validate checks a whole Config, naming the field at fault.
func (c *Config) Validate() error {
	if err := ValidateImage(c.ProxyImage); err != nil {
		return fmt.Errorf("proxy image: %w", err)
	}
	if err := ValidateImage(c.ProxyInitImage); err != nil {
		return fmt.Errorf("proxy-init image: %w", err)
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("image pull policy %q: use Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	if err := ValidateLogLevel(c.LogLevel); err != nil {
		return err
	}
	if err := ValidateLogFormat(c.LogFormat); err != nil {
		return err
	}
	if n := c.MaxInFlightRequests; n != 0 {
		if err := ValidateMaxInFlightRequests(n); err != nil {
			return fmt.Errorf("proxy max in-flight requests %d: %w", n, err)
		}
	}
	if c.Tracing != nil {
		if err := c.Tracing.Validate(); err != nil {
			return err
		}
	}
	if errs := validation.IsDNS1123Label(c.ControlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("control-plane namespace %q: %s", c.ControlPlaneNamespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(errs) > 0 {
		return fmt.Errorf("cluster domain %q: %s", c.ClusterDomain, strings.Join(errs, "; "))
	}
	if err := identity.ValidateTrustDomain(c.TrustDomain); err != nil {
		return err
	}
	if c.TrustAnchorsPEM != "" {
		if _, err := identity.ParseTrustAnchors([]byte(c.TrustAnchorsPEM)); err != nil {
			return err
		}
	}
	if err := checkRequestsWithinLimits(c.ProxyResources); err != nil {
		return fmt.Errorf("proxy resources: %w", err)
	}
	return checkRequestsWithinLimits(c.ProxyInitResources)
}

// KeyError is a bad override value; Key is the override key (without prefix).
type KeyError struct {
	Key, Value, Problem string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("%q %s", e.Value, e.Problem)
}

// ValidateOverride checks one override value without applying it.
func ValidateOverride(key, value string) error {
	return ValidateOverrides(map[string]string{key: value})
}

// ValidateOverrides checks override values together, without a base configuration: each
// value's syntax, and requests against limits only when both are among them.
func ValidateOverrides(kv map[string]string) error {
	c := DefaultConfig()
	c.ProxyResources = corev1.ResourceRequirements{}
	return c.ApplyOverrides(kv)
}

// ApplyOverrides sets the overrides in kv (keys from OverrideKeys, without prefix) on c,
// in OverrideKeys order. A bad key or value is a *KeyError naming it; c is then unchanged.
func (c *Config) ApplyOverrides(kv map[string]string) error {
	next := *c
	next.ProxyResources = *c.ProxyResources.DeepCopy()
	for key := range kv {
		if !slices.Contains(OverrideKeys, key) {
			return &KeyError{Key: key, Value: kv[key], Problem: "is not a known key; use one of " + strings.Join(OverrideKeys, ", ")}
		}
	}
	for _, key := range OverrideKeys {
		value, ok := kv[key]
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		var err error
		switch key {
		case KeySkipInboundPorts:
			next.SkipInboundPorts, err = ParsePorts(value)
		case KeySkipOutboundPorts:
			next.SkipOutboundPorts, err = ParsePorts(value)
		case KeyOpaquePorts:
			next.OpaquePorts, err = ParsePorts(value)
		case KeySkipSubnets:
			next.SkipSubnets, err = ParseSubnets(value)
		case KeyProxyCPURequest:
			err = setQuantity(&next.ProxyResources.Requests, corev1.ResourceCPU, value)
		case KeyProxyCPULimit:
			err = setQuantity(&next.ProxyResources.Limits, corev1.ResourceCPU, value)
		case KeyProxyMemoryRequest:
			err = setQuantity(&next.ProxyResources.Requests, corev1.ResourceMemory, value)
		case KeyProxyMemoryLimit:
			err = setQuantity(&next.ProxyResources.Limits, corev1.ResourceMemory, value)
		case KeyProxyLogLevel:
			err = ValidateLogLevel(value)
			next.LogLevel = value
		case KeyProxyLogFormat:
			err = ValidateLogFormat(value)
			next.LogFormat = value
		case KeyProxyImage:
			err = ValidateImage(value)
			next.ProxyImage = value
		case KeyProxyInitImage:
			err = ValidateImage(value)
			next.ProxyInitImage = value
		case KeyProxySchedulerPoll:
			var poll bool
			poll, err = ParseSchedulerPoll(value)
			next.SchedulerPoll = &poll
		case KeyProxyMaxInFlightRequests:
			next.MaxInFlightRequests, err = ParseMaxInFlightRequests(value)
		}
		if err != nil {
			return &KeyError{Key: key, Value: value, Problem: err.Error()}
		}
	}
	if err := checkRequestsWithinLimits(next.ProxyResources); err != nil {
		request, limit := KeyProxyCPURequest, KeyProxyCPULimit
		if strings.Contains(err.Error(), "memory") {
			request, limit = KeyProxyMemoryRequest, KeyProxyMemoryLimit
		}
		key := limit
		if _, ok := kv[limit]; !ok {
			key = request
		}
		return &KeyError{Key: key, Value: kv[key], Problem: "conflicts: " + err.Error()}
	}
	*c = next
	return nil
}

func setQuantity(list *corev1.ResourceList, name corev1.ResourceName, value string) error {
	q, err := ParseQuantity(value)
	if err != nil {
		return err
	}
	if *list == nil {
		*list = corev1.ResourceList{}
	}
	(*list)[name] = q
	return nil
}

// ParseQuantity parses a positive resource quantity (100m, 0.5, 128Mi).
func ParseQuantity(value string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(value)
	if err != nil {
		return q, fmt.Errorf("is not a resource quantity; write it as Kubernetes does, for example 100m or 0.5 (CPU), 128Mi or 1Gi (memory)")
	}
	if q.Sign() <= 0 {
		return q, fmt.Errorf("must be more than zero")
	}
	return q, nil
}

func checkRequestsWithinLimits(r corev1.ResourceRequirements) error {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[name]
		limit, hasLimit := r.Limits[name]
		if hasReq && hasLimit && req.Cmp(limit) > 0 {
			return fmt.Errorf("the %s request %s is above its limit %s; raise the limit or lower the request", name, req.String(), limit.String())
		}
	}
	return nil
}

// ValidateLogLevel accepts one of LogLevels.
func ValidateLogLevel(level string) error {
	if !slices.Contains(LogLevels, level) {
		return fmt.Errorf("is not a log level; use one of %s", strings.Join(LogLevels, ", "))
	}
	return nil
}

// ValidateLogFormat accepts one of LogFormats.
func ValidateLogFormat(format string) error {
	if !slices.Contains(LogFormats, format) {
		return fmt.Errorf("is not a log format; use one of %s", strings.Join(LogFormats, ", "))
	}
	return nil
}

// ParseSchedulerPoll accepts one of SchedulerPollValues.
func ParseSchedulerPoll(value string) (bool, error) {
	if !slices.Contains(SchedulerPollValues, value) {
		return false, fmt.Errorf("is neither true nor false; use one of %s", strings.Join(SchedulerPollValues, ", "))
	}
	return value == "true", nil
}

// ParseMaxInFlightRequests accepts a whole number (decimal digits only) from
// MinMaxInFlightRequests to MaxMaxInFlightRequests.
func ParseMaxInFlightRequests(value string) (int, error) {
	if value == "" || strings.TrimLeft(value, "0123456789") != "" {
		return 0, fmt.Errorf("is not a whole number; use one from %d to %d", MinMaxInFlightRequests, MaxMaxInFlightRequests)
	}
	n, err := strconv.ParseUint(value, 10, 32)
	if err != nil || ValidateMaxInFlightRequests(int(n)) != nil {
		return 0, fmt.Errorf("is out of range; use a whole number from %d to %d", MinMaxInFlightRequests, MaxMaxInFlightRequests)
	}
	return int(n), nil
}

// ValidateMaxInFlightRequests accepts MinMaxInFlightRequests to MaxMaxInFlightRequests.
func ValidateMaxInFlightRequests(n int) error {
	if n < MinMaxInFlightRequests || n > MaxMaxInFlightRequests {
		return fmt.Errorf("use a whole number from %d to %d", MinMaxInFlightRequests, MaxMaxInFlightRequests)
	}
	return nil
}

const exampleImage = "registry.example.com/lightmesh/mesh-proxy:1.2.3"

// ValidateImage accepts an image reference (registry/repository[:tag][@digest]).
func ValidateImage(image string) error {
	if image == "" {
		return fmt.Errorf("is empty; give an image reference such as %s", exampleImage)
	}
	if _, err := name.ParseReference(image, name.WeakValidation); err != nil || strings.ContainsAny(image, " \t\n") {
		return fmt.Errorf("is not an image reference; give one such as %s", exampleImage)
	}
	return nil
}

// PortRange is a port (First == Last) or an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// Ports is a list of ports and ranges, as proxy-init and the proxy take them.
type Ports []PortRange

// String is the comma-separated form ("80,443,9000-9100").
func (p Ports) String() string {
	parts := make([]string, len(p))
	for i, r := range p {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// ParsePorts parses comma-separated ports (1-65535) and ranges a-b with a <= b; "" is none.
// Spaces around items are allowed; the order is kept.
func ParsePorts(s string) (Ports, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var ports Ports
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		firstText, lastText, isRange := strings.Cut(item, "-")
		first, err := parsePort(firstText)
		if err != nil {
			return nil, fmt.Errorf("has %q, which is not a port or a range of ports: give ports 1-65535 or ranges like 9000-9100, comma-separated", item)
		}
		last := first
		if isRange {
			if last, err = parsePort(lastText); err != nil {
				return nil, fmt.Errorf("has %q, which is not a port or a range of ports: give ports 1-65535 or ranges like 9000-9100, comma-separated", item)
			}
			if first > last {
				return nil, fmt.Errorf("has the range %q, which ends before it starts; write it low-high", item)
			}
		}
		ports = append(ports, PortRange{First: first, Last: last})
	}
	return ports, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a number")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("out of range")
	}
	return uint16(n), nil
}

func mustPorts(s string) Ports {
	p, err := ParsePorts(s)
	if err != nil {
		panic(err)
	}
	return p
}

// ParseSubnets parses comma-separated CIDRs; host bits are cleared (10.1.2.3/8 is 10.0.0.0/8).
func ParseSubnets(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var subnets []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		prefix, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("has %q, which is not a CIDR: give subnets like 10.96.0.0/12, comma-separated", item)
		}
		subnets = append(subnets, prefix.Masked())
	}
	return subnets, nil
}

// SubnetsString is the comma-separated form of subnets.
func SubnetsString(subnets []netip.Prefix) string {
	parts := make([]string, len(subnets))
	for i, s := range subnets {
		parts[i] = s.String()
	}
	return strings.Join(parts, ",")
}
