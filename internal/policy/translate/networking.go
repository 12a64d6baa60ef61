package translate

import (
	"fmt"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// istioDefaultRetries is the retry policy Istio gives a route that sets none: 2 retries on
// connection failures, refused streams, gRPC unavailable and cancelled, and 503.
func istioDefaultRetries() *policy.RetryPolicy {
	return &policy.RetryPolicy{
		Attempts:             2,
		RetryOn:              []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"},
		RetriableStatusCodes: []uint32{503},
	}
}

// retryConditions are the retryOn values Istio accepts (Envoy's HTTP and gRPC conditions).
var retryConditions = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
	"http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

const (
	reasonIgnored   = "not supported by lightmesh; ignored"
	reasonMirror    = "traffic mirroring is not supported by lightmesh; requests are not mirrored"
	reasonMatchDrop = "not supported by lightmesh; this match is left out, so no request matches it"
)

func (r *resource) istioGateway() {
	var obj istioObject[gatewaySpec]
	if !r.decode(&obj) {
		return
	}
	gw := policy.Gateway{Namespace: r.ref.Namespace, Name: r.ref.Name, Selector: emptyToNil(obj.Spec.Selector)}
	if len(obj.Spec.Servers) == 0 {
		r.fail("spec.servers", fmt.Errorf("no servers; give at least one port and its hosts"))
		return
	}
	for i, s := range obj.Spec.Servers {
		path := fmt.Sprintf("spec.servers[%d]", i)
		if s.Port == nil || s.Port.Number == 0 || s.Port.Number > 65535 {
			r.failf(path+".port.number", "missing or out of range; give a port between 1 and 65535")
			return
		}
		if len(s.Hosts) == 0 {
			r.failf(path+".hosts", "no hosts; give at least one, such as \"*\"")
			return
		}
		protocol := strings.ToUpper(s.Port.Protocol)
		switch protocol {
		case "HTTP", "HTTP2", "GRPC", "HTTPS":
		case "":
			r.failf(path+".port.protocol", "missing; give HTTP, HTTPS, HTTP2 or GRPC")
			return
		default:
			r.unsupported(path+".port.protocol", fmt.Sprintf("protocol %s is not supported by lightmesh gateways (HTTP, HTTPS, HTTP2 and GRPC are); this server is left out", s.Port.Protocol))
			continue
		}
		r.reportSet(path, reasonIgnored, field("port.targetPort", s.Port.TargetPort), field("bind", s.Bind), field("defaultEndpoint", s.DefaultEndpoint))
		tls, keep := r.gatewayServerTLS(path, protocol, s.TLS)
		if !keep {
			continue
		}
		gw.Servers = append(gw.Servers, policy.GatewayServer{Port: s.Port.Number, PortName: s.Port.Name, Protocol: protocol, Hosts: s.Hosts, TLS: tls})
	}
	r.t.result.Model.Gateways = append(r.t.result.Model.Gateways, gw)
}

// gatewayServerTLS translates a Gateway server's tls block, as Istio reads it: an HTTPS
// server terminates TLS with the certificate of the kubernetes.io/tls Secret credentialName
// (mode SIMPLE, the default, or MUTUAL, which also verifies client certificates against the
// Secret's ca.crt or the Secret credentialName-cacert); an HTTP server may set
// httpsRedirect. keep is false when the server is left out (a mode lightmesh does not serve).
func (r *resource) gatewayServerTLS(path, protocol string, in *serverTLS) (out *policy.GatewayTLS, keep bool) {
	path += ".tls"
	if protocol != "HTTPS" {
		if in == nil {
			return nil, true
		}
		if in.Mode != "" || in.CredentialName != "" {
			r.unsupported(path, fmt.Sprintf("TLS settings on a %s server are not applied (only httpsRedirect is); use port.protocol HTTPS to terminate TLS", protocol))
		}
		if !in.HTTPSRedirect {
			return nil, true
		}
		return &policy.GatewayTLS{HTTPSRedirect: true}, true
	}
	if in == nil {
		r.unsupported(path, "an HTTPS server needs tls.mode SIMPLE or MUTUAL and tls.credentialName (a kubernetes.io/tls Secret in the gateway's namespace); this server is left out")
		return nil, false
	}
	mode := strings.ToUpper(in.Mode)
	switch mode {
	case "", policy.GatewayTLSSimple:
		mode = policy.GatewayTLSSimple
	case policy.GatewayTLSMutual:
	default:
		r.unsupported(path+".mode", fmt.Sprintf("mode %s is not supported by lightmesh gateways (SIMPLE and MUTUAL are: the gateway terminates TLS); this server is left out", in.Mode))
		return nil, false
	}
	if in.CredentialName == "" {
		r.unsupported(path+".credentialName", "missing: lightmesh gateways read their certificate only from a kubernetes.io/tls Secret named by credentialName (serverCertificate and privateKey files are not supported); this server is left out")
		return nil, false
	}
	r.reportSet(path, reasonIgnored, field("credentialNames", in.CredentialNames), field("tlsCertificates", in.TLSCertificates),
		field("serverCertificate", in.ServerCertificate), field("privateKey", in.PrivateKey), field("caCertificates", in.CACertificates),
		field("caCrl", in.CACrl), field("subjectAltNames", in.SubjectAltNames), field("verifyCertificateSpki", in.VerifyCertificateSpki),
		field("verifyCertificateHash", in.VerifyCertificateHash), field("minProtocolVersion", in.MinProtocolVersion),
		field("maxProtocolVersion", in.MaxProtocolVersion), field("cipherSuites", in.CipherSuites))
	if in.HTTPSRedirect {
		r.unsupported(path+".httpsRedirect", "only applies to HTTP servers; ignored on an HTTPS server")
	}
	return &policy.GatewayTLS{Mode: mode, CredentialName: in.CredentialName}, true
}

// gatewayRef resolves a VirtualService's gateway reference: "mesh", "name" (in the
// VirtualService's namespace), "namespace/name", or the legacy "name.namespace.svc...".
func (r *resource) gatewayRef(ref string) string {
	switch {
	case ref == policy.MeshGateway || strings.Contains(ref, "/"):
		return ref
	case strings.Contains(ref, "."):
		name, rest, _ := strings.Cut(ref, ".")
		namespace, _, _ := strings.Cut(rest, ".")
		return namespace + "/" + name
	default:
		return r.ref.Namespace + "/" + ref
	}
}

func (r *resource) virtualService() {
	var obj istioObject[virtualServiceSpec]
	if !r.decode(&obj) {
		return
	}
	spec := obj.Spec
	vh := policy.VirtualHost{Source: r.source(), Routes: []policy.Route{}}

	if len(spec.Gateways) == 0 {
		vh.Gateways = []string{policy.MeshGateway}
	}
	for _, g := range spec.Gateways {
		vh.Gateways = append(vh.Gateways, r.gatewayRef(g))
	}
	if len(spec.Hosts) == 0 {
		r.fail("spec.hosts", fmt.Errorf("no hosts; name the services or domains this VirtualService routes"))
		return
	}
	for i, h := range spec.Hosts {
		path := fmt.Sprintf("spec.hosts[%d]", i)
		host, ok := r.resolveHost(path, h)
		if !ok {
			return
		}
		if host == "*" && slices.Contains(vh.Gateways, policy.MeshGateway) {
			r.failf(path, "\"*\" cannot be bound to the mesh (it would capture every service); name the services, or list only gateways in spec.gateways")
			return
		}
		vh.Hosts = append(vh.Hosts, host)
	}
	if set(spec.TLS) {
		r.unsupported("spec.tls", "TLS routes are not supported by lightmesh; only spec.http is translated")
	}
	if set(spec.TCP) {
		r.unsupported("spec.tcp", "TCP routes are not supported by lightmesh; only spec.http is translated")
	}
	if set(spec.ExportTo) {
		r.unsupported("spec.exportTo", "not supported by lightmesh; the VirtualService is visible in every namespace")
	}
	for i := range spec.HTTP {
		routes, ok := r.httpRule(fmt.Sprintf("spec.http[%d]", i), &spec.HTTP[i])
		if !ok {
			return
		}
		vh.Routes = append(vh.Routes, routes...)
	}
	r.t.virtualServices = append(r.t.virtualServices, timedVirtualHost{created: obj.Metadata.CreationTimestamp.Time, key: r.key(), host: vh})
}

// httpRule translates one VirtualService http rule into one route per match.
func (r *resource) httpRule(path string, rule *httpRoute) ([]policy.Route, bool) {
	if set(rule.Delegate) {
		r.unsupported(path+".delegate", "delegation is not supported by lightmesh; this rule is left out")
		return nil, true
	}
	r.reportSet(path, reasonMirror, field("mirror", rule.Mirror), field("mirrors", rule.Mirrors), field("mirrorPercent", rule.MirrorPercent), field("mirrorPercentage", rule.MirrorPercentage))
	if set(rule.CorsPolicy) {
		r.unsupported(path+".corsPolicy", "CORS is not supported by lightmesh; no CORS headers are added and preflight requests reach the application")
	}

	actions := 0
	for _, present := range []bool{len(rule.Route) > 0, rule.Redirect != nil, rule.DirectResponse != nil} {
		if present {
			actions++
		}
	}
	if actions != 1 {
		r.failf(path, "give exactly one of route, redirect and directResponse")
		return nil, false
	}
	if rule.Rewrite != nil && rule.Redirect != nil {
		r.failf(path+".rewrite", "rewrite cannot be combined with redirect; remove one")
		return nil, false
	}

	base := policy.Route{Name: rule.Name}
	var ok bool
	if len(rule.Route) > 0 {
		if base.Destinations, ok = r.istioDestinations(path+".route", rule.Route); !ok {
			return nil, false
		}
	}
	if rule.Redirect != nil {
		rd := rule.Redirect
		if set(rd.DerivePort) {
			r.unsupported(path+".redirect.derivePort", "not supported by lightmesh; the redirect keeps the request's port unless redirect.port is set")
		}
		code := rd.RedirectCode
		if code == 0 {
			code = 301
		}
		if !slices.Contains([]uint32{301, 302, 303, 307, 308}, code) {
			r.failf(path+".redirect.redirectCode", "%d is not a redirect status; use 301, 302, 303, 307 or 308", code)
			return nil, false
		}
		base.Redirect = &policy.Redirect{Scheme: rd.Scheme, Authority: rd.Authority, Port: rd.Port, StatusCode: code}
		if rd.URI != "" {
			base.Redirect.Path = &policy.PathRewrite{Kind: policy.RewriteFullPath, Value: rd.URI}
		}
	}
	if dr := rule.DirectResponse; dr != nil {
		if dr.Status < 200 || dr.Status > 599 {
			r.failf(path+".directResponse.status", "%d is not an HTTP status; give one between 200 and 599", dr.Status)
			return nil, false
		}
		base.DirectResponse = &policy.DirectResponse{Status: dr.Status}
		if dr.Body != nil {
			if dr.Body.String != nil {
				base.DirectResponse.Body = *dr.Body.String
			} else {
				base.DirectResponse.Body = string(dr.Body.Bytes)
			}
		}
	}
	if base.Timeout, ok = r.parseDuration(path+".timeout", rule.Timeout); !ok {
		return nil, false
	}
	if base.Retries, ok = r.istioRetries(path+".retries", rule.Retries); !ok {
		return nil, false
	}
	if rw := rule.Rewrite; rw != nil {
		if set(rw.URIRegexRewrite) {
			r.unsupported(path+".rewrite.uriRegexRewrite", "not supported by lightmesh; the path is forwarded without this rewrite")
		}
		if rw.URI != "" || rw.Authority != "" {
			base.Rewrite = &policy.Rewrite{Authority: rw.Authority}
			if rw.URI != "" {
				base.Rewrite.Path = &policy.PathRewrite{Kind: policy.RewritePrefix, Value: rw.URI}
			}
		}
	}
	if base.Fault, ok = r.istioFault(path+".fault", rule.Fault); !ok {
		return nil, false
	}
	if rule.Headers != nil {
		base.RequestHeaders = r.istioHeaderOps(rule.Headers.Request)
		base.ResponseHeaders = r.istioHeaderOps(rule.Headers.Response)
	}

	if len(rule.Match) == 0 {
		base.Source = r.source() + " " + path
		return []policy.Route{base}, true
	}
	var routes []policy.Route
	for j := range rule.Match {
		matchPath := fmt.Sprintf("%s.match[%d]", path, j)
		match, keep, ok := r.istioMatch(matchPath, &rule.Match[j])
		if !ok {
			return nil, false
		}
		if !keep {
			continue
		}
		route := base
		route.Match = match
		route.Source = r.source() + " " + matchPath
		if name := rule.Match[j].Name; name != "" {
			route.Name = strings.TrimPrefix(rule.Name+"."+name, ".")
		}
		routes = append(routes, route)
	}
	return routes, true
}

// istioMatch translates one HTTPMatchRequest. keep is false when the match uses a condition
// lightmesh cannot evaluate: it is left out rather than widened.
func (r *resource) istioMatch(path string, m *httpMatchRequest) (match policy.Match, keep, ok bool) {
	keep = true
	if r.reportSet(path, reasonMatchDrop, field("sourceLabels", m.SourceLabels), field("sourceNamespace", m.SourceNamespace), field("gateways", m.Gateways)) {
		keep = false
	}
	if set(m.StatPrefix) {
		r.unsupported(path+".statPrefix", reasonIgnored)
	}
	var err error
	if match.Path, err = istioString(m.URI, m.IgnoreURICase); err != nil {
		r.fail(path+".uri", err)
		return match, keep, false
	}
	if match.Path != nil && match.Path.Kind != policy.MatchRegex && !strings.HasPrefix(match.Path.Value, "/") {
		r.failf(path+".uri", "%q does not start with \"/\"; paths always do", match.Path.Value)
		return match, keep, false
	}
	if match.Scheme, err = istioString(m.Scheme, false); err != nil {
		r.fail(path+".scheme", err)
		return match, keep, false
	}
	if match.Method, err = istioString(m.Method, false); err != nil {
		r.fail(path+".method", err)
		return match, keep, false
	}
	if match.Authority, err = istioString(m.Authority, false); err != nil {
		r.fail(path+".authority", err)
		return match, keep, false
	}
	match.Port = m.Port
	for _, group := range []struct {
		field  string
		values map[string]istioStringMatch
		invert bool
	}{{"headers", m.Headers, false}, {"withoutHeaders", m.WithoutHeaders, true}} {
		for _, name := range sortedKeys(group.values) {
			fieldPath := path + "." + group.field + "." + name
			switch strings.ToLower(name) {
			case "uri", "scheme", "method", "authority":
				r.unsupported(fieldPath, "Istio ignores this header name in matches; match it with the field of the same name")
				continue
			}
			value := group.values[name]
			sm, err := istioString(&value, false)
			if err != nil {
				r.fail(fieldPath, err)
				return match, keep, false
			}
			if sm == nil {
				sm = &policy.StringMatch{Kind: policy.MatchPresent}
			}
			match.Headers = append(match.Headers, policy.HeaderMatch{Name: textproto.CanonicalMIMEHeaderKey(name), Value: *sm, Invert: group.invert})
		}
	}
	for _, name := range sortedKeys(m.QueryParams) {
		value := m.QueryParams[name]
		sm, err := istioString(&value, false)
		if err != nil {
			r.fail(path+".queryParams."+name, err)
			return match, keep, false
		}
		if sm == nil {
			sm = &policy.StringMatch{Kind: policy.MatchPresent}
		}
		match.QueryParams = append(match.QueryParams, policy.QueryParamMatch{Name: name, Value: *sm})
	}
	return match, keep, true
}

// istioString translates an Istio StringMatch: nil when none of exact, prefix and regex
// is set.
func istioString(m *istioStringMatch, ignoreCase bool) (*policy.StringMatch, error) {
	if m == nil {
		return nil, nil
	}
	count := 0
	for _, p := range []*string{m.Exact, m.Prefix, m.Regex} {
		if p != nil {
			count++
		}
	}
	switch {
	case count > 1:
		return nil, fmt.Errorf("give only one of exact, prefix and regex")
	case m.Exact != nil:
		return &policy.StringMatch{Kind: policy.MatchExact, Value: *m.Exact, IgnoreCase: ignoreCase}, nil
	case m.Prefix != nil:
		return &policy.StringMatch{Kind: policy.MatchPrefix, Value: *m.Prefix, IgnoreCase: ignoreCase}, nil
	case m.Regex != nil:
		re, err := policy.CompileRegex(*m.Regex)
		if err != nil {
			return nil, err
		}
		return &policy.StringMatch{Kind: policy.MatchRegex, Regex: re}, nil
	}
	return nil, nil
}

func (r *resource) istioDestinations(path string, in []httpRouteDestination) ([]policy.WeightedDestination, bool) {
	var out []policy.WeightedDestination
	var total int64
	for i, d := range in {
		dPath := fmt.Sprintf("%s[%d]", path, i)
		if d.Destination == nil || d.Destination.Host == "" {
			r.failf(dPath+".destination.host", "missing; name the destination service")
			return nil, false
		}
		host, ok := r.resolveHost(dPath+".destination.host", d.Destination.Host)
		if !ok {
			return nil, false
		}
		if strings.Contains(host, "*") {
			r.failf(dPath+".destination.host", "%q is a wildcard; a destination is one service", d.Destination.Host)
			return nil, false
		}
		weight := int32(0)
		if d.Weight != nil {
			weight = *d.Weight
		}
		if weight < 0 {
			r.failf(dPath+".weight", "negative weight %d; weights are 0 or more, relative to their sum", weight)
			return nil, false
		}
		if len(in) == 1 && weight == 0 {
			weight = 100 // a single destination takes all traffic
		}
		total += int64(weight)
		wd := policy.WeightedDestination{Host: host, Subset: d.Destination.Subset, Weight: uint32(weight)}
		if d.Destination.Port != nil {
			wd.Port = d.Destination.Port.Number
		}
		if d.Headers != nil {
			wd.RequestHeaders = r.istioHeaderOps(d.Headers.Request)
			wd.ResponseHeaders = r.istioHeaderOps(d.Headers.Response)
		}
		out = append(out, wd)
	}
	if total == 0 {
		r.failf(path, "the weights sum to 0, so no destination would get traffic; give at least one a positive weight")
		return nil, false
	}
	return out, true
}

func (r *resource) istioRetries(path string, in *httpRetry) (*policy.RetryPolicy, bool) {
	if in == nil {
		return istioDefaultRetries(), true
	}
	if set(in.RetryRemoteLocalities) {
		r.unsupported(path+".retryRemoteLocalities", reasonIgnored)
	}
	if set(in.RetryIgnorePreviousHosts) {
		r.unsupported(path+".retryIgnorePreviousHosts", "not supported by lightmesh; retries may go to any endpoint")
	}
	if in.Attempts < 0 {
		r.failf(path+".attempts", "negative attempts %d; give 0 to disable retries", in.Attempts)
		return nil, false
	}
	if in.Attempts == 0 {
		return nil, true // Istio: attempts 0 disables retries
	}
	out := istioDefaultRetries()
	out.Attempts = uint32(in.Attempts)
	if in.RetryOn != "" {
		out.RetryOn, out.RetriableStatusCodes = nil, nil
		for _, cond := range strings.Split(in.RetryOn, ",") {
			cond = strings.TrimSpace(cond)
			if code, err := strconv.ParseUint(cond, 10, 32); err == nil {
				if code < 100 || code > 599 {
					r.failf(path+".retryOn", "%d is not an HTTP status", code)
					return nil, false
				}
				out.RetriableStatusCodes = append(out.RetriableStatusCodes, uint32(code))
				continue
			}
			if !slices.Contains(retryConditions, cond) {
				r.failf(path+".retryOn", "unknown retry condition %q; use %s, or HTTP status codes", cond, strings.Join(retryConditions, ", "))
				return nil, false
			}
			out.RetryOn = append(out.RetryOn, cond)
		}
		if len(out.RetriableStatusCodes) > 0 && !slices.Contains(out.RetryOn, "retriable-status-codes") {
			out.RetryOn = append(out.RetryOn, "retriable-status-codes")
		}
	}
	var ok bool
	if out.PerTryTimeout, ok = r.parseDuration(path+".perTryTimeout", in.PerTryTimeout); !ok {
		return nil, false
	}
	if out.Backoff, ok = r.parseDuration(path+".backoff", in.Backoff); !ok {
		return nil, false
	}
	return out, true
}

func (r *resource) istioFault(path string, in *httpFaultInjection) (*policy.Fault, bool) {
	if in == nil || (in.Delay == nil && in.Abort == nil) {
		return nil, true
	}
	out := &policy.Fault{}
	if d := in.Delay; d != nil {
		if set(d.ExponentialDelay) {
			r.unsupported(path+".delay.exponentialDelay", "not supported by lightmesh (nor by Istio); no delay is injected")
		}
		if d.FixedDelay != nil {
			delay, ok := r.parseDuration(path+".delay.fixedDelay", d.FixedDelay)
			if !ok {
				return nil, false
			}
			percent, ok := r.percent(path+".delay", d.Percentage, d.Percent)
			if !ok {
				return nil, false
			}
			out.Delay = &policy.FaultDelay{Delay: delay, Percent: percent}
		}
	}
	if a := in.Abort; a != nil {
		if set(a.GRPCStatus) {
			r.unsupported(path+".abort.grpcStatus", "gRPC aborts are not supported by lightmesh; use httpStatus")
		}
		if set(a.HTTP2Error) {
			r.unsupported(path+".abort.http2Error", "not supported by lightmesh; use httpStatus")
		}
		if a.HTTPStatus != nil {
			if *a.HTTPStatus < 200 || *a.HTTPStatus > 599 {
				r.failf(path+".abort.httpStatus", "%d is not an HTTP status; give one between 200 and 599", *a.HTTPStatus)
				return nil, false
			}
			percent, ok := r.percent(path+".abort", a.Percentage, nil)
			if !ok {
				return nil, false
			}
			out.Abort = &policy.FaultAbort{Status: uint32(*a.HTTPStatus), Percent: percent}
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil, true
	}
	return out, true
}

// percent reads a fault percentage; unset means 0 % (nothing injected), as in Istio.
func (r *resource) percent(path string, percentage *istioPercent, legacy *int32) (float64, bool) {
	var p float64
	switch {
	case percentage != nil:
		p = percentage.Value
		path += ".percentage.value"
	case legacy != nil:
		p = float64(*legacy)
		path += ".percent"
	}
	if p < 0 || p > 100 {
		r.failf(path, "%v is not a percentage; give a value between 0 and 100", p)
		return 0, false
	}
	return p, true
}

func (r *resource) istioHeaderOps(in *headerOperations) *policy.HeaderModifier {
	if in == nil || len(in.Set)+len(in.Add)+len(in.Remove) == 0 {
		return nil
	}
	out := &policy.HeaderModifier{}
	for _, name := range sortedKeys(in.Set) {
		out.Set = append(out.Set, policy.Header{Name: textproto.CanonicalMIMEHeaderKey(name), Value: in.Set[name]})
	}
	for _, name := range sortedKeys(in.Add) {
		out.Add = append(out.Add, policy.Header{Name: textproto.CanonicalMIMEHeaderKey(name), Value: in.Add[name]})
	}
	for _, name := range in.Remove {
		out.Remove = append(out.Remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	return out
}

func (r *resource) destinationRule() {
	var obj istioObject[destinationRuleSpec]
	if !r.decode(&obj) {
		return
	}
	spec := obj.Spec
	if spec.Host == "" {
		r.fail("spec.host", fmt.Errorf("missing; name the destination service"))
		return
	}
	host, ok := r.resolveHost("spec.host", spec.Host)
	if !ok {
		return
	}
	if set(spec.ExportTo) {
		r.unsupported("spec.exportTo", "not supported by lightmesh; the DestinationRule applies in every namespace")
	}
	if set(spec.WorkloadSelector) {
		r.unsupported("spec.workloadSelector", "not supported by lightmesh; the DestinationRule applies to every client workload")
	}
	dest := policy.Destination{Source: r.source(), Host: host}
	base, ok := r.trafficPolicy("spec.trafficPolicy", spec.TrafficPolicy, policy.TrafficPolicy{})
	if !ok {
		return
	}
	dest.TrafficPolicy = base
	names := map[string]bool{}
	for i, s := range spec.Subsets {
		path := fmt.Sprintf("spec.subsets[%d]", i)
		if s.Name == "" {
			r.failf(path+".name", "missing; name the subset")
			return
		}
		if names[s.Name] {
			r.failf(path+".name", "subset %q is defined twice; give each subset its own name", s.Name)
			return
		}
		names[s.Name] = true
		merged, ok := r.trafficPolicy(path+".trafficPolicy", s.TrafficPolicy, base)
		if !ok {
			return
		}
		dest.Subsets = append(dest.Subsets, policy.Subset{Name: s.Name, Labels: emptyToNil(s.Labels), TrafficPolicy: merged})
	}
	r.t.destinations = append(r.t.destinations, timedDestination{created: obj.Metadata.CreationTimestamp.Time, key: r.key(), dest: dest})
}

// trafficPolicy translates in over parent: each part in sets replaces parent's (Istio's
// subset merge).
func (r *resource) trafficPolicy(path string, in *trafficPolicy, parent policy.TrafficPolicy) (policy.TrafficPolicy, bool) {
	out := parent
	if in == nil {
		return out, true
	}
	r.reportSet(path, reasonIgnored, field("portLevelSettings", in.PortLevelSettings), field("tunnel", in.Tunnel),
		field("proxyProtocol", in.ProxyProtocol), field("retryBudget", in.RetryBudget))
	if lb := in.LoadBalancer; lb != nil {
		r.reportSet(path+".loadBalancer", "not supported by lightmesh; the proxy's load balancer is used",
			field("consistentHash", lb.ConsistentHash), field("localityLbSetting", lb.LocalityLbSetting),
			field("warmupDurationSecs", lb.WarmupDurationSecs), field("warmup", lb.Warmup))
		switch lb.Simple {
		case "", "UNSPECIFIED":
			out.LoadBalancer = policy.LoadBalancerDefault
		case "ROUND_ROBIN":
			out.LoadBalancer = policy.LoadBalancerRoundRobin
		case "LEAST_REQUEST", "LEAST_CONN":
			out.LoadBalancer = policy.LoadBalancerLeastRequest
		case "RANDOM":
			out.LoadBalancer = policy.LoadBalancerRandom
		case "PASSTHROUGH":
			out.LoadBalancer = policy.LoadBalancerPassthrough
		default:
			r.failf(path+".loadBalancer.simple", "unknown load balancer %q; use ROUND_ROBIN, LEAST_REQUEST, RANDOM or PASSTHROUGH", lb.Simple)
			return out, false
		}
	}
	if cp := in.ConnectionPool; cp != nil {
		pool, ok := r.connectionPool(path+".connectionPool", cp)
		if !ok {
			return out, false
		}
		out.ConnectionPool = pool
	}
	if od := in.OutlierDetection; od != nil {
		detection, ok := r.outlierDetection(path+".outlierDetection", od)
		if !ok {
			return out, false
		}
		out.OutlierDetection = detection
	}
	if tls := in.TLS; tls != nil {
		if tls.Mode != "ISTIO_MUTUAL" {
			r.unsupported(path+".tls.mode", fmt.Sprintf("mode %q is not supported by lightmesh; meshed endpoints are always reached over lightmesh's mTLS, as with ISTIO_MUTUAL", tls.Mode))
		}
		r.reportSet(path+".tls", "not supported by lightmesh; the workload's identity decides the server name and certificates",
			field("clientCertificate", tls.ClientCertificate), field("privateKey", tls.PrivateKey), field("caCertificates", tls.CACertificates),
			field("credentialName", tls.CredentialName), field("subjectAltNames", tls.SubjectAltNames), field("sni", tls.SNI),
			field("insecureSkipVerify", tls.InsecureSkipVerify), field("caCrl", tls.CACrl))
	}
	return out, true
}

func (r *resource) connectionPool(path string, in *connectionPoolSettings) (*policy.ConnectionPool, bool) {
	out := &policy.ConnectionPool{}
	var ok bool
	if tcp := in.TCP; tcp != nil {
		r.reportSet(path+".tcp", reasonIgnored, field("tcpKeepalive", tcp.TCPKeepalive),
			field("maxConnectionDuration", tcp.MaxConnectionDuration), field("idleTimeout", tcp.IdleTimeout))
		if out.MaxConnections, ok = r.count(path+".tcp.maxConnections", tcp.MaxConnections); !ok {
			return nil, false
		}
		if out.ConnectTimeout, ok = r.parseDuration(path+".tcp.connectTimeout", tcp.ConnectTimeout); !ok {
			return nil, false
		}
	}
	if h := in.HTTP; h != nil {
		r.reportSet(path+".http", "not supported by lightmesh; proxies always talk HTTP/2 to each other",
			field("h2UpgradePolicy", h.H2UpgradePolicy), field("useClientProtocol", h.UseClientProtocol),
			field("maxConcurrentStreams", h.MaxConcurrentStreams))
		for _, f := range []struct {
			field string
			in    *int32
			out   *uint32
		}{
			{"http1MaxPendingRequests", h.HTTP1MaxPendingRequests, &out.HTTP1MaxPendingRequests},
			{"http2MaxRequests", h.HTTP2MaxRequests, &out.HTTP2MaxRequests},
			{"maxRequestsPerConnection", h.MaxRequestsPerConnection, &out.MaxRequestsPerConnection},
			{"maxRetries", h.MaxRetries, &out.MaxRetries},
		} {
			if *f.out, ok = r.count(path+".http."+f.field, f.in); !ok {
				return nil, false
			}
		}
		if out.IdleTimeout, ok = r.parseDuration(path+".http.idleTimeout", h.IdleTimeout); !ok {
			return nil, false
		}
	}
	return out, true
}

// count reads a limit that must not be negative; unset is 0 (no limit).
func (r *resource) count(path string, v *int32) (uint32, bool) {
	if v == nil {
		return 0, true
	}
	if *v < 0 {
		r.failf(path, "negative value %d; give 0 or more", *v)
		return 0, false
	}
	return uint32(*v), true
}

// outlierDetection applies Envoy's defaults, as Istio does: 5 consecutive 5xx, interval
// 10s, base ejection time 30s, at most 10 % ejected.
func (r *resource) outlierDetection(path string, in *outlierDetection) (*policy.OutlierDetection, bool) {
	r.reportSet(path, "not supported by lightmesh; connection failures count as 503 answers",
		field("splitExternalLocalOriginErrors", in.SplitExternalLocalOriginErrors),
		field("consecutiveLocalOriginFailures", in.ConsecutiveLocalOriginFailures))
	r.reportSet(path, "deprecated by Istio and not supported by lightmesh; use consecutive5xxErrors or consecutiveGatewayErrors",
		field("consecutiveErrors", in.ConsecutiveErrors))
	out := &policy.OutlierDetection{
		Consecutive5xxErrors: 5,
		Interval:             policy.Duration(10 * time.Second),
		BaseEjectionTime:     policy.Duration(30 * time.Second),
		MaxEjectionPercent:   10,
	}
	for _, f := range []struct {
		field string
		in    *int64
		out   *uint32
	}{{"consecutive5xxErrors", in.Consecutive5xxErrors, &out.Consecutive5xxErrors}, {"consecutiveGatewayErrors", in.ConsecutiveGatewayErrors, &out.ConsecutiveGatewayErrors}} {
		if f.in == nil {
			continue
		}
		if *f.in < 0 || *f.in > 1<<32-1 {
			r.failf(path+"."+f.field, "%d is out of range; give 0 (disabled) or more", *f.in)
			return nil, false
		}
		*f.out = uint32(*f.in)
	}
	for _, f := range []struct {
		field string
		in    *int32
		out   *uint32
	}{{"maxEjectionPercent", in.MaxEjectionPercent, &out.MaxEjectionPercent}, {"minHealthPercent", in.MinHealthPercent, &out.MinHealthPercent}} {
		if f.in == nil {
			continue
		}
		if *f.in < 0 || *f.in > 100 {
			r.failf(path+"."+f.field, "%d is not a percentage; give a value between 0 and 100", *f.in)
			return nil, false
		}
		*f.out = uint32(*f.in)
	}
	for _, f := range []struct {
		field string
		in    *string
		out   *policy.Duration
	}{{"interval", in.Interval, &out.Interval}, {"baseEjectionTime", in.BaseEjectionTime, &out.BaseEjectionTime}} {
		if f.in == nil {
			continue
		}
		d, ok := r.parseDuration(path+"."+f.field, f.in)
		if !ok {
			return nil, false
		}
		if d < policy.Duration(time.Millisecond) {
			r.failf(path+"."+f.field, "%q is shorter than 1ms; give a longer duration", *f.in)
			return nil, false
		}
		*f.out = d
	}
	return out, true
}
