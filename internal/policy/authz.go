package policy

import (
	"net/http"
	"net/netip"
	"strings"
)

// DecisionReason says why Authorize decided as it did.
type DecisionReason string

// The reasons.
const (
	// ReasonNoAllowPolicy: no DENY policy matched and the workload has no ALLOW policy.
	ReasonNoAllowPolicy DecisionReason = "no ALLOW policy applies"
	// ReasonAllowed: an ALLOW policy matched (Decision.Policy).
	ReasonAllowed DecisionReason = "allowed by policy"
	// ReasonDenied: a DENY policy matched (Decision.Policy).
	ReasonDenied DecisionReason = "denied by policy"
	// ReasonNoAllowMatched: the workload has ALLOW policies and none matched.
	ReasonNoAllowMatched DecisionReason = "no ALLOW policy matched"
)

// Decision is the outcome of Authorize.
type Decision struct {
	Allowed bool
	Reason  DecisionReason
	// Policy is the DENY or ALLOW policy that decided, nil for the other reasons.
	Policy *AuthorizationPolicy
	// Audited is the first AUDIT policy that matched, if any; it does not change the
	// decision, the proxy only logs it.
	Audited *AuthorizationPolicy
}

// Authorize decides a request with Istio's rules, given the policies that apply to the
// workload (SelectAuthorizationPolicies): a matching DENY policy denies; otherwise, with no
// ALLOW policy the request is allowed, and with some it is allowed only if one matches.
// AUDIT policies never change the decision. It does not allocate.
//
// For opaque TCP requests (Request.TCP) the HTTP-only fields (methods, paths, hosts and their
// Not forms, request.headers conditions) follow Istio: an ALLOW or AUDIT rule that uses them
// never matches, and a DENY rule ignores them, so both err on the side of denying.
func Authorize(policies []AuthorizationPolicy, req *Request) Decision {
	var audited *AuthorizationPolicy
	for i := range policies {
		p := &policies[i]
		switch p.Action {
		case ActionDeny:
			if p.Matches(req) {
				return Decision{Allowed: false, Reason: ReasonDenied, Policy: p, Audited: audited}
			}
		case ActionAudit:
			if audited == nil && p.Matches(req) {
				audited = p
			}
		}
	}
	hasAllow := false
	for i := range policies {
		p := &policies[i]
		if p.Action != ActionAllow {
			continue
		}
		hasAllow = true
		if p.Matches(req) {
			return Decision{Allowed: true, Reason: ReasonAllowed, Policy: p, Audited: audited}
		}
	}
	if !hasAllow {
		return Decision{Allowed: true, Reason: ReasonNoAllowPolicy, Audited: audited}
	}
	return Decision{Allowed: false, Reason: ReasonNoAllowMatched, Audited: audited}
}

// Matches reports whether req matches one of the policy's rules. A policy without rules
// matches nothing.
func (p *AuthorizationPolicy) Matches(req *Request) bool {
	deny := p.Action == ActionDeny
	for i := range p.Rules {
		if p.Rules[i].matches(req, deny) {
			return true
		}
	}
	return false
}

func (r *Rule) matches(req *Request, deny bool) bool {
	if req.TCP && !deny && r.usesHTTPFields() {
		return false
	}
	if len(r.From) > 0 {
		matched := false
		for i := range r.From {
			if r.From[i].matches(req) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	if len(r.To) > 0 {
		matched := false
		for i := range r.To {
			if r.To[i].matches(req) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	for i := range r.When {
		if !r.When[i].matches(req) {
			return false
		}
	}
	return true
}

func (r *Rule) usesHTTPFields() bool {
	for i := range r.To {
		if r.To[i].usesHTTPFields() {
			return true
		}
	}
	for i := range r.When {
		if r.When[i].Key == KeyRequestHeader {
			return true
		}
	}
	return false
}

func (s *Source) matches(req *Request) bool {
	principal := req.SourcePrincipal
	if len(s.Principals) > 0 && !matchIdentity(s.Principals, principal) {
		return false
	}
	if len(s.NotPrincipals) > 0 && matchIdentity(s.NotPrincipals, principal) {
		return false
	}
	if len(s.Namespaces) > 0 || len(s.NotNamespaces) > 0 {
		namespace := PrincipalNamespace(principal)
		if len(s.Namespaces) > 0 && !matchIdentity(s.Namespaces, namespace) {
			return false
		}
		if len(s.NotNamespaces) > 0 && matchIdentity(s.NotNamespaces, namespace) {
			return false
		}
	}
	if len(s.IPBlocks) > 0 && !prefixesContain(s.IPBlocks, req.SourceIP) {
		return false
	}
	if len(s.NotIPBlocks) > 0 && prefixesContain(s.NotIPBlocks, req.SourceIP) {
		return false
	}
	if len(s.RemoteIPBlocks) > 0 && !prefixesContain(s.RemoteIPBlocks, req.SourceIP) {
		return false
	}
	if len(s.NotRemoteIPBlocks) > 0 && prefixesContain(s.NotRemoteIPBlocks, req.SourceIP) {
		return false
	}
	return true
}

func (o *Operation) usesHTTPFields() bool {
	return len(o.Methods) > 0 || len(o.NotMethods) > 0 || len(o.Paths) > 0 || len(o.NotPaths) > 0 ||
		len(o.Hosts) > 0 || len(o.NotHosts) > 0
}

func (o *Operation) matches(req *Request) bool {
	if len(o.Ports) > 0 && !containsPort(o.Ports, req.Port) {
		return false
	}
	if len(o.NotPorts) > 0 && containsPort(o.NotPorts, req.Port) {
		return false
	}
	if req.TCP {
		return true // only a DENY rule gets here: it ignores the HTTP-only fields
	}
	if len(o.Methods) > 0 && !matchPatterns(o.Methods, req.Method, false) {
		return false
	}
	if len(o.NotMethods) > 0 && matchPatterns(o.NotMethods, req.Method, false) {
		return false
	}
	if len(o.Paths) > 0 && !matchPatterns(o.Paths, req.Path, false) {
		return false
	}
	if len(o.NotPaths) > 0 && matchPatterns(o.NotPaths, req.Path, false) {
		return false
	}
	if len(o.Hosts) > 0 && !matchHosts(o.Hosts, req.Authority) {
		return false
	}
	if len(o.NotHosts) > 0 && matchHosts(o.NotHosts, req.Authority) {
		return false
	}
	return true
}

func (c *Condition) matches(req *Request) bool {
	switch c.Key {
	case KeyRequestHeader:
		if req.TCP {
			return true // only a DENY rule gets here: it ignores the HTTP-only fields
		}
		value, present := headerValue(req.Header, c.Header)
		return c.matchStrings(value, present)
	case KeySourceIP, KeyRemoteIP:
		return c.matchIP(req.SourceIP)
	case KeyDestinationIP:
		return c.matchIP(req.DestinationIP)
	case KeySourcePrincipal:
		return c.matchStrings(req.SourcePrincipal, req.SourcePrincipal != "")
	case KeySourceNamespace:
		namespace := PrincipalNamespace(req.SourcePrincipal)
		return c.matchStrings(namespace, namespace != "")
	case KeyDestinationPort:
		if len(c.Ports) > 0 && !containsPort(c.Ports, req.Port) {
			return false
		}
		return len(c.NotPorts) == 0 || !containsPort(c.NotPorts, req.Port)
	}
	return false
}

// matchStrings: an absent value matches no pattern (so fails Values and passes NotValues).
func (c *Condition) matchStrings(value string, present bool) bool {
	if len(c.Values) > 0 && (!present || !matchPatterns(c.Values, value, false)) {
		return false
	}
	if len(c.NotValues) > 0 && present && matchPatterns(c.NotValues, value, false) {
		return false
	}
	return true
}

func (c *Condition) matchIP(ip netip.Addr) bool {
	if len(c.IPs) > 0 && !prefixesContain(c.IPs, ip) {
		return false
	}
	return len(c.NotIPs) == 0 || !prefixesContain(c.NotIPs, ip)
}

// MatchPattern reports whether value matches an AuthorizationPolicy pattern: "*" matches
// anything, "prefix*" and "*suffix" a prefix or suffix, anything else exactly.
func MatchPattern(pattern, value string) bool {
	return matchPattern(pattern, value, false)
}

func matchPattern(pattern, value string, fold bool) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*"):
		suffix := pattern[1:]
		return len(value) >= len(suffix) && equal(value[len(value)-len(suffix):], suffix, fold)
	case strings.HasSuffix(pattern, "*"):
		prefix := pattern[:len(pattern)-1]
		return len(value) >= len(prefix) && equal(value[:len(prefix)], prefix, fold)
	default:
		return equal(value, pattern, fold)
	}
}

func equal(a, b string, fold bool) bool {
	if fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

func matchPatterns(patterns []string, value string, fold bool) bool {
	for _, p := range patterns {
		if matchPattern(p, value, fold) {
			return true
		}
	}
	return false
}

// matchIdentity matches principals and namespaces: a peer without identity matches nothing.
func matchIdentity(patterns []string, value string) bool {
	return value != "" && matchPatterns(patterns, value, false)
}

// matchHosts compares case-insensitively; a pattern without a port also tries the host
// without its port.
func matchHosts(patterns []string, authority string) bool {
	host := stripPort(authority)
	for _, p := range patterns {
		if matchPattern(p, authority, true) {
			return true
		}
		if host != authority && !strings.Contains(p, ":") && matchPattern(p, host, true) {
			return true
		}
	}
	return false
}

func prefixesContain(prefixes []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func containsPort(ports []uint32, port uint32) bool {
	for _, p := range ports {
		if p == port {
			return true
		}
	}
	return false
}

// headerValue returns the values of the header name (canonical), joined with "," when there
// are several.
func headerValue(h http.Header, name string) (string, bool) {
	values := h[name]
	switch len(values) {
	case 0:
		return "", false
	case 1:
		return values[0], true
	default:
		return strings.Join(values, ","), true
	}
}

// PrincipalNamespace returns the namespace of an Istio principal
// (<trust-domain>/ns/<namespace>/sa/<serviceaccount>), or "" when it has none.
func PrincipalNamespace(principal string) string {
	i := strings.Index(principal, "/ns/")
	if i < 0 {
		return ""
	}
	namespace, _, ok := strings.Cut(principal[i+len("/ns/"):], "/")
	if !ok {
		return ""
	}
	return namespace
}

// SelectAuthorizationPolicies returns the policies of all that apply to a workload of
// namespace with labels: those of its namespace and of the root namespaces (mesh-wide) whose
// selector is nil or matches the labels.
func SelectAuthorizationPolicies(all []AuthorizationPolicy, rootNamespaces []string, namespace string, labels map[string]string) []AuthorizationPolicy {
	var out []AuthorizationPolicy
	for _, p := range all {
		if (p.Namespace == namespace || contains(rootNamespaces, p.Namespace)) && SelectorMatches(p.Selector, labels) {
			out = append(out, p)
		}
	}
	return out
}

// SelectorMatches reports whether labels has every key and value of selector; a nil or
// empty selector matches every workload.
func SelectorMatches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
