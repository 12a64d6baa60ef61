package policy

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Request is what routing and authorization look at. Path must already be normalised
// (NormalizePath): the same path is matched and forwarded.
type Request struct {
	Method string
	// Authority is the Host header or :authority, possibly with a port.
	Authority string
	Scheme    string
	// Path is the normalised path, without query.
	Path string
	// RawQuery is the query string, without "?".
	RawQuery string
	// Port is the destination port the client connected to.
	Port uint32
	// Header holds the request headers under canonical names, as net/http does.
	Header http.Header

	// SourcePrincipal is the peer's identity from its mTLS certificate, as an Istio principal
	// (cluster.local/ns/<ns>/sa/<sa>); empty for a plain-text peer.
	SourcePrincipal string
	SourceIP        netip.Addr
	DestinationIP   netip.Addr
	// TCP marks an opaque TCP connection: it has no HTTP method, path, host or headers.
	TCP bool
}

// SelectRoute returns the first route whose match the request satisfies. Translation orders
// the routes (list order for Istio, Gateway API precedence for HTTPRoutes), so evaluation is
// always first-match. When no route matches, the proxy answers 404.
func SelectRoute(routes []Route, req *Request) (*Route, bool) {
	for i := range routes {
		if routes[i].Match.Matches(req) {
			return &routes[i], true
		}
	}
	return nil, false
}

// Matches reports whether req satisfies every condition of m.
func (m *Match) Matches(req *Request) bool {
	if m.Port != 0 && m.Port != req.Port {
		return false
	}
	if m.Path != nil && !m.Path.Matches(req.Path) {
		return false
	}
	if m.Method != nil && !m.Method.Matches(req.Method) {
		return false
	}
	if m.Authority != nil && !m.Authority.Matches(req.Authority) {
		return false
	}
	if m.Scheme != nil && !m.Scheme.Matches(req.Scheme) {
		return false
	}
	for i := range m.Headers {
		if !m.Headers[i].Matches(req.Header) {
			return false
		}
	}
	for i := range m.QueryParams {
		if !m.QueryParams[i].Matches(req.RawQuery) {
			return false
		}
	}
	return true
}

// Matches reports whether s satisfies the match. MatchPresent matches any s here; callers
// handle absence.
func (m *StringMatch) Matches(s string) bool {
	switch m.Kind {
	case MatchExact:
		if m.IgnoreCase {
			return strings.EqualFold(s, m.Value)
		}
		return s == m.Value
	case MatchPrefix:
		return hasPrefix(s, m.Value, m.IgnoreCase)
	case MatchSegmentPrefix:
		return hasSegmentPrefix(s, m.Value, m.IgnoreCase)
	case MatchRegex:
		return m.Regex != nil && m.Regex.MatchString(s)
	case MatchPresent:
		return true
	}
	return false
}

func hasPrefix(s, prefix string, ignoreCase bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if ignoreCase {
		return strings.EqualFold(s[:len(prefix)], prefix)
	}
	return s[:len(prefix)] == prefix
}

// hasSegmentPrefix is Gateway API's PathPrefix: prefix (without trailing slash, except "/")
// must be followed by the end of the path or by "/".
func hasSegmentPrefix(path, prefix string, ignoreCase bool) bool {
	prefix = trimTrailingSlash(prefix)
	if prefix == "/" {
		return strings.HasPrefix(path, "/")
	}
	if !hasPrefix(path, prefix, ignoreCase) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func trimTrailingSlash(p string) string {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}

// Matches reports whether the header h satisfies the match.
func (m *HeaderMatch) Matches(h http.Header) bool {
	values, present := h[m.Name]
	present = present && len(values) > 0
	var matched bool
	switch {
	case !present:
		matched = false
	case m.Value.Kind == MatchPresent:
		matched = true
	case len(values) == 1:
		matched = m.Value.Matches(values[0])
	default:
		matched = m.Value.Matches(strings.Join(values, ","))
	}
	return matched != m.Invert
}

// Matches reports whether the first query parameter named m.Name in rawQuery satisfies the
// match. It allocates only when the parameter is percent-encoded.
func (m *QueryParamMatch) Matches(rawQuery string) bool {
	value, ok := queryValue(rawQuery, m.Name)
	if !ok {
		return false
	}
	return m.Value.Matches(value)
}

// queryValue returns the decoded value of the first parameter called name.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(key, "%+") {
			decoded, err := url.QueryUnescape(key)
			if err != nil {
				continue
			}
			key = decoded
		}
		if key != name {
			continue
		}
		if strings.ContainsAny(value, "%+") {
			decoded, err := url.QueryUnescape(value)
			if err != nil {
				return "", false
			}
			value = decoded
		}
		return value, true
	}
	return "", false
}

// PickWeighted picks a destination in proportion to the weights, using rnd (a uniformly
// random number, such as rand.Uint64()). Weights are relative to their sum. It returns false
// when dests is empty or every weight is 0.
func PickWeighted(dests []WeightedDestination, rnd uint64) (*WeightedDestination, bool) {
	var total uint64
	for i := range dests {
		total += uint64(dests[i].Weight)
	}
	if total == 0 {
		return nil, false
	}
	point := rnd % total
	for i := range dests {
		w := uint64(dests[i].Weight)
		if point < w {
			return &dests[i], true
		}
		point -= w
	}
	return nil, false // unreachable: point < total
}

// RewritePath returns the path to forward for a request to path that matched route r: path
// itself when r has no path rewrite. Query strings are the caller's.
func (r *Route) RewritePath(path string) string {
	if r.Rewrite == nil || r.Rewrite.Path == nil {
		return path
	}
	return r.Match.rewrite(path, r.Rewrite.Path)
}

// RedirectPath returns the path of the redirect location for a request to path, or path
// itself when the redirect keeps it.
func (r *Route) RedirectPath(path string) string {
	if r.Redirect == nil || r.Redirect.Path == nil {
		return path
	}
	return r.Match.rewrite(path, r.Redirect.Path)
}

func (m *Match) rewrite(path string, rw *PathRewrite) string {
	switch rw.Kind {
	case RewriteFullPath:
		return rw.Value
	case RewritePrefix:
		// Istio uses Envoy's prefix_rewrite: the matched prefix is the match's prefix, the
		// whole path for exact and regex matches, and "/" without a path match.
		matched := 1
		if m.Path != nil {
			switch m.Path.Kind {
			case MatchPrefix:
				matched = len(m.Path.Value)
			case MatchExact, MatchRegex:
				matched = len(path)
			}
		}
		matched = min(matched, len(path))
		return rw.Value + path[matched:]
	case RewriteSegmentPrefix:
		prefix := "/"
		if m.Path != nil && (m.Path.Kind == MatchSegmentPrefix || m.Path.Kind == MatchPrefix) {
			prefix = trimTrailingSlash(m.Path.Value)
		}
		return replaceSegmentPrefix(path, prefix, rw.Value)
	}
	return path
}

// replaceSegmentPrefix is Gateway API's ReplacePrefixMatch: "/foo/bar" with prefix "/foo"
// becomes "/xyz/bar" for "/xyz" or "/xyz/", and "/bar" for "" or "/".
func replaceSegmentPrefix(path, prefix, replacement string) string {
	rest := path
	if prefix != "/" {
		rest = path[min(len(prefix), len(path)):]
	}
	rest = strings.TrimPrefix(rest, "/")
	replacement = strings.TrimSuffix(replacement, "/")
	if rest == "" {
		if replacement == "" {
			return "/"
		}
		if strings.HasSuffix(path, "/") && path != prefix {
			return replacement + "/"
		}
		return replacement
	}
	return replacement + "/" + rest
}

// HostMatches reports whether host (without port) matches pattern: exactly (ignoring case),
// "*.suffix" for any host ending in ".suffix", or "*" for any host.
func HostMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix)
	}
	return strings.EqualFold(pattern, host)
}

// SelectVirtualHost returns the route table for a request to authority (port is the
// destination port; authority may carry one too) through gateway (MeshGateway for sidecars,
// "namespace/name" for an Istio Gateway). An exact host beats a wildcard, a longer wildcard a
// shorter one, and among equals the first in hosts (translation puts the oldest resource
// first).
func SelectVirtualHost(hosts []VirtualHost, gateway, authority string, port uint32) (*VirtualHost, bool) {
	host := stripPort(authority)
	host = strings.TrimSuffix(host, ".")
	var best *VirtualHost
	bestScore := -1
	for i := range hosts {
		vh := &hosts[i]
		if vh.Port != 0 && vh.Port != port {
			continue
		}
		if !contains(vh.Gateways, gateway) {
			continue
		}
		for _, pattern := range vh.Hosts {
			if !HostMatches(pattern, host) {
				continue
			}
			score := 1 << 20 // an exact host beats every wildcard
			if strings.HasPrefix(pattern, "*") {
				score = len(pattern) - 1
			}
			if score > bestScore {
				best, bestScore = vh, score
			}
		}
	}
	return best, best != nil
}

func stripPort(authority string) string {
	if strings.HasPrefix(authority, "[") {
		if end := strings.IndexByte(authority, ']'); end > 0 {
			return authority[1:end]
		}
		return authority
	}
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && strings.Count(authority, ":") == 1 {
		return authority[:i]
	}
	return authority
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
