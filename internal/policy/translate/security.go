package translate

import (
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/lightmesh/lightmesh/internal/policy"
)

func (r *resource) peerAuthentication() {
	var obj istioObject[peerAuthenticationSpec]
	if !r.decode(&obj) {
		return
	}
	spec := obj.Spec
	pa := policy.PeerAuthentication{
		Namespace:         r.ref.Namespace,
		Name:              r.ref.Name,
		CreationTimestamp: obj.Metadata.CreationTimestamp.UTC(),
		Mode:              policy.ModeUnset,
	}
	if spec.Selector != nil {
		pa.Selector = emptyToNil(spec.Selector.MatchLabels)
	}
	if spec.MTLS != nil {
		mode, ok := r.mtlsMode("spec.mtls.mode", spec.MTLS.Mode)
		if !ok {
			return
		}
		pa.Mode = mode
	}
	if len(spec.PortLevelMTLS) > 0 && pa.Selector == nil {
		r.failf("spec.portLevelMtls", "needs spec.selector: port-level modes apply only to the workloads a selector picks")
		return
	}
	for _, key := range sortedKeys(spec.PortLevelMTLS) {
		path := "spec.portLevelMtls." + key
		port, err := strconv.ParseUint(key, 10, 16)
		if err != nil || port == 0 {
			r.failf(path, "%q is not a port number; use the workload's container port, 1 to 65535", key)
			return
		}
		mode, ok := r.mtlsMode(path+".mode", spec.PortLevelMTLS[key].Mode)
		if !ok {
			return
		}
		if pa.PortModes == nil {
			pa.PortModes = map[uint32]policy.PeerAuthnMode{}
		}
		pa.PortModes[uint32(port)] = mode
	}
	r.t.result.Model.PeerAuthentications = append(r.t.result.Model.PeerAuthentications, pa)
}

func (r *resource) mtlsMode(path, mode string) (policy.PeerAuthnMode, bool) {
	switch mode {
	case "", "UNSET":
		return policy.ModeUnset, true
	case "DISABLE":
		return policy.ModeDisable, true
	case "PERMISSIVE":
		return policy.ModePermissive, true
	case "STRICT":
		return policy.ModeStrict, true
	}
	r.failf(path, "unknown mode %q; use STRICT, PERMISSIVE, DISABLE or UNSET (upper case)", mode)
	return "", false
}

func (r *resource) authorizationPolicy() {
	var obj istioObject[authorizationPolicySpec]
	if !r.decode(&obj) {
		return
	}
	spec := obj.Spec
	ap := policy.AuthorizationPolicy{Namespace: r.ref.Namespace, Name: r.ref.Name, Rules: []policy.Rule{}}
	if spec.Selector != nil {
		ap.Selector = emptyToNil(spec.Selector.MatchLabels)
	}
	switch spec.Action {
	case "", "ALLOW":
		ap.Action = policy.ActionAllow
	case "DENY":
		ap.Action = policy.ActionDeny
	case "AUDIT":
		ap.Action = policy.ActionAudit
	case "CUSTOM":
		ap.Action = policy.ActionDeny
		r.unsupported("spec.action", "CUSTOM (external authorization) is not supported by lightmesh; the policy is enforced as DENY, so the requests it would send to the provider are denied")
	default:
		r.failf("spec.action", "unknown action %q; use ALLOW, DENY or AUDIT", spec.Action)
		return
	}
	if set(spec.Provider) {
		if spec.Action != "CUSTOM" {
			r.failf("spec.provider", "only a CUSTOM policy has a provider; remove it or set action: CUSTOM")
			return
		}
		r.unsupported("spec.provider", "external authorization providers are not supported by lightmesh; see spec.action")
	}
	r.reportSet("spec", "not supported by lightmesh; the policy applies to the workloads its selector picks (every workload of the namespace without one)",
		field("targetRef", spec.TargetRef), field("targetRefs", spec.TargetRefs))

	deny := ap.Action == policy.ActionDeny
	for i := range spec.Rules {
		rule, keep, ok := r.authzRule(fmt.Sprintf("spec.rules[%d]", i), &spec.Rules[i], deny)
		if !ok {
			return
		}
		if keep {
			ap.Rules = append(ap.Rules, rule)
		}
	}
	r.t.result.Model.AuthorizationPolicies = append(r.t.result.Model.AuthorizationPolicies, ap)
}

// ruleState carries what authzRule needs to fail closed on a field it cannot evaluate: in
// a DENY policy the field is dropped (the rule denies more), in ALLOW and AUDIT policies the
// whole rule is (it allows nothing), as Istio does with HTTP-only fields on TCP traffic.
type ruleState struct {
	r    *resource
	deny bool
	keep bool
}

func (s *ruleState) cannot(path, what string) {
	if s.deny {
		s.r.unsupported(path, what+" is not supported by lightmesh; this DENY rule is enforced without it, so it denies more requests")
		return
	}
	s.r.unsupported(path, what+" is not supported by lightmesh; this rule is left out, so it allows nothing")
	s.keep = false
}

func (r *resource) authzRule(path string, in *authzRule, deny bool) (out policy.Rule, keep, ok bool) {
	state := &ruleState{r: r, deny: deny, keep: true}
	for j, from := range in.From {
		fromPath := fmt.Sprintf("%s.from[%d].source", path, j)
		if from.Source == nil {
			r.failf(fromPath, "missing; give the source's principals, namespaces or ipBlocks")
			return out, false, false
		}
		source, ok := r.authzSource(fromPath, from.Source, state)
		if !ok {
			return out, false, false
		}
		out.From = append(out.From, source)
	}
	for j, to := range in.To {
		toPath := fmt.Sprintf("%s.to[%d].operation", path, j)
		if to.Operation == nil {
			r.failf(toPath, "missing; give the operation's methods, paths, ports or hosts")
			return out, false, false
		}
		op, ok := r.authzOperation(toPath, to.Operation, state)
		if !ok {
			return out, false, false
		}
		out.To = append(out.To, op)
	}
	for j, cond := range in.When {
		condPath := fmt.Sprintf("%s.when[%d]", path, j)
		c, use, ok := r.authzCondition(condPath, cond, state)
		if !ok {
			return out, false, false
		}
		if use {
			out.When = append(out.When, c)
		}
	}
	return out, state.keep, true
}

func (r *resource) authzSource(path string, in *authzSource, state *ruleState) (policy.Source, bool) {
	var out policy.Source
	var ok bool
	if out.Principals, ok = r.patterns(path+".principals", principals(in.Principals)); !ok {
		return out, false
	}
	if out.NotPrincipals, ok = r.patterns(path+".notPrincipals", principals(in.NotPrincipals)); !ok {
		return out, false
	}
	if out.Namespaces, ok = r.patterns(path+".namespaces", in.Namespaces); !ok {
		return out, false
	}
	if out.NotNamespaces, ok = r.patterns(path+".notNamespaces", in.NotNamespaces); !ok {
		return out, false
	}
	for _, f := range []struct {
		field string
		in    []string
		out   *[]netip.Prefix
	}{
		{"ipBlocks", in.IPBlocks, &out.IPBlocks},
		{"notIpBlocks", in.NotIPBlocks, &out.NotIPBlocks},
		{"remoteIpBlocks", in.RemoteIPBlocks, &out.RemoteIPBlocks},
		{"notRemoteIpBlocks", in.NotRemoteIPBlocks, &out.NotRemoteIPBlocks},
	} {
		if *f.out, ok = r.prefixes(path+"."+f.field, f.in); !ok {
			return out, false
		}
	}
	for _, f := range []rawField{
		field("requestPrincipals", in.RequestPrincipals), field("notRequestPrincipals", in.NotRequestPrincipals),
	} {
		if set(f.raw) {
			state.cannot(path+"."+f.name, "JWT request authentication")
		}
	}
	for _, f := range []rawField{field("serviceAccounts", in.ServiceAccounts), field("notServiceAccounts", in.NotServiceAccounts)} {
		if set(f.raw) {
			state.cannot(path+"."+f.name, "matching service accounts (write them as principals)")
		}
	}
	return out, true
}

// principals strips the "spiffe://" scheme Istio allows in front of a principal.
func principals(in []string) []string {
	out := make([]string, 0, len(in))
	for _, p := range in {
		out = append(out, strings.TrimPrefix(p, "spiffe://"))
	}
	return out
}

func (r *resource) authzOperation(path string, in *authzOperation, state *ruleState) (policy.Operation, bool) {
	var out policy.Operation
	var ok bool
	for _, f := range []struct {
		field string
		in    []string
		out   *[]string
	}{
		{"hosts", in.Hosts, &out.Hosts}, {"notHosts", in.NotHosts, &out.NotHosts},
		{"methods", in.Methods, &out.Methods}, {"notMethods", in.NotMethods, &out.NotMethods},
		{"paths", in.Paths, &out.Paths}, {"notPaths", in.NotPaths, &out.NotPaths},
	} {
		values := f.in
		if strings.HasSuffix(f.field, "aths") && slices.ContainsFunc(values, isPathTemplate) {
			state.cannot(path+"."+f.field, "path templates ({*} and {**})")
			values = nil
		}
		if *f.out, ok = r.patterns(path+"."+f.field, values); !ok {
			return out, false
		}
	}
	if out.Ports, ok = r.ports(path+".ports", in.Ports); !ok {
		return out, false
	}
	if out.NotPorts, ok = r.ports(path+".notPorts", in.NotPorts); !ok {
		return out, false
	}
	return out, true
}

func isPathTemplate(p string) bool { return strings.Contains(p, "{") }

func (r *resource) authzCondition(path string, in authzCondition, state *ruleState) (out policy.Condition, use, ok bool) {
	if len(in.Values) == 0 && len(in.NotValues) == 0 {
		r.failf(path, "condition %q has neither values nor notValues; give at least one", in.Key)
		return out, false, false
	}
	key := in.Key
	switch {
	case strings.HasPrefix(key, "request.headers["):
		name, closed := strings.CutSuffix(strings.TrimPrefix(key, "request.headers["), "]")
		if !closed || name == "" {
			r.failf(path+".key", "%q is malformed; write request.headers[<header-name>]", key)
			return out, false, false
		}
		out = policy.Condition{Key: policy.KeyRequestHeader, Header: textproto.CanonicalMIMEHeaderKey(name)}
	case key == "source.ip" || key == "remote.ip" || key == "destination.ip":
		out = policy.Condition{Key: policy.ConditionKey(key)}
		if out.IPs, ok = r.prefixes(path+".values", in.Values); !ok {
			return out, false, false
		}
		if out.NotIPs, ok = r.prefixes(path+".notValues", in.NotValues); !ok {
			return out, false, false
		}
		return out, true, true
	case key == "destination.port":
		out = policy.Condition{Key: policy.KeyDestinationPort}
		if out.Ports, ok = r.ports(path+".values", in.Values); !ok {
			return out, false, false
		}
		if out.NotPorts, ok = r.ports(path+".notValues", in.NotValues); !ok {
			return out, false, false
		}
		return out, true, true
	case key == "source.namespace":
		out = policy.Condition{Key: policy.KeySourceNamespace}
	case key == "source.principal":
		out = policy.Condition{Key: policy.KeySourcePrincipal}
		in.Values, in.NotValues = principals(in.Values), principals(in.NotValues)
	case key == "source.serviceAccount" || strings.HasPrefix(key, "request.auth.") ||
		key == "connection.sni" || strings.HasPrefix(key, "experimental.envoy.filters."):
		state.cannot(path, fmt.Sprintf("the condition %q", key))
		return out, false, true
	default:
		r.failf(path+".key", "unknown condition key %q; use request.headers[...], source.ip, remote.ip, source.namespace, source.principal, destination.ip or destination.port", key)
		return out, false, false
	}
	if out.Values, ok = r.patterns(path+".values", in.Values); !ok {
		return out, false, false
	}
	if out.NotValues, ok = r.patterns(path+".notValues", in.NotValues); !ok {
		return out, false, false
	}
	return out, true, true
}

// patterns checks AuthorizationPolicy string patterns: "*" only alone, leading or trailing.
func (r *resource) patterns(path string, in []string) ([]string, bool) {
	for i, p := range in {
		if err := checkPattern(p); err != nil {
			r.fail(fmt.Sprintf("%s[%d]", path, i), err)
			return nil, false
		}
	}
	if len(in) == 0 {
		return nil, true
	}
	return in, true
}

func checkPattern(p string) error {
	if p == "" {
		return errors.New("empty value; give a value, \"prefix*\", \"*suffix\" or \"*\"")
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(p, "*"), "*")
	if strings.Contains(inner, "*") || (strings.HasPrefix(p, "*") && strings.HasSuffix(p, "*") && p != "*") {
		return fmt.Errorf("%q has \"*\" in the middle or at both ends; use \"prefix*\", \"*suffix\" or \"*\" only", p)
	}
	return nil
}

// prefixes parses IP addresses and CIDR blocks.
func (r *resource) prefixes(path string, in []string) ([]netip.Prefix, bool) {
	var out []netip.Prefix
	for i, s := range in {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				r.failf(fmt.Sprintf("%s[%d]", path, i), "%q is not a CIDR block; write it like 10.0.0.0/8 or fd00::/8", s)
				return nil, false
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			r.failf(fmt.Sprintf("%s[%d]", path, i), "%q is not an IP address or CIDR block; write it like 10.1.2.3 or 10.0.0.0/8", s)
			return nil, false
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, true
}

// ports parses port numbers written as strings.
func (r *resource) ports(path string, in []string) ([]uint32, bool) {
	var out []uint32
	for i, s := range in {
		port, err := strconv.ParseUint(s, 10, 16)
		if err != nil || port == 0 {
			r.failf(fmt.Sprintf("%s[%d]", path, i), "%q is not a port number; give 1 to 65535", s)
			return nil, false
		}
		out = append(out, uint32(port))
	}
	return out, true
}
