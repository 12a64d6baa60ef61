// Package envoy parses the supported subset of an Envoy v3 static bootstrap (YAML or JSON)
// into Go structs, reporting every unknown or unsupported field with its path.
package envoy

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Type URLs of the supported typed configs.
const (
	TypeHTTPConnectionManager = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	TypeTCPProxy              = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	TypeRouter                = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

	TypeUpstreamTLSContext = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"

	FilterHTTPConnectionManager = "envoy.filters.network.http_connection_manager"
	TransportSocketTLS          = "envoy.transport_sockets.tls"
	TransportSocketRawBuffer    = "envoy.transport_sockets.raw_buffer"
	FilterTCPProxy              = "envoy.filters.network.tcp_proxy"
	FilterRouter                = "envoy.filters.http.router"
)

// Duration is a protobuf JSON duration ("0.25s", "5s").
type Duration struct{ time.Duration }

// UnmarshalJSON accepts "1.5s" strings (and plain numbers of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err2 := json.Unmarshal(b, &f); err2 != nil {
			return fmt.Errorf("duration must be a string like \"0.25s\": %w", err)
		}
		d.Duration = time.Duration(f * float64(time.Second))
		return nil
	}
	if !strings.HasSuffix(s, "s") {
		return fmt.Errorf("duration %q must end in \"s\" (for example \"0.25s\")", s)
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64)
	if err != nil || f < 0 {
		return fmt.Errorf("duration %q is not a non-negative number of seconds", s)
	}
	d.Duration = time.Duration(f * float64(time.Second))
	return nil
}

// Bootstrap is the top-level Envoy v3 bootstrap.
type Bootstrap struct {
	Admin           *Admin          `json:"admin,omitempty"`
	StaticResources StaticResources `json:"static_resources"`
}

// Admin is the admin interface.
type Admin struct {
	Address       Address `json:"address"`
	AccessLogPath string  `json:"access_log_path,omitempty"`
}

// StaticResources are the listeners and clusters.
type StaticResources struct {
	Listeners []Listener `json:"listeners,omitempty"`
	Clusters  []Cluster  `json:"clusters,omitempty"`
}

// Address holds a socket address.
type Address struct {
	SocketAddress *SocketAddress `json:"socket_address,omitempty"`
}

// SocketAddress is a host and port.
type SocketAddress struct {
	Address   string `json:"address"`
	PortValue uint32 `json:"port_value"`
	Protocol  string `json:"protocol,omitempty"`
}

// HostPort renders the address as host:port.
func (s *SocketAddress) HostPort() string {
	if s == nil {
		return ""
	}
	return joinHostPort(s.Address, s.PortValue)
}

func joinHostPort(h string, p uint32) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + strconv.FormatUint(uint64(p), 10)
	}
	return h + ":" + strconv.FormatUint(uint64(p), 10)
}

// Listener is a static listener.
type Listener struct {
	Name         string        `json:"name,omitempty"`
	Address      Address       `json:"address"`
	FilterChains []FilterChain `json:"filter_chains,omitempty"`
}

// FilterChain is a chain of network filters.
type FilterChain struct {
	Filters []Filter `json:"filters,omitempty"`
}

// Filter is a network filter. After Parse exactly one of HCM and TCPProxy is set.
type Filter struct {
	Name        string         `json:"name"`
	TypedConfig map[string]any `json:"typed_config,omitempty"`

	HCM      *HTTPConnectionManager `json:"-"`
	TCPProxy *TCPProxy              `json:"-"`
}

// HTTPConnectionManager is envoy.filters.network.http_connection_manager.
type HTTPConnectionManager struct {
	Type        string              `json:"@type"`
	StatPrefix  string              `json:"stat_prefix"`
	CodecType   string              `json:"codec_type,omitempty"`
	RouteConfig *RouteConfiguration `json:"route_config,omitempty"`
	HTTPFilters []HTTPFilter        `json:"http_filters,omitempty"`
}

// HTTPFilter is an HTTP filter; only the router is supported.
type HTTPFilter struct {
	Name        string         `json:"name"`
	TypedConfig map[string]any `json:"typed_config,omitempty"`
}

// TCPProxy is envoy.filters.network.tcp_proxy.
type TCPProxy struct {
	Type       string `json:"@type"`
	StatPrefix string `json:"stat_prefix"`
	Cluster    string `json:"cluster"`
}

// RouteConfiguration is a route table.
type RouteConfiguration struct {
	Name         string        `json:"name,omitempty"`
	VirtualHosts []VirtualHost `json:"virtual_hosts,omitempty"`
}

// VirtualHost groups routes by domain.
type VirtualHost struct {
	Name    string   `json:"name,omitempty"`
	Domains []string `json:"domains"`
	Routes  []Route  `json:"routes,omitempty"`
}

// Route is one match and its action.
type Route struct {
	Name  string       `json:"name,omitempty"`
	Match RouteMatch   `json:"match"`
	Route *RouteAction `json:"route,omitempty"`
}

// RouteMatch matches a request; one of Prefix, Path and SafeRegex.
type RouteMatch struct {
	Prefix    *string         `json:"prefix,omitempty"`
	Path      *string         `json:"path,omitempty"`
	SafeRegex *RegexMatcher   `json:"safe_regex,omitempty"`
	Headers   []HeaderMatcher `json:"headers,omitempty"`
}

// RegexMatcher is a RE2 regular expression.
type RegexMatcher struct {
	GoogleRE2 map[string]any `json:"google_re2,omitempty"`
	Regex     string         `json:"regex"`
}

// HeaderMatcher matches one request header.
type HeaderMatcher struct {
	Name           string         `json:"name"`
	ExactMatch     *string        `json:"exact_match,omitempty"`
	PrefixMatch    *string        `json:"prefix_match,omitempty"`
	SuffixMatch    *string        `json:"suffix_match,omitempty"`
	SafeRegexMatch *RegexMatcher  `json:"safe_regex_match,omitempty"`
	PresentMatch   *bool          `json:"present_match,omitempty"`
	StringMatch    *StringMatcher `json:"string_match,omitempty"`
	InvertMatch    bool           `json:"invert_match,omitempty"`
}

// StringMatcher is Envoy's type.matcher.v3.StringMatcher.
type StringMatcher struct {
	Exact      *string       `json:"exact,omitempty"`
	Prefix     *string       `json:"prefix,omitempty"`
	Suffix     *string       `json:"suffix,omitempty"`
	Contains   *string       `json:"contains,omitempty"`
	SafeRegex  *RegexMatcher `json:"safe_regex,omitempty"`
	IgnoreCase bool          `json:"ignore_case,omitempty"`
}

// RouteAction forwards to a cluster or weighted clusters.
type RouteAction struct {
	Cluster          string            `json:"cluster,omitempty"`
	WeightedClusters *WeightedClusters `json:"weighted_clusters,omitempty"`
	Timeout          *Duration         `json:"timeout,omitempty"`
	RetryPolicy      *RetryPolicy      `json:"retry_policy,omitempty"`
	PrefixRewrite    string            `json:"prefix_rewrite,omitempty"`
}

// WeightedClusters splits traffic by weight.
type WeightedClusters struct {
	Clusters    []ClusterWeight `json:"clusters"`
	TotalWeight *uint32         `json:"total_weight,omitempty"`
}

// ClusterWeight is one cluster of a split.
type ClusterWeight struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

// RetryPolicy is a route's retry policy.
type RetryPolicy struct {
	RetryOn              string        `json:"retry_on,omitempty"`
	NumRetries           *uint32       `json:"num_retries,omitempty"`
	PerTryTimeout        *Duration     `json:"per_try_timeout,omitempty"`
	RetryBackOff         *RetryBackOff `json:"retry_back_off,omitempty"`
	RetriableStatusCodes []uint32      `json:"retriable_status_codes,omitempty"`
}

// RetryBackOff is Envoy's fully jittered exponential back-off between retries.
type RetryBackOff struct {
	BaseInterval *Duration `json:"base_interval,omitempty"`
	MaxInterval  *Duration `json:"max_interval,omitempty"`
}

// Cluster is an upstream cluster.
type Cluster struct {
	Name             string                 `json:"name"`
	ConnectTimeout   *Duration              `json:"connect_timeout,omitempty"`
	Type             string                 `json:"type,omitempty"`
	LbPolicy         string                 `json:"lb_policy,omitempty"`
	DNSRefreshRate   *Duration              `json:"dns_refresh_rate,omitempty"`
	DNSLookupFamily  string                 `json:"dns_lookup_family,omitempty"`
	CircuitBreakers  *CircuitBreakers       `json:"circuit_breakers,omitempty"`
	OutlierDetection *OutlierDetection      `json:"outlier_detection,omitempty"`
	CommonLbConfig   *CommonLbConfig        `json:"common_lb_config,omitempty"`
	LoadAssignment   *ClusterLoadAssignment `json:"load_assignment,omitempty"`
	TransportSocket  *TransportSocket       `json:"transport_socket,omitempty"`
}

// CommonLbConfig holds the load-balancing settings shared by every lb_policy.
type CommonLbConfig struct {
	HealthyPanicThreshold *Percent `json:"healthy_panic_threshold,omitempty"`
}

// Percent is Envoy's type.v3.Percent.
type Percent struct {
	Value float64 `json:"value"`
}

// CircuitBreakers are per-priority thresholds.
type CircuitBreakers struct {
	Thresholds []Thresholds `json:"thresholds,omitempty"`
}

// Thresholds are circuit breaker limits.
type Thresholds struct {
	Priority           string  `json:"priority,omitempty"`
	MaxConnections     *uint32 `json:"max_connections,omitempty"`
	MaxPendingRequests *uint32 `json:"max_pending_requests,omitempty"`
	MaxRequests        *uint32 `json:"max_requests,omitempty"`
	MaxRetries         *uint32 `json:"max_retries,omitempty"`
}

// OutlierDetection ejects failing endpoints.
type OutlierDetection struct {
	Consecutive5xx                     *uint32   `json:"consecutive_5xx,omitempty"`
	ConsecutiveGatewayFailure          *uint32   `json:"consecutive_gateway_failure,omitempty"`
	EnforcingConsecutive5xx            *uint32   `json:"enforcing_consecutive_5xx,omitempty"`
	EnforcingConsecutiveGatewayFailure *uint32   `json:"enforcing_consecutive_gateway_failure,omitempty"`
	Interval                           *Duration `json:"interval,omitempty"`
	BaseEjectionTime                   *Duration `json:"base_ejection_time,omitempty"`
	MaxEjectionPercent                 *uint32   `json:"max_ejection_percent,omitempty"`
	MaxEjectionTime                    *Duration `json:"max_ejection_time,omitempty"`
	// Success-rate ejection: parsed, not enforced (reported unless disabled).
	EnforcingSuccessRate     *uint32 `json:"enforcing_success_rate,omitempty"`
	SuccessRateMinimumHosts  *uint32 `json:"success_rate_minimum_hosts,omitempty"`
	SuccessRateRequestVolume *uint32 `json:"success_rate_request_volume,omitempty"`
	SuccessRateStdevFactor   *uint32 `json:"success_rate_stdev_factor,omitempty"`
}

// TransportSocket is a cluster's transport socket. After Parse, TLS is set for
// envoy.transport_sockets.tls and nil for envoy.transport_sockets.raw_buffer.
type TransportSocket struct {
	Name        string         `json:"name"`
	TypedConfig map[string]any `json:"typed_config,omitempty"`

	TLS *UpstreamTLSContext `json:"-"`
}

// UpstreamTLSContext is envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext.
type UpstreamTLSContext struct {
	Type             string            `json:"@type"`
	SNI              string            `json:"sni,omitempty"`
	CommonTLSContext *CommonTLSContext `json:"common_tls_context,omitempty"`
}

// CommonTLSContext holds the client certificate, the validation rules and ALPN.
type CommonTLSContext struct {
	TLSCertificates   []TLSCertificate              `json:"tls_certificates,omitempty"`
	ValidationContext *CertificateValidationContext `json:"validation_context,omitempty"`
	AlpnProtocols     []string                      `json:"alpn_protocols,omitempty"`
}

// TLSCertificate is a certificate chain and its private key.
type TLSCertificate struct {
	CertificateChain *DataSource `json:"certificate_chain,omitempty"`
	PrivateKey       *DataSource `json:"private_key,omitempty"`
}

// CertificateValidationContext says which server certificates are accepted.
type CertificateValidationContext struct {
	TrustedCA                 *DataSource             `json:"trusted_ca,omitempty"`
	MatchTypedSubjectAltNames []SubjectAltNameMatcher `json:"match_typed_subject_alt_names,omitempty"`
}

// SubjectAltNameMatcher matches one SAN of the server certificate.
type SubjectAltNameMatcher struct {
	SanType string        `json:"san_type"`
	Matcher StringMatcher `json:"matcher"`
}

// DataSource is Envoy's config.core.v3.DataSource: a file or inline data.
type DataSource struct {
	Filename     string  `json:"filename,omitempty"`
	InlineString *string `json:"inline_string,omitempty"`
	InlineBytes  []byte  `json:"inline_bytes,omitempty"`
}

// Read returns the data: the file's content or the inline value.
func (d *DataSource) Read() ([]byte, error) {
	switch {
	case d.InlineString != nil:
		return []byte(*d.InlineString), nil
	case d.InlineBytes != nil:
		return d.InlineBytes, nil
	}
	b, err := os.ReadFile(d.Filename)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.Filename, err)
	}
	return b, nil
}

// ClusterLoadAssignment lists a cluster's endpoints.
type ClusterLoadAssignment struct {
	ClusterName string                `json:"cluster_name,omitempty"`
	Endpoints   []LocalityLbEndpoints `json:"endpoints,omitempty"`
}

// LocalityLbEndpoints is a group of endpoints.
type LocalityLbEndpoints struct {
	LbEndpoints []LbEndpoint `json:"lb_endpoints,omitempty"`
}

// LbEndpoint is one endpoint.
type LbEndpoint struct {
	Endpoint Endpoint `json:"endpoint"`
}

// Endpoint has an address.
type Endpoint struct {
	Address Address `json:"address"`
}

// Addresses lists the cluster's endpoint socket addresses in order.
func (c *Cluster) Addresses() []*SocketAddress {
	var out []*SocketAddress
	if c.LoadAssignment == nil {
		return nil
	}
	for _, le := range c.LoadAssignment.Endpoints {
		for _, e := range le.LbEndpoints {
			if e.Endpoint.Address.SocketAddress != nil {
				out = append(out, e.Endpoint.Address.SocketAddress)
			}
		}
	}
	return out
}

// Problem is one unknown or unsupported field, or one invalid value.
type Problem struct {
	Path    string
	Line    int // line in the file (1-based), 0 when unknown
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Path, p.Message)
	}
	return p.Path + ": " + p.Message
}

// UnsupportedError lists every unknown or unsupported field.
type UnsupportedError struct{ Problems []Problem }

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("the envoy config has %d unsupported field(s) (fix them, or pass --allow-unsupported to ignore them):\n%s",
		len(e.Problems), listProblems(e.Problems))
}

// InvalidError lists every invalid value (a bad duration, an unknown enum, a number where a
// string belongs, a route to an undefined cluster); no flag excuses them. Unsupported lists
// the unsupported fields found so far, so that one run names everything to fix.
type InvalidError struct{ Problems, Unsupported []Problem }

func (e *InvalidError) Error() string {
	msg := fmt.Sprintf("the envoy config has %d invalid value(s) (fix them):\n%s", len(e.Problems), listProblems(e.Problems))
	if len(e.Unsupported) > 0 {
		msg += fmt.Sprintf("\nand %d unsupported field(s) (fix them, or pass --allow-unsupported to ignore them):\n%s",
			len(e.Unsupported), listProblems(e.Unsupported))
	}
	return msg
}

func listProblems(ps []Problem) string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "  " + p.String()
	}
	return strings.Join(lines, "\n")
}

// Options tune Parse.
type Options struct {
	// AllowUnsupported turns unknown and unsupported fields into warnings.
	AllowUnsupported bool
}

// ParseFile reads and parses a bootstrap file.
func ParseFile(path string, opts Options) (*Bootstrap, []Problem, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read the envoy config: %w", err)
	}
	return Parse(b, opts)
}

// checker collects unsupported fields and invalid values while walking the document.
type checker struct {
	unsupported []Problem
	invalid     []Problem
}

func (c *checker) unsupportedf(path, format string, args ...any) {
	c.unsupported = append(c.unsupported, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) invalidError(lines lineIndex, opts Options) *InvalidError {
	if opts.AllowUnsupported {
		return &InvalidError{Problems: lines.annotate(c.invalid)}
	}
	sort.SliceStable(c.unsupported, func(a, b int) bool { return c.unsupported[a].Path < c.unsupported[b].Path })
	return &InvalidError{Problems: lines.annotate(c.invalid), Unsupported: lines.annotate(c.unsupported)}
}

func (c *checker) invalidf(path, format string, args ...any) {
	c.invalid = append(c.invalid, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Parse parses a YAML or JSON bootstrap. It returns the unsupported fields as warnings when
// opts.AllowUnsupported, else an *UnsupportedError listing them. Invalid values (bad
// durations, unknown enums, undefined clusters) are always an *InvalidError. Every problem
// names the field's path and, where it can be found, its line.
func Parse(data []byte, opts Options) (*Bootstrap, []Problem, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("the envoy config is not YAML or JSON: %w", err)
	}
	var raw any
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, nil, fmt.Errorf("the envoy config is not YAML or JSON: %w", err)
	}
	lines := newLineIndex(data)
	c := &checker{}
	check(reflect.TypeFor[Bootstrap](), raw, "", c)
	if len(c.invalid) > 0 {
		return nil, nil, c.invalidError(lines, opts)
	}
	var bs Bootstrap
	if err := json.Unmarshal(js, &bs); err != nil {
		return nil, nil, fmt.Errorf("the envoy config has a value of the wrong type: %w", err)
	}
	bs.resolveTyped(c)
	bs.reportNotEnforced(c)
	bs.validate(c)
	if len(c.invalid) > 0 {
		return nil, nil, c.invalidError(lines, opts)
	}
	probs := lines.annotate(c.unsupported)
	if len(probs) > 0 && !opts.AllowUnsupported {
		return nil, probs, &UnsupportedError{Problems: probs}
	}
	return &bs, probs, nil
}

// enforcedRetryOn are the retry_on conditions the standalone proxy implements.
var enforcedRetryOn = map[string]bool{"5xx": true, "gateway-error": true, "retriable-4xx": true,
	"connect-failure": true, "reset": true, "retriable-status-codes": true}

// reportNotEnforced records the fields that parse but that the standalone proxy does not
// enforce, so that none is ignored silently.
func (bs *Bootstrap) reportNotEnforced(c *checker) {
	for i, cl := range bs.StaticResources.Clusters {
		path := fmt.Sprintf("static_resources.clusters[%d]", i)
		if od := cl.OutlierDetection; od != nil {
			op := path + ".outlier_detection"
			for name, v := range map[string]*uint32{
				"enforcing_consecutive_5xx": od.EnforcingConsecutive5xx, "enforcing_consecutive_gateway_failure": od.EnforcingConsecutiveGatewayFailure,
			} {
				if v != nil && *v != 0 && *v != 100 {
					c.unsupportedf(op+"."+name, "only 0 (never eject) and 100 (always eject) are enforced, not %d", *v)
				}
			}
			if od.EnforcingSuccessRate == nil || *od.EnforcingSuccessRate != 0 {
				for name, set := range map[string]bool{
					"enforcing_success_rate": od.EnforcingSuccessRate != nil, "success_rate_minimum_hosts": od.SuccessRateMinimumHosts != nil,
					"success_rate_request_volume": od.SuccessRateRequestVolume != nil, "success_rate_stdev_factor": od.SuccessRateStdevFactor != nil,
				} {
					if set {
						c.unsupportedf(op+"."+name, "success-rate ejection is not enforced by the standalone proxy (set enforcing_success_rate: 0)")
					}
				}
			}
			if od.MaxEjectionTime != nil && od.MaxEjectionTime.Duration != 300*time.Second {
				c.unsupportedf(op+".max_ejection_time", "only Envoy's default 300s is enforced")
			}
		}
		if cl.CircuitBreakers != nil {
			for j, t := range cl.CircuitBreakers.Thresholds {
				if t.Priority == "HIGH" {
					c.unsupportedf(fmt.Sprintf("%s.circuit_breakers.thresholds[%d].priority", path, j),
						"HIGH priority thresholds are not enforced (routes have no priority; only DEFAULT is)")
				}
			}
		}
		if ts := cl.TransportSocket; ts != nil && ts.TLS != nil && ts.TLS.CommonTLSContext != nil {
			ctx := ts.TLS.CommonTLSContext
			cp := path + ".transport_socket.typed_config.common_tls_context"
			if len(ctx.TLSCertificates) > 1 {
				c.unsupportedf(cp+".tls_certificates", "only one client certificate is supported, not %d", len(ctx.TLSCertificates))
			}
			for k, p := range ctx.AlpnProtocols {
				if p != "http/1.1" {
					c.unsupportedf(fmt.Sprintf("%s.alpn_protocols[%d]", cp, k), "%q is not supported: the standalone proxy speaks HTTP/1.1 to upstreams", p)
				}
			}
			if vc := ctx.ValidationContext; vc != nil {
				for k, m := range vc.MatchTypedSubjectAltNames {
					mp := fmt.Sprintf("%s.validation_context.match_typed_subject_alt_names[%d]", cp, k)
					if m.SanType != "DNS" && m.SanType != "URI" {
						c.unsupportedf(mp+".san_type", "%q is not supported (only DNS and URI)", m.SanType)
					}
					if m.Matcher.Exact == nil {
						c.unsupportedf(mp+".matcher", "only exact matchers are supported")
					}
				}
			}
		}
	}
	for li, l := range bs.StaticResources.Listeners {
		for ci, fc := range l.FilterChains {
			for fi, f := range fc.Filters {
				if f.HCM == nil || f.HCM.RouteConfig == nil {
					continue
				}
				fp := fmt.Sprintf("static_resources.listeners[%d].filter_chains[%d].filters[%d].typed_config.route_config", li, ci, fi)
				for vi, vh := range f.HCM.RouteConfig.VirtualHosts {
					for ri, r := range vh.Routes {
						if r.Route == nil || r.Route.RetryPolicy == nil {
							continue
						}
						for on := range strings.SplitSeq(r.Route.RetryPolicy.RetryOn, ",") {
							if on = strings.TrimSpace(on); on != "" && !enforcedRetryOn[on] {
								c.unsupportedf(fmt.Sprintf("%s.virtual_hosts[%d].routes[%d].route.retry_policy.retry_on", fp, vi, ri),
									"retry condition %q is not supported (supported: 5xx, gateway-error, retriable-4xx, connect-failure, reset, retriable-status-codes)", on)
							}
						}
					}
				}
			}
		}
	}
	sort.SliceStable(c.unsupported, func(a, b int) bool { return c.unsupported[a].Path < c.unsupported[b].Path })
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// check walks raw against t, records every key t does not know as unsupported and every
// value of the wrong kind (or that t's UnmarshalJSON refuses) as invalid.
func check(t reflect.Type, raw any, path string, c *checker) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if raw == nil {
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		b, _ := json.Marshal(raw)
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
			c.invalidf(path, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			c.invalidf(path, "must be an object, not %s", kindOf(raw))
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				c.unsupportedf(p, "unknown or unsupported field")
				continue
			}
			check(ft, m[k], p, c)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := raw.(string); !ok {
				c.invalidf(path, "must be a base64 string, not %s", kindOf(raw))
			}
			return
		}
		s, ok := raw.([]any)
		if !ok {
			c.invalidf(path, "must be a list, not %s", kindOf(raw))
			return
		}
		for i, v := range s {
			check(t.Elem(), v, fmt.Sprintf("%s[%d]", path, i), c)
		}
	case reflect.Map:
		if _, ok := raw.(map[string]any); !ok {
			c.invalidf(path, "must be an object, not %s", kindOf(raw))
		}
	case reflect.String:
		if _, ok := raw.(string); !ok {
			c.invalidf(path, "must be a string, not %s", kindOf(raw))
		}
	case reflect.Bool:
		if _, ok := raw.(bool); !ok {
			c.invalidf(path, "must be true or false, not %s", kindOf(raw))
		}
	case reflect.Uint32:
		f, ok := raw.(float64)
		if !ok || f != math.Trunc(f) || f < 0 || f > math.MaxUint32 {
			c.invalidf(path, "must be a whole number from 0 to %d, not %s", uint32(math.MaxUint32), kindOf(raw))
		}
	case reflect.Float64:
		if _, ok := raw.(float64); !ok {
			c.invalidf(path, "must be a number, not %s", kindOf(raw))
		}
	}
}

func kindOf(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

// lineIndex finds the line of a field path in the YAML (or JSON) source.
type lineIndex struct{ root *yamlv3.Node }

func newLineIndex(data []byte) lineIndex {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return lineIndex{}
	}
	return lineIndex{root: doc.Content[0]}
}

// line returns the line of path ("a.b[2].c"): the line of its key, or of the deepest part of
// the path that exists; 0 when unknown.
func (li lineIndex) line(path string) int {
	n := li.root
	if n == nil {
		return 0
	}
	line := 0
	for seg := range strings.SplitSeq(path, ".") {
		name, rest, _ := strings.Cut(seg, "[")
		if name != "" {
			for n.Kind == yamlv3.AliasNode {
				n = n.Alias
			}
			if n.Kind != yamlv3.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == name {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		}
		for rest != "" {
			var idx string
			idx, rest, _ = strings.Cut(rest, "]")
			rest = strings.TrimPrefix(rest, "[")
			i, err := strconv.Atoi(idx)
			for n.Kind == yamlv3.AliasNode {
				n = n.Alias
			}
			if err != nil || n.Kind != yamlv3.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		}
	}
	return line
}

func (li lineIndex) annotate(ps []Problem) []Problem {
	for i := range ps {
		if ps[i].Line == 0 {
			ps[i].Line = li.line(ps[i].Path)
		}
	}
	return ps
}

func decodeTyped(m map[string]any, into any, path string, c *checker) bool {
	n := len(c.invalid)
	check(reflect.TypeOf(into), m, path, c)
	if len(c.invalid) > n {
		return false
	}
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, into); err != nil {
		c.invalidf(path, "%v", err)
		return false
	}
	return true
}

func (bs *Bootstrap) resolveTyped(c *checker) {
	for li := range bs.StaticResources.Listeners {
		l := &bs.StaticResources.Listeners[li]
		for ci := range l.FilterChains {
			for fi := range l.FilterChains[ci].Filters {
				f := &l.FilterChains[ci].Filters[fi]
				path := fmt.Sprintf("static_resources.listeners[%d].filter_chains[%d].filters[%d]", li, ci, fi)
				typ, _ := f.TypedConfig["@type"].(string)
				switch {
				case f.Name == FilterHTTPConnectionManager || typ == TypeHTTPConnectionManager:
					if typ != "" && typ != TypeHTTPConnectionManager {
						c.invalidf(path+".typed_config.@type", "unknown type %s for %s (want %s)", typ, f.Name, TypeHTTPConnectionManager)
						continue
					}
					hcm := &HTTPConnectionManager{}
					if !decodeTyped(f.TypedConfig, hcm, path+".typed_config", c) {
						continue
					}
					f.HCM = hcm
					for hi, hf := range f.HCM.HTTPFilters {
						ht, _ := hf.TypedConfig["@type"].(string)
						if hf.Name != FilterRouter && ht != TypeRouter {
							c.unsupportedf(fmt.Sprintf("%s.typed_config.http_filters[%d]", path, hi), "unsupported http filter %s (only %s)", hf.Name, FilterRouter)
						}
					}
				case f.Name == FilterTCPProxy || typ == TypeTCPProxy:
					if typ != "" && typ != TypeTCPProxy {
						c.invalidf(path+".typed_config.@type", "unknown type %s for %s (want %s)", typ, f.Name, TypeTCPProxy)
						continue
					}
					tp := &TCPProxy{}
					if decodeTyped(f.TypedConfig, tp, path+".typed_config", c) {
						f.TCPProxy = tp
					}
				default:
					c.unsupportedf(path, "unsupported network filter %s", f.Name)
				}
			}
		}
	}
	for i := range bs.StaticResources.Clusters {
		ts := bs.StaticResources.Clusters[i].TransportSocket
		if ts == nil {
			continue
		}
		path := fmt.Sprintf("static_resources.clusters[%d].transport_socket", i)
		typ, _ := ts.TypedConfig["@type"].(string)
		switch {
		case ts.Name == TransportSocketRawBuffer && len(ts.TypedConfig) == 0:
		case ts.Name == TransportSocketTLS || typ == TypeUpstreamTLSContext:
			if typ != TypeUpstreamTLSContext {
				c.invalidf(path+".typed_config.@type", "%q is not supported (want %s)", typ, TypeUpstreamTLSContext)
				continue
			}
			tc := &UpstreamTLSContext{}
			if decodeTyped(ts.TypedConfig, tc, path+".typed_config", c) {
				ts.TLS = tc
			}
		default:
			c.unsupportedf(path, "unsupported transport socket %s (only %s)", ts.Name, TransportSocketTLS)
		}
	}
}

// validate records the values that no flag can excuse.
func (bs *Bootstrap) validate(c *checker) {
	clusters := map[string]bool{}
	for i, cl := range bs.StaticResources.Clusters {
		p := fmt.Sprintf("static_resources.clusters[%d]", i)
		if cl.Name == "" {
			c.invalidf(p+".name", "required")
		} else if clusters[cl.Name] {
			c.invalidf(p+".name", "cluster %q is defined twice; cluster names must be unique", cl.Name)
		}
		clusters[cl.Name] = true
		switch cl.Type {
		case "", "STATIC", "STRICT_DNS", "LOGICAL_DNS":
		default:
			c.invalidf(p+".type", "%q is not one of STATIC, STRICT_DNS, LOGICAL_DNS", cl.Type)
		}
		switch cl.LbPolicy {
		case "", "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM":
		default:
			c.invalidf(p+".lb_policy", "%q is not one of ROUND_ROBIN, LEAST_REQUEST, RANDOM", cl.LbPolicy)
		}
		if cl.Type == "LOGICAL_DNS" && len(cl.Addresses()) != 1 {
			c.invalidf(p+".load_assignment", "a LOGICAL_DNS cluster needs exactly one endpoint")
		}
		if od := cl.OutlierDetection; od != nil {
			for name, v := range map[string]*uint32{
				"max_ejection_percent": od.MaxEjectionPercent, "enforcing_consecutive_5xx": od.EnforcingConsecutive5xx,
				"enforcing_consecutive_gateway_failure": od.EnforcingConsecutiveGatewayFailure,
			} {
				if v != nil && *v > 100 {
					c.invalidf(p+".outlier_detection."+name, "%d is not a percentage from 0 to 100", *v)
				}
			}
			for name, d := range map[string]*Duration{"interval": od.Interval, "base_ejection_time": od.BaseEjectionTime} {
				if d != nil && d.Duration <= 0 {
					c.invalidf(p+".outlier_detection."+name, "must be greater than 0s")
				}
			}
		}
		if lb := cl.CommonLbConfig; lb != nil && lb.HealthyPanicThreshold != nil {
			if v := lb.HealthyPanicThreshold.Value; v < 0 || v > 100 {
				c.invalidf(p+".common_lb_config.healthy_panic_threshold.value", "%g is not a percentage from 0 to 100", v)
			}
		}
		if cl.CircuitBreakers != nil {
			for j, t := range cl.CircuitBreakers.Thresholds {
				switch t.Priority {
				case "", "DEFAULT", "HIGH":
				default:
					c.invalidf(fmt.Sprintf("%s.circuit_breakers.thresholds[%d].priority", p, j), "%q is not one of DEFAULT, HIGH", t.Priority)
				}
			}
		}
		if ts := cl.TransportSocket; ts != nil && ts.TLS != nil && ts.TLS.CommonTLSContext != nil {
			cp := p + ".transport_socket.typed_config.common_tls_context"
			ctx := ts.TLS.CommonTLSContext
			for k, tc := range ctx.TLSCertificates {
				tp := fmt.Sprintf("%s.tls_certificates[%d]", cp, k)
				validateDataSource(c, tp+".certificate_chain", tc.CertificateChain)
				validateDataSource(c, tp+".private_key", tc.PrivateKey)
			}
			if vc := ctx.ValidationContext; vc != nil && vc.TrustedCA != nil {
				validateDataSource(c, cp+".validation_context.trusted_ca", vc.TrustedCA)
			} else if vc != nil && len(vc.MatchTypedSubjectAltNames) > 0 {
				c.invalidf(cp+".validation_context.match_typed_subject_alt_names",
					"matching SANs without trusted_ca verifies nothing: add validation_context.trusted_ca (Envoy refuses this too)")
			}
		}
	}
	ref := func(p, name string) {
		if !clusters[name] {
			c.invalidf(p, "cluster %q is not defined in static_resources.clusters", name)
		}
	}
	for li, l := range bs.StaticResources.Listeners {
		lp := fmt.Sprintf("static_resources.listeners[%d]", li)
		if l.Address.SocketAddress == nil {
			c.invalidf(lp+".address.socket_address", "required")
		}
		for ci, fc := range l.FilterChains {
			for fi, f := range fc.Filters {
				fp := fmt.Sprintf("%s.filter_chains[%d].filters[%d].typed_config", lp, ci, fi)
				if f.TCPProxy != nil {
					ref(fp+".cluster", f.TCPProxy.Cluster)
				}
				if f.HCM == nil || f.HCM.RouteConfig == nil {
					continue
				}
				for vi, vh := range f.HCM.RouteConfig.VirtualHosts {
					for ri, r := range vh.Routes {
						rp := fmt.Sprintf("%s.route_config.virtual_hosts[%d].routes[%d]", fp, vi, ri)
						n := 0
						for _, set := range []bool{r.Match.Prefix != nil, r.Match.Path != nil, r.Match.SafeRegex != nil} {
							if set {
								n++
							}
						}
						if n != 1 {
							c.invalidf(rp+".match", "exactly one of prefix, path, safe_regex is required")
						}
						if r.Route == nil {
							c.invalidf(rp+".route", "required")
							continue
						}
						if r.Route.WeightedClusters != nil {
							for wi, w := range r.Route.WeightedClusters.Clusters {
								ref(fmt.Sprintf("%s.route.weighted_clusters.clusters[%d].name", rp, wi), w.Name)
							}
						} else {
							ref(rp+".route.cluster", r.Route.Cluster)
						}
						validateRetryPolicy(c, rp+".route.retry_policy", r.Route.RetryPolicy)
					}
				}
			}
		}
	}
}

func validateRetryPolicy(c *checker, p string, rp *RetryPolicy) {
	if rp == nil {
		return
	}
	if bo := rp.RetryBackOff; bo != nil {
		if bo.BaseInterval == nil || bo.BaseInterval.Duration <= 0 {
			c.invalidf(p+".retry_back_off.base_interval", "required, and greater than 0s")
		} else if bo.MaxInterval != nil && bo.MaxInterval.Duration < bo.BaseInterval.Duration {
			c.invalidf(p+".retry_back_off.max_interval", "must not be less than base_interval (%s)", bo.BaseInterval.Duration)
		}
	}
	for i, code := range rp.RetriableStatusCodes {
		if code < 100 || code > 599 {
			c.invalidf(fmt.Sprintf("%s.retriable_status_codes[%d]", p, i), "%d is not an HTTP status code", code)
		}
	}
}

func validateDataSource(c *checker, p string, d *DataSource) {
	n := 0
	for _, set := range []bool{d != nil && d.Filename != "", d != nil && d.InlineString != nil, d != nil && d.InlineBytes != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		c.invalidf(p, "exactly one of filename, inline_string, inline_bytes is required")
		return
	}
	if d.Filename != "" {
		if _, err := os.Stat(d.Filename); err != nil {
			c.invalidf(p+".filename", "%v", err)
		}
	}
}
