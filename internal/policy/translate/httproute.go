package translate

import (
	"cmp"
	"fmt"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// parsedHTTPRoute is an HTTPRoute's routes, waiting for the other HTTPRoutes of the same
// Service to be sorted together by Gateway API precedence.
type parsedHTTPRoute struct {
	ref     ResourceRef
	created time.Time
	parents []parentKey
	routes  []rankedRoute
}

// parentKey is a Service parent: its host, and its port (0: every port).
type parentKey struct {
	host string
	port uint32
}

// rankedRoute is a route with where it came from, for the precedence tie-breakers.
type rankedRoute struct {
	route       policy.Route
	owner       *parsedHTTPRoute
	rule, match int
}

const gatewayGroup = "gateway.networking.k8s.io"

func (r *resource) httpRoute() {
	var obj gwv1.HTTPRoute
	if !r.decode(&obj) {
		return
	}
	spec := obj.Spec
	parsed := &parsedHTTPRoute{ref: r.ref, created: obj.CreationTimestamp.UTC()}

	if len(spec.ParentRefs) == 0 {
		r.unsupported("spec.parentRefs", "no parentRefs: lightmesh attaches HTTPRoutes to Service parents (GAMMA) only, so this route applies nowhere")
	}
	for i, p := range spec.ParentRefs {
		path := fmt.Sprintf("spec.parentRefs[%d]", i)
		group, kind := gatewayGroup, "Gateway"
		if p.Group != nil {
			group = string(*p.Group)
		}
		if p.Kind != nil {
			kind = string(*p.Kind)
		}
		if (group != "" && group != "core") || kind != "Service" {
			r.unsupported(path, fmt.Sprintf("parent %s %s is not supported by lightmesh, which attaches HTTPRoutes to Services (GAMMA: group \"\", kind Service); this parent is ignored", kind, p.Name))
			continue
		}
		namespace := r.ref.Namespace
		if p.Namespace != nil {
			namespace = string(*p.Namespace)
		}
		if p.SectionName != nil {
			r.unsupported(path+".sectionName", "not supported by lightmesh for Service parents; give the port instead. The route attaches to every port of the Service")
		}
		key := parentKey{host: string(p.Name) + "." + namespace + ".svc." + r.t.opts.DomainSuffix}
		if p.Port != nil {
			key.port = uint32(*p.Port)
		}
		if !slices.Contains(parsed.parents, key) {
			parsed.parents = append(parsed.parents, key)
		}
	}
	if len(spec.Hostnames) > 0 {
		r.unsupported("spec.hostnames", "ignored for Service parents: the route applies to every request to the Service, whatever its Host header")
	}
	if spec.UseDefaultGateways != "" {
		r.unsupported("spec.useDefaultGateways", "applies to Gateways only; ignored")
	}

	for i := range spec.Rules {
		routes, ok := r.httpRouteRule(fmt.Sprintf("spec.rules[%d]", i), &spec.Rules[i])
		if !ok {
			return
		}
		for j, route := range routes {
			parsed.routes = append(parsed.routes, rankedRoute{route: route, owner: parsed, rule: i, match: j})
		}
	}
	r.t.httpRoutes = append(r.t.httpRoutes, parsed)
}

func (r *resource) httpRouteRule(path string, rule *gwv1.HTTPRouteRule) ([]policy.Route, bool) {
	var base policy.Route
	if rule.Name != nil {
		base.Name = string(*rule.Name)
	}
	if rule.SessionPersistence != nil {
		r.unsupported(path+".sessionPersistence", "not supported by lightmesh; requests are balanced without session affinity")
	}

	matches := rule.Matches
	if len(matches) == 0 {
		prefix, root := gwv1.PathMatchPathPrefix, "/"
		matches = []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &prefix, Value: &root}}}
	}
	prefixOnly := len(matches) == 1 && (matches[0].Path == nil || matches[0].Path.Type == nil || *matches[0].Path.Type == gwv1.PathMatchPathPrefix)

	failClosed, ok := r.gatewayFilters(path+".filters", rule.Filters, &base, prefixOnly)
	if !ok {
		return nil, false
	}
	if base.Redirect != nil && len(rule.BackendRefs) > 0 {
		r.failf(path, "a RequestRedirect filter cannot be combined with backendRefs; remove one")
		return nil, false
	}
	if base.Destinations, ok = r.gatewayBackends(path+".backendRefs", rule.BackendRefs); !ok {
		return nil, false
	}
	if len(base.Destinations) == 0 && base.Redirect == nil || failClosed {
		// Gateway API: a rule without (valid) backends answers 500.
		base.Destinations, base.Redirect, base.Rewrite = nil, nil, nil
		base.DirectResponse = &policy.DirectResponse{Status: 500}
	}

	base.Retries = istioDefaultRetries()
	if rt := rule.Retry; rt != nil {
		retries := &policy.RetryPolicy{Attempts: 2, RetryOn: []string{"connect-failure", "refused-stream", "reset"}}
		if rt.Attempts != nil {
			if *rt.Attempts < 1 {
				r.failf(path+".retry.attempts", "%d is below 1; give 1 or more", *rt.Attempts)
				return nil, false
			}
			retries.Attempts = uint32(*rt.Attempts)
		}
		for k, code := range rt.Codes {
			if code < 400 || code > 599 {
				r.failf(fmt.Sprintf("%s.retry.codes[%d]", path, k), "%d is not a 4xx or 5xx status", code)
				return nil, false
			}
			retries.RetriableStatusCodes = append(retries.RetriableStatusCodes, uint32(code))
		}
		if len(retries.RetriableStatusCodes) > 0 {
			retries.RetryOn = append(retries.RetryOn, "retriable-status-codes")
		}
		if retries.Backoff, ok = r.gatewayDuration(path+".retry.backoff", rt.Backoff); !ok {
			return nil, false
		}
		base.Retries = retries
	}
	if t := rule.Timeouts; t != nil {
		if base.Timeout, ok = r.gatewayDuration(path+".timeouts.request", t.Request); !ok {
			return nil, false
		}
		backend, ok := r.gatewayDuration(path+".timeouts.backendRequest", t.BackendRequest)
		if !ok {
			return nil, false
		}
		if base.Timeout != 0 && backend > base.Timeout {
			r.failf(path+".timeouts.backendRequest", "%s is longer than the request timeout %s; make it shorter", backend, base.Timeout)
			return nil, false
		}
		base.Retries.PerTryTimeout = backend
	}

	var routes []policy.Route
	for j := range matches {
		matchPath := fmt.Sprintf("%s.matches[%d]", path, j)
		if len(rule.Matches) == 0 {
			matchPath = path
		}
		match, ok := r.gatewayMatch(matchPath, &matches[j])
		if !ok {
			return nil, false
		}
		route := base
		route.Match = match
		route.Source = r.source() + " " + matchPath
		routes = append(routes, route)
	}
	return routes, true
}

// gatewayFilters applies a rule's filters to route. failClosed is true when a filter that
// guards access cannot be applied: the rule then answers 500 instead.
func (r *resource) gatewayFilters(path string, filters []gwv1.HTTPRouteFilter, route *policy.Route, prefixOnly bool) (failClosed, ok bool) {
	for k, f := range filters {
		fPath := fmt.Sprintf("%s[%d]", path, k)
		missing := func(field string) (bool, bool) {
			r.failf(fPath+"."+field, "missing for a filter of type %s; give it", f.Type)
			return false, false
		}
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			if f.RequestHeaderModifier == nil {
				return missing("requestHeaderModifier")
			}
			route.RequestHeaders = gatewayHeaders(f.RequestHeaderModifier)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			if f.ResponseHeaderModifier == nil {
				return missing("responseHeaderModifier")
			}
			route.ResponseHeaders = gatewayHeaders(f.ResponseHeaderModifier)
		case gwv1.HTTPRouteFilterURLRewrite:
			if f.URLRewrite == nil {
				return missing("urlRewrite")
			}
			rw := &policy.Rewrite{}
			if f.URLRewrite.Hostname != nil {
				rw.Authority = string(*f.URLRewrite.Hostname)
			}
			if rw.Path, ok = r.gatewayPathModifier(fPath+".urlRewrite.path", f.URLRewrite.Path, prefixOnly); !ok {
				return false, false
			}
			route.Rewrite = rw
		case gwv1.HTTPRouteFilterRequestRedirect:
			if f.RequestRedirect == nil {
				return missing("requestRedirect")
			}
			rd := f.RequestRedirect
			redirect := &policy.Redirect{StatusCode: 302}
			if rd.Scheme != nil {
				redirect.Scheme = *rd.Scheme
			}
			if rd.Hostname != nil {
				redirect.Authority = string(*rd.Hostname)
			}
			if rd.Port != nil {
				redirect.Port = uint32(*rd.Port)
			}
			if rd.StatusCode != nil {
				if !slices.Contains([]int{301, 302, 303, 307, 308}, *rd.StatusCode) {
					r.failf(fPath+".requestRedirect.statusCode", "%d is not a redirect status; use 301, 302, 303, 307 or 308", *rd.StatusCode)
					return false, false
				}
				redirect.StatusCode = uint32(*rd.StatusCode)
			}
			if redirect.Path, ok = r.gatewayPathModifier(fPath+".requestRedirect.path", rd.Path, prefixOnly); !ok {
				return false, false
			}
			route.Redirect = redirect
		case gwv1.HTTPRouteFilterRequestMirror:
			r.unsupported(fPath, reasonMirror)
		case gwv1.HTTPRouteFilterCORS:
			r.unsupported(fPath, "CORS is not supported by lightmesh; no CORS headers are added and preflight requests reach the backend")
		case gwv1.HTTPRouteFilterExternalAuth, gwv1.HTTPRouteFilterExtensionRef:
			r.unsupported(fPath, fmt.Sprintf("%s filters are not supported by lightmesh; the rule answers 500 rather than skip the filter", f.Type))
			failClosed = true
		default:
			r.failf(fPath+".type", "unknown filter type %q", f.Type)
			return false, false
		}
	}
	return failClosed, true
}

func (r *resource) gatewayPathModifier(path string, m *gwv1.HTTPPathModifier, prefixOnly bool) (*policy.PathRewrite, bool) {
	if m == nil {
		return nil, true
	}
	switch m.Type {
	case gwv1.FullPathHTTPPathModifier:
		if m.ReplaceFullPath == nil {
			r.failf(path+".replaceFullPath", "missing for type ReplaceFullPath; give the new path")
			return nil, false
		}
		return &policy.PathRewrite{Kind: policy.RewriteFullPath, Value: *m.ReplaceFullPath}, true
	case gwv1.PrefixMatchHTTPPathModifier:
		if m.ReplacePrefixMatch == nil {
			r.failf(path+".replacePrefixMatch", "missing for type ReplacePrefixMatch; give the new prefix")
			return nil, false
		}
		if !prefixOnly {
			r.failf(path, "ReplacePrefixMatch needs exactly one match, of type PathPrefix; split the rule or use ReplaceFullPath")
			return nil, false
		}
		return &policy.PathRewrite{Kind: policy.RewriteSegmentPrefix, Value: *m.ReplacePrefixMatch}, true
	}
	r.failf(path+".type", "unknown path modifier %q; use ReplaceFullPath or ReplacePrefixMatch", m.Type)
	return nil, false
}

func gatewayHeaders(f *gwv1.HTTPHeaderFilter) *policy.HeaderModifier {
	out := &policy.HeaderModifier{}
	for _, h := range f.Set {
		out.Set = append(out.Set, policy.Header{Name: textproto.CanonicalMIMEHeaderKey(string(h.Name)), Value: h.Value})
	}
	for _, h := range f.Add {
		out.Add = append(out.Add, policy.Header{Name: textproto.CanonicalMIMEHeaderKey(string(h.Name)), Value: h.Value})
	}
	for _, name := range f.Remove {
		out.Remove = append(out.Remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	return out
}

func (r *resource) gatewayBackends(path string, refs []gwv1.HTTPBackendRef) ([]policy.WeightedDestination, bool) {
	var out []policy.WeightedDestination
	var total int64
	for k, b := range refs {
		bPath := fmt.Sprintf("%s[%d]", path, k)
		group, kind := "", "Service"
		if b.Group != nil {
			group = string(*b.Group)
		}
		if b.Kind != nil {
			kind = string(*b.Kind)
		}
		if (group != "" && group != "core") || kind != "Service" {
			r.unsupported(bPath, fmt.Sprintf("backend %s %s is not supported by lightmesh (Services are); its share of the traffic is left out", kind, b.Name))
			continue
		}
		namespace := r.ref.Namespace
		if b.Namespace != nil && string(*b.Namespace) != namespace {
			namespace = string(*b.Namespace)
			r.unsupported(bPath+".namespace", "ReferenceGrants are not checked by lightmesh; the backend in another namespace is used as if granted")
		}
		if b.Port == nil {
			r.failf(bPath+".port", "missing; a Service backend needs its port")
			return nil, false
		}
		weight := int32(1)
		if b.Weight != nil {
			weight = *b.Weight
		}
		if weight < 0 {
			r.failf(bPath+".weight", "negative weight %d; weights are 0 or more, relative to their sum", weight)
			return nil, false
		}
		total += int64(weight)
		dest := policy.WeightedDestination{Host: string(b.Name) + "." + namespace + ".svc." + r.t.opts.DomainSuffix, Port: uint32(*b.Port), Weight: uint32(weight)}
		for m, f := range b.Filters {
			switch {
			case f.Type == gwv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
				dest.RequestHeaders = gatewayHeaders(f.RequestHeaderModifier)
			case f.Type == gwv1.HTTPRouteFilterResponseHeaderModifier && f.ResponseHeaderModifier != nil:
				dest.ResponseHeaders = gatewayHeaders(f.ResponseHeaderModifier)
			default:
				r.unsupported(fmt.Sprintf("%s.filters[%d]", bPath, m), fmt.Sprintf("%s filters on a backendRef are not supported by lightmesh (header modifiers are); ignored", f.Type))
			}
		}
		out = append(out, dest)
	}
	if len(out) > 0 && total == 0 {
		r.failf(path, "the weights sum to 0, so no backend would get traffic; give at least one a positive weight")
		return nil, false
	}
	return out, true
}

func (r *resource) gatewayMatch(path string, m *gwv1.HTTPRouteMatch) (policy.Match, bool) {
	var out policy.Match
	kind, value := gwv1.PathMatchPathPrefix, "/"
	if m.Path != nil {
		if m.Path.Type != nil {
			kind = *m.Path.Type
		}
		if m.Path.Value != nil {
			value = *m.Path.Value
		}
	}
	switch kind {
	case gwv1.PathMatchExact, gwv1.PathMatchPathPrefix:
		if !strings.HasPrefix(value, "/") || strings.Contains(value, "//") {
			r.failf(path+".path.value", "%q must start with \"/\" and have no \"//\"", value)
			return out, false
		}
		if kind == gwv1.PathMatchExact {
			out.Path = &policy.StringMatch{Kind: policy.MatchExact, Value: value}
		} else {
			out.Path = &policy.StringMatch{Kind: policy.MatchSegmentPrefix, Value: strings.TrimSuffix(value, "/")}
			if out.Path.Value == "" {
				out.Path.Value = "/"
			}
		}
	case gwv1.PathMatchRegularExpression:
		re, err := policy.CompileRegex(value)
		if err != nil {
			r.fail(path+".path.value", err)
			return out, false
		}
		out.Path = &policy.StringMatch{Kind: policy.MatchRegex, Regex: re}
	default:
		r.failf(path+".path.type", "unknown path match type %q; use Exact, PathPrefix or RegularExpression", kind)
		return out, false
	}
	seen := map[string]bool{}
	for k, h := range m.Headers {
		name := textproto.CanonicalMIMEHeaderKey(string(h.Name))
		if seen[name] {
			continue // Gateway API: only the first match of a header name counts
		}
		seen[name] = true
		sm, ok := r.gatewayValueMatch(fmt.Sprintf("%s.headers[%d]", path, k), h.Type, h.Value)
		if !ok {
			return out, false
		}
		out.Headers = append(out.Headers, policy.HeaderMatch{Name: name, Value: sm})
	}
	seen = map[string]bool{}
	for k, q := range m.QueryParams {
		name := string(q.Name)
		if seen[name] {
			continue // only the first match of a parameter name counts
		}
		seen[name] = true
		sm, ok := r.gatewayValueMatch(fmt.Sprintf("%s.queryParams[%d]", path, k), (*gwv1.HeaderMatchType)(q.Type), q.Value)
		if !ok {
			return out, false
		}
		out.QueryParams = append(out.QueryParams, policy.QueryParamMatch{Name: name, Value: sm})
	}
	if m.Method != nil {
		out.Method = &policy.StringMatch{Kind: policy.MatchExact, Value: string(*m.Method)}
	}
	return out, true
}

func (r *resource) gatewayValueMatch(path string, kind *gwv1.HeaderMatchType, value string) (policy.StringMatch, bool) {
	if kind == nil || *kind == gwv1.HeaderMatchExact {
		return policy.StringMatch{Kind: policy.MatchExact, Value: value}, true
	}
	if *kind == gwv1.HeaderMatchRegularExpression {
		re, err := policy.CompileRegex(value)
		if err != nil {
			r.fail(path+".value", err)
			return policy.StringMatch{}, false
		}
		return policy.StringMatch{Kind: policy.MatchRegex, Regex: re}, true
	}
	r.failf(path+".type", "unknown match type %q; use Exact or RegularExpression", *kind)
	return policy.StringMatch{}, false
}

// gatewayDurationSyntax is GEP-2257's duration format.
var gatewayDurationSyntax = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// gatewayDuration reads a Gateway API duration; "0s" (no timeout) is 0.
func (r *resource) gatewayDuration(path string, d *gwv1.Duration) (policy.Duration, bool) {
	if d == nil {
		return 0, true
	}
	parsed, err := time.ParseDuration(string(*d))
	if !gatewayDurationSyntax.MatchString(string(*d)) || err != nil {
		r.failf(path, "malformed duration %q; write it like \"10s\", \"1m30s\" or \"500ms\" (GEP-2257)", *d)
		return 0, false
	}
	return policy.Duration(parsed), true
}

// httpRouteHosts merges the HTTPRoutes of each Service parent into one route table sorted by
// Gateway API precedence. A table for a port also holds the routes attached to every port;
// it comes before the Service's every-port table.
func (t *translator) httpRouteHosts() []policy.VirtualHost {
	attached := map[parentKey][]rankedRoute{}
	owners := map[parentKey][]string{}
	ports := map[string][]uint32{}
	for _, hr := range t.httpRoutes {
		for _, p := range hr.parents {
			if _, seen := attached[p]; !seen {
				ports[p.host] = append(ports[p.host], p.port)
			}
			attached[p] = append(attached[p], hr.routes...)
			owners[p] = append(owners[p], hr.ref.String())
		}
	}
	var out []policy.VirtualHost
	for _, host := range sortedKeys(ports) {
		hostPorts := ports[host]
		slices.SortFunc(hostPorts, func(a, b uint32) int {
			if (a == 0) != (b == 0) {
				return cmp.Compare(b, a) // 0 (every port) last
			}
			return cmp.Compare(a, b)
		})
		for _, port := range hostPorts {
			key := parentKey{host: host, port: port}
			routes := slices.Clone(attached[key])
			sources := slices.Clone(owners[key])
			if port != 0 {
				every := parentKey{host: host}
				routes = append(routes, attached[every]...)
				sources = append(sources, owners[every]...)
			}
			slices.SortStableFunc(routes, compareRouteRank)
			slices.Sort(sources)
			vh := policy.VirtualHost{
				Source:   strings.Join(slices.Compact(sources), ", "),
				Hosts:    []string{host},
				Port:     port,
				Gateways: []string{policy.MeshGateway},
				Routes:   []policy.Route{},
			}
			for _, rr := range routes {
				vh.Routes = append(vh.Routes, rr.route)
			}
			out = append(out, vh)
		}
	}
	return out
}

// compareRouteRank orders matches by Gateway API precedence: exact path, then (as Istio
// does for the implementation-specific regular expressions) regex, then prefix; longer
// paths first; a method match; more header matches; more query matches; then the oldest
// route, then namespace/name, then rule and match order.
func compareRouteRank(a, b rankedRoute) int {
	ak, bk := pathRank(a.route.Match.Path), pathRank(b.route.Match.Path)
	if c := cmp.Compare(bk.rank, ak.rank); c != 0 {
		return c
	}
	if c := cmp.Compare(bk.length, ak.length); c != 0 {
		return c
	}
	if am, bm := a.route.Match.Method != nil, b.route.Match.Method != nil; am != bm {
		if am {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(len(b.route.Match.Headers), len(a.route.Match.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.route.Match.QueryParams), len(a.route.Match.QueryParams)); c != 0 {
		return c
	}
	if a.owner != b.owner {
		if c := a.owner.created.Compare(b.owner.created); c != 0 {
			return c
		}
		if c := strings.Compare(a.owner.ref.Namespace+"/"+a.owner.ref.Name, b.owner.ref.Namespace+"/"+b.owner.ref.Name); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(a.rule, b.rule); c != 0 {
		return c
	}
	return cmp.Compare(a.match, b.match)
}

type rank struct{ rank, length int }

func pathRank(m *policy.StringMatch) rank {
	if m == nil {
		return rank{1, 1} // PathPrefix "/"
	}
	switch m.Kind {
	case policy.MatchExact:
		return rank{3, len(m.Value)}
	case policy.MatchRegex:
		return rank{2, len(m.Regex.String())}
	default:
		return rank{1, len(m.Value)}
	}
}
