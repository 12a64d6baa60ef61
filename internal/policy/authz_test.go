package policy

import (
	"net/http"
	"net/netip"
	"testing"
)

const orderPrincipal = "cluster.local/ns/microservices/sa/order-service"

// seedPolicy is the seed's user-service-policy.
func seedPolicy() AuthorizationPolicy {
	return AuthorizationPolicy{
		Namespace: "microservices", Name: "user-service-policy",
		Selector: map[string]string{"app": "user-service"},
		Action:   ActionAllow,
		Rules: []Rule{{
			From: []Source{{Principals: []string{orderPrincipal}}},
			To:   []Operation{{Methods: []string{"GET", "POST"}, Paths: []string{"/api/users/*"}}},
		}},
	}
}

func TestAuthorize(t *testing.T) {
	denyDebug := AuthorizationPolicy{Namespace: "microservices", Name: "deny-debug", Action: ActionDeny,
		Rules: []Rule{{To: []Operation{{Paths: []string{"/debug*"}}}}}}
	allowAll := AuthorizationPolicy{Namespace: "microservices", Name: "allow-all", Action: ActionAllow, Rules: []Rule{{}}}
	allowNothing := AuthorizationPolicy{Namespace: "microservices", Name: "allow-nothing", Action: ActionAllow} // spec: {}
	denyNothing := AuthorizationPolicy{Namespace: "microservices", Name: "deny-nothing", Action: ActionDeny}
	auditAll := AuthorizationPolicy{Namespace: "microservices", Name: "audit-all", Action: ActionAudit, Rules: []Rule{{}}}

	fromOrder := func(method, path string) Request {
		return Request{Method: method, Path: path, Port: 8080, SourcePrincipal: orderPrincipal}
	}
	cases := []struct {
		name        string
		policies    []AuthorizationPolicy
		req         Request
		wantAllowed bool
		wantReason  DecisionReason
		wantPolicy  string
	}{
		{"no policy allows", nil, fromOrder("GET", "/x"), true, ReasonNoAllowPolicy, ""},
		{"seed: order-service GET /api/users/42", []AuthorizationPolicy{seedPolicy()}, fromOrder("GET", "/api/users/42"), true, ReasonAllowed, "user-service-policy"},
		{"seed: POST allowed", []AuthorizationPolicy{seedPolicy()}, fromOrder("POST", "/api/users/42"), true, ReasonAllowed, "user-service-policy"},
		{"seed: DELETE denied", []AuthorizationPolicy{seedPolicy()}, fromOrder("DELETE", "/api/users/42"), false, ReasonNoAllowMatched, ""},
		{"seed: /api/users/* does not match /api/users", []AuthorizationPolicy{seedPolicy()}, fromOrder("GET", "/api/users"), false, ReasonNoAllowMatched, ""},
		{"seed: /api/users/* matches /api/users/", []AuthorizationPolicy{seedPolicy()}, fromOrder("GET", "/api/users/"), true, ReasonAllowed, "user-service-policy"},
		{"seed: other principal denied", []AuthorizationPolicy{seedPolicy()}, Request{Method: "GET", Path: "/api/users/1", SourcePrincipal: "cluster.local/ns/microservices/sa/payment"}, false, ReasonNoAllowMatched, ""},
		{"seed: plain text denied", []AuthorizationPolicy{seedPolicy()}, Request{Method: "GET", Path: "/api/users/1"}, false, ReasonNoAllowMatched, ""},
		{"deny before allow", []AuthorizationPolicy{allowAll, denyDebug}, fromOrder("GET", "/debug/pprof"), false, ReasonDenied, "deny-debug"},
		{"deny not matching, allow matching", []AuthorizationPolicy{denyDebug, allowAll}, fromOrder("GET", "/api"), true, ReasonAllowed, "allow-all"},
		{"only a deny policy, not matching: allowed", []AuthorizationPolicy{denyDebug}, fromOrder("GET", "/api"), true, ReasonNoAllowPolicy, ""},
		{"spec {} denies all", []AuthorizationPolicy{allowNothing}, fromOrder("GET", "/api"), false, ReasonNoAllowMatched, ""},
		{"spec {} beside a matching allow", []AuthorizationPolicy{allowNothing, allowAll}, fromOrder("GET", "/api"), true, ReasonAllowed, "allow-all"},
		{"deny without rules matches nothing", []AuthorizationPolicy{denyNothing}, fromOrder("GET", "/api"), true, ReasonNoAllowPolicy, ""},
		{"audit does not change allow", []AuthorizationPolicy{auditAll}, fromOrder("GET", "/api"), true, ReasonNoAllowPolicy, ""},
		{"audit does not change deny", []AuthorizationPolicy{auditAll, allowNothing}, fromOrder("GET", "/api"), false, ReasonNoAllowMatched, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Authorize(c.policies, &c.req)
			if d.Allowed != c.wantAllowed || d.Reason != c.wantReason {
				t.Fatalf("Authorize = %v (%s), want %v (%s)", d.Allowed, d.Reason, c.wantAllowed, c.wantReason)
			}
			gotPolicy := ""
			if d.Policy != nil {
				gotPolicy = d.Policy.Name
			}
			if gotPolicy != c.wantPolicy {
				t.Errorf("deciding policy = %q, want %q", gotPolicy, c.wantPolicy)
			}
		})
	}
}

func TestAuthorizeReportsAudit(t *testing.T) {
	audit := AuthorizationPolicy{Name: "audit-admin", Action: ActionAudit, Rules: []Rule{{To: []Operation{{Paths: []string{"/admin*"}}}}}}
	d := Authorize([]AuthorizationPolicy{audit}, &Request{Path: "/admin/x"})
	if !d.Allowed || d.Audited == nil || d.Audited.Name != "audit-admin" {
		t.Errorf("Authorize = %+v, want allowed and audited by audit-admin", d)
	}
	d = Authorize([]AuthorizationPolicy{audit}, &Request{Path: "/other"})
	if d.Audited != nil {
		t.Errorf("Audited = %v for a request the audit policy does not match", d.Audited.Name)
	}
}

func TestRuleFields(t *testing.T) {
	base := Request{
		Method: "GET", Path: "/api/users/42", Authority: "users.example.com:8080", Port: 8080,
		Header:          http.Header{"X-Tenant": {"acme"}, "X-Env": {"prod-eu"}},
		SourcePrincipal: orderPrincipal,
		SourceIP:        netip.MustParseAddr("10.1.2.3"),
		DestinationIP:   netip.MustParseAddr("10.9.0.1"),
	}
	plain := base
	plain.SourcePrincipal = ""
	tcp := base
	tcp.TCP = true
	mapped := base
	mapped.SourceIP = netip.MustParseAddr("::ffff:10.1.2.3")
	cidr := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }

	cases := []struct {
		name string
		rule Rule
		req  Request
		want bool
	}{
		{"empty rule matches", Rule{}, base, true},
		{"principal exact", Rule{From: []Source{{Principals: []string{orderPrincipal}}}}, base, true},
		{"principal prefix", Rule{From: []Source{{Principals: []string{"cluster.local/ns/microservices/*"}}}}, base, true},
		{"principal suffix", Rule{From: []Source{{Principals: []string{"*/sa/order-service"}}}}, base, true},
		{"principal * needs an identity", Rule{From: []Source{{Principals: []string{"*"}}}}, plain, false},
		{"principal * with identity", Rule{From: []Source{{Principals: []string{"*"}}}}, base, true},
		{"notPrincipals * matches plain text", Rule{From: []Source{{NotPrincipals: []string{"*"}}}}, plain, true},
		{"notPrincipals excludes", Rule{From: []Source{{NotPrincipals: []string{orderPrincipal}}}}, base, false},
		{"namespaces", Rule{From: []Source{{Namespaces: []string{"microservices"}}}}, base, true},
		{"namespaces other", Rule{From: []Source{{Namespaces: []string{"default"}}}}, base, false},
		{"namespaces need an identity", Rule{From: []Source{{Namespaces: []string{"*"}}}}, plain, false},
		{"notNamespaces", Rule{From: []Source{{NotNamespaces: []string{"micro*"}}}}, base, false},
		{"ipBlocks", Rule{From: []Source{{IPBlocks: cidr("10.1.0.0/16")}}}, base, true},
		{"ipBlocks single address", Rule{From: []Source{{IPBlocks: cidr("10.1.2.3/32")}}}, base, true},
		{"ipBlocks IPv4-mapped source", Rule{From: []Source{{IPBlocks: cidr("10.1.0.0/16")}}}, mapped, true},
		{"ipBlocks other", Rule{From: []Source{{IPBlocks: cidr("192.168.0.0/16")}}}, base, false},
		{"notIpBlocks", Rule{From: []Source{{NotIPBlocks: cidr("10.0.0.0/8")}}}, base, false},
		{"remoteIpBlocks", Rule{From: []Source{{RemoteIPBlocks: cidr("10.1.0.0/16")}}}, base, true},
		{"notRemoteIpBlocks", Rule{From: []Source{{NotRemoteIPBlocks: cidr("10.1.0.0/16")}}}, base, false},
		{"one of several sources", Rule{From: []Source{{Namespaces: []string{"x"}}, {Namespaces: []string{"microservices"}}}}, base, true},
		{"source fields are ANDed", Rule{From: []Source{{Namespaces: []string{"microservices"}, IPBlocks: cidr("192.168.0.0/16")}}}, base, false},
		{"methods", Rule{To: []Operation{{Methods: []string{"POST", "GET"}}}}, base, true},
		{"notMethods", Rule{To: []Operation{{NotMethods: []string{"GET"}}}}, base, false},
		{"paths prefix", Rule{To: []Operation{{Paths: []string{"/api/*"}}}}, base, true},
		{"paths suffix", Rule{To: []Operation{{Paths: []string{"*/42"}}}}, base, true},
		{"paths exact other", Rule{To: []Operation{{Paths: []string{"/api/users"}}}}, base, false},
		{"paths * matches all", Rule{To: []Operation{{Paths: []string{"*"}}}}, base, true},
		{"notPaths", Rule{To: []Operation{{NotPaths: []string{"/api/*"}}}}, base, false},
		{"ports", Rule{To: []Operation{{Ports: []uint32{8080}}}}, base, true},
		{"ports other", Rule{To: []Operation{{Ports: []uint32{9090}}}}, base, false},
		{"notPorts", Rule{To: []Operation{{NotPorts: []uint32{8080}}}}, base, false},
		{"hosts ignore case and port", Rule{To: []Operation{{Hosts: []string{"USERS.example.com"}}}}, base, true},
		{"hosts with port", Rule{To: []Operation{{Hosts: []string{"users.example.com:8080"}}}}, base, true},
		{"hosts with other port", Rule{To: []Operation{{Hosts: []string{"users.example.com:9090"}}}}, base, false},
		{"hosts suffix", Rule{To: []Operation{{Hosts: []string{"*.example.com"}}}}, base, true},
		{"notHosts", Rule{To: []Operation{{NotHosts: []string{"*.example.com"}}}}, base, false},
		{"from and to are ANDed", Rule{From: []Source{{Namespaces: []string{"microservices"}}}, To: []Operation{{Methods: []string{"POST"}}}}, base, false},
		{"when header", Rule{When: []Condition{{Key: KeyRequestHeader, Header: "X-Tenant", Values: []string{"acme"}}}}, base, true},
		{"when header prefix", Rule{When: []Condition{{Key: KeyRequestHeader, Header: "X-Env", Values: []string{"prod-*"}}}}, base, true},
		{"when header absent", Rule{When: []Condition{{Key: KeyRequestHeader, Header: "X-Missing", Values: []string{"*"}}}}, base, false},
		{"when header notValues absent", Rule{When: []Condition{{Key: KeyRequestHeader, Header: "X-Missing", NotValues: []string{"x"}}}}, base, true},
		{"when header notValues", Rule{When: []Condition{{Key: KeyRequestHeader, Header: "X-Tenant", NotValues: []string{"acme"}}}}, base, false},
		{"when source.ip", Rule{When: []Condition{{Key: KeySourceIP, IPs: cidr("10.1.2.0/24")}}}, base, true},
		{"when remote.ip", Rule{When: []Condition{{Key: KeyRemoteIP, NotIPs: cidr("10.1.2.0/24")}}}, base, false},
		{"when destination.ip", Rule{When: []Condition{{Key: KeyDestinationIP, IPs: cidr("10.9.0.1/32")}}}, base, true},
		{"when destination.port", Rule{When: []Condition{{Key: KeyDestinationPort, Ports: []uint32{8080}}}}, base, true},
		{"when destination.port not", Rule{When: []Condition{{Key: KeyDestinationPort, NotPorts: []uint32{8080}}}}, base, false},
		{"when source.namespace", Rule{When: []Condition{{Key: KeySourceNamespace, Values: []string{"microservices"}}}}, base, true},
		{"when source.principal plain text", Rule{When: []Condition{{Key: KeySourcePrincipal, Values: []string{"*"}}}}, plain, false},
		{"when conditions are ANDed", Rule{When: []Condition{{Key: KeySourceNamespace, Values: []string{"microservices"}}, {Key: KeyDestinationPort, Ports: []uint32{1}}}}, base, false},
		{"unknown condition key never matches", Rule{When: []Condition{{Key: "request.auth.claims", Values: []string{"*"}}}}, base, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			allow := AuthorizationPolicy{Action: ActionAllow, Rules: []Rule{c.rule}}
			if got := allow.Matches(&c.req); got != c.want {
				t.Errorf("Matches = %v, want %v", got, c.want)
			}
		})
	}

	// Opaque TCP: HTTP-only fields make an ALLOW rule never match and are ignored in DENY.
	httpRule := Rule{To: []Operation{{Ports: []uint32{8080}, Paths: []string{"/nothing-matches"}}}}
	allow := AuthorizationPolicy{Action: ActionAllow, Rules: []Rule{httpRule}}
	deny := AuthorizationPolicy{Action: ActionDeny, Rules: []Rule{httpRule}}
	if allow.Matches(&tcp) {
		t.Error("an ALLOW rule with paths matched an opaque TCP request")
	}
	if !deny.Matches(&tcp) {
		t.Error("a DENY rule with paths did not ignore them for an opaque TCP request")
	}
	headerDeny := AuthorizationPolicy{Action: ActionDeny, Rules: []Rule{{When: []Condition{{Key: KeyRequestHeader, Header: "X-A", Values: []string{"b"}}}}}}
	if !headerDeny.Matches(&tcp) {
		t.Error("a DENY rule with a request.headers condition did not ignore it for TCP")
	}
	tcpOnly := AuthorizationPolicy{Action: ActionAllow, Rules: []Rule{{To: []Operation{{Ports: []uint32{8080}}}}}}
	if !tcpOnly.Matches(&tcp) {
		t.Error("an ALLOW rule with only ports did not match a TCP request to that port")
	}
}

func TestSelectAuthorizationPolicies(t *testing.T) {
	all := []AuthorizationPolicy{
		{Namespace: "lightmesh", Name: "mesh-wide"},
		{Namespace: "istio-system", Name: "istio-root"},
		{Namespace: "lightmesh", Name: "mesh-selected", Selector: map[string]string{"app": "user-service"}},
		{Namespace: "microservices", Name: "namespace-wide"},
		{Namespace: "microservices", Name: "user-service", Selector: map[string]string{"app": "user-service"}},
		{Namespace: "microservices", Name: "orders", Selector: map[string]string{"app": "order-service"}},
		{Namespace: "other", Name: "other-namespace"},
	}
	got := SelectAuthorizationPolicies(all, []string{"lightmesh", "istio-system"}, "microservices", map[string]string{"app": "user-service", "version": "v1"})
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	want := []string{"mesh-wide", "istio-root", "mesh-selected", "namespace-wide", "user-service"}
	if len(names) != len(want) {
		t.Fatalf("selected %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("selected %v, want %v", names, want)
		}
	}
}

func TestPrincipalNamespace(t *testing.T) {
	cases := map[string]string{
		orderPrincipal:                    "microservices",
		"example.org/ns/a.b/sa/x":         "a.b",
		"":                                "",
		"cluster.local/sa/x":              "",
		"cluster.local/ns/only-namespace": "",
	}
	for in, want := range cases {
		if got := PrincipalNamespace(in); got != want {
			t.Errorf("PrincipalNamespace(%q) = %q, want %q", in, got, want)
		}
	}
}
