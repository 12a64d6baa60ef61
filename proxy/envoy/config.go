// Package envoy parses the supported subset of an Envoy v3 static bootstrap (YAML or JSON)
// into Go structs, reporting every unknown or unsupported field with its path.
package envoy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Type URLs of the supported typed configs.
const (
	TypeHTTPConnectionManager = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	TypeTCPProxy              = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	TypeRouter                = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

	FilterHTTPConnectionManager = "envoy.filters.network.http_connection_manager"
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
	RetryOn       string    `json:"retry_on,omitempty"`
	NumRetries    *uint32   `json:"num_retries,omitempty"`
	PerTryTimeout *Duration `json:"per_try_timeout,omitempty"`
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
	LoadAssignment   *ClusterLoadAssignment `json:"load_assignment,omitempty"`
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
	Consecutive5xx     *uint32   `json:"consecutive_5xx,omitempty"`
	Interval           *Duration `json:"interval,omitempty"`
	BaseEjectionTime   *Duration `json:"base_ejection_time,omitempty"`
	MaxEjectionPercent *uint32   `json:"max_ejection_percent,omitempty"`
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

// Problem is one unknown or unsupported field.
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// UnsupportedError lists every unknown or unsupported field.
type UnsupportedError struct{ Problems []Problem }

func (e *UnsupportedError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("the envoy config has %d unsupported field(s) (fix them, or pass --allow-unsupported to ignore them):\n%s",
		len(e.Problems), strings.Join(lines, "\n"))
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

// Parse parses a YAML or JSON bootstrap. It returns the unsupported fields as warnings when
// opts.AllowUnsupported, else an *UnsupportedError listing them. Invalid values (unknown
// clusters, bad enums) are always errors.
func Parse(data []byte, opts Options) (*Bootstrap, []Problem, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("the envoy config is not YAML or JSON: %w", err)
	}
	var raw any
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, nil, fmt.Errorf("the envoy config is not YAML or JSON: %w", err)
	}
	var probs []Problem
	check(reflect.TypeFor[Bootstrap](), raw, "", &probs)
	var bs Bootstrap
	if err := json.Unmarshal(js, &bs); err != nil {
		return nil, nil, fmt.Errorf("the envoy config has a value of the wrong type: %w", err)
	}
	if err := bs.resolveTyped(&probs); err != nil {
		return nil, nil, err
	}
	bs.reportNotEnforced(&probs)
	if len(probs) > 0 && !opts.AllowUnsupported {
		return nil, probs, &UnsupportedError{Problems: probs}
	}
	if err := bs.validate(); err != nil {
		return nil, probs, err
	}
	return &bs, probs, nil
}

// reportNotEnforced records the fields that parse but that the standalone proxy does not
// enforce yet, so that none is ignored silently.
func (bs *Bootstrap) reportNotEnforced(probs *[]Problem) {
	for i, c := range bs.StaticResources.Clusters {
		path := fmt.Sprintf("static_resources.clusters[%d]", i)
		if c.OutlierDetection != nil {
			*probs = append(*probs, Problem{Path: path + ".outlier_detection", Message: "not enforced yet by the standalone proxy"})
		}
		if c.CircuitBreakers == nil {
			continue
		}
		for j, t := range c.CircuitBreakers.Thresholds {
			tp := fmt.Sprintf("%s.circuit_breakers.thresholds[%d]", path, j)
			for name, set := range map[string]bool{
				"max_connections": t.MaxConnections != nil, "max_pending_requests": t.MaxPendingRequests != nil,
				"max_retries": t.MaxRetries != nil,
			} {
				if set {
					*probs = append(*probs, Problem{Path: tp + "." + name, Message: "not enforced yet (only max_requests is)"})
				}
			}
		}
	}
	sort.Slice(*probs, func(a, b int) bool { return (*probs)[a].Path < (*probs)[b].Path })
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// check walks raw against t and records every key t does not know.
func check(t reflect.Type, raw any, path string, probs *[]Problem) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return // json.Unmarshal reports the type error
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
				*probs = append(*probs, Problem{Path: p, Message: "unknown or unsupported field"})
				continue
			}
			check(ft, m[k], p, probs)
		}
	case reflect.Slice:
		s, ok := raw.([]any)
		if !ok {
			return
		}
		for i, v := range s {
			check(t.Elem(), v, fmt.Sprintf("%s[%d]", path, i), probs)
		}
	}
}

func decodeTyped(m map[string]any, into any, path string, probs *[]Problem) error {
	check(reflect.TypeOf(into), m, path, probs)
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (bs *Bootstrap) resolveTyped(probs *[]Problem) error {
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
						*probs = append(*probs, Problem{Path: path + ".typed_config.@type", Message: "unsupported type " + typ})
						continue
					}
					f.HCM = &HTTPConnectionManager{}
					if err := decodeTyped(f.TypedConfig, f.HCM, path+".typed_config", probs); err != nil {
						return err
					}
					for hi, hf := range f.HCM.HTTPFilters {
						ht, _ := hf.TypedConfig["@type"].(string)
						if hf.Name != FilterRouter && ht != TypeRouter {
							*probs = append(*probs, Problem{Path: fmt.Sprintf("%s.typed_config.http_filters[%d]", path, hi), Message: "unsupported http filter " + hf.Name + " (only " + FilterRouter + ")"})
						}
					}
				case f.Name == FilterTCPProxy || typ == TypeTCPProxy:
					if typ != "" && typ != TypeTCPProxy {
						*probs = append(*probs, Problem{Path: path + ".typed_config.@type", Message: "unsupported type " + typ})
						continue
					}
					f.TCPProxy = &TCPProxy{}
					if err := decodeTyped(f.TypedConfig, f.TCPProxy, path+".typed_config", probs); err != nil {
						return err
					}
				default:
					*probs = append(*probs, Problem{Path: path, Message: "unsupported network filter " + f.Name})
				}
			}
		}
	}
	return nil
}

// validate checks values that no flag can excuse.
func (bs *Bootstrap) validate() error {
	var errs []error
	clusters := map[string]bool{}
	for i, c := range bs.StaticResources.Clusters {
		p := fmt.Sprintf("static_resources.clusters[%d]", i)
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: required", p))
		}
		clusters[c.Name] = true
		switch c.Type {
		case "", "STATIC", "STRICT_DNS", "LOGICAL_DNS":
		default:
			errs = append(errs, fmt.Errorf("%s.type: %q is not one of STATIC, STRICT_DNS, LOGICAL_DNS", p, c.Type))
		}
		switch c.LbPolicy {
		case "", "ROUND_ROBIN", "LEAST_REQUEST", "RANDOM":
		default:
			errs = append(errs, fmt.Errorf("%s.lb_policy: %q is not one of ROUND_ROBIN, LEAST_REQUEST, RANDOM", p, c.LbPolicy))
		}
		if c.Type == "LOGICAL_DNS" && len(c.Addresses()) != 1 {
			errs = append(errs, fmt.Errorf("%s.load_assignment: a LOGICAL_DNS cluster needs exactly one endpoint", p))
		}
	}
	ref := func(p, name string) {
		if !clusters[name] {
			errs = append(errs, fmt.Errorf("%s: cluster %q is not defined in static_resources.clusters", p, name))
		}
	}
	for li, l := range bs.StaticResources.Listeners {
		lp := fmt.Sprintf("static_resources.listeners[%d]", li)
		if l.Address.SocketAddress == nil {
			errs = append(errs, fmt.Errorf("%s.address.socket_address: required", lp))
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
							errs = append(errs, fmt.Errorf("%s.match: exactly one of prefix, path, safe_regex is required", rp))
						}
						if r.Route == nil {
							errs = append(errs, fmt.Errorf("%s.route: required", rp))
							continue
						}
						if r.Route.WeightedClusters != nil {
							for wi, w := range r.Route.WeightedClusters.Clusters {
								ref(fmt.Sprintf("%s.route.weighted_clusters.clusters[%d].name", rp, wi), w.Name)
							}
						} else {
							ref(rp+".route.cluster", r.Route.Cluster)
						}
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}
