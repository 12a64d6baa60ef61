package translate

import (
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// twoRoutes attaches two HTTPRoutes to user-service; "newer" is listed first but created
// later, and its rules are in an order that precedence must undo.
const twoRoutes = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: newer, namespace: microservices, creationTimestamp: "2026-02-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: user-service}]
  rules:
  - name: catch-all
    backendRefs: [{name: user-service, port: 80}]
  - name: users-prefix
    matches: [{path: {type: PathPrefix, value: /api/users}}]
    backendRefs: [{name: users-v1, port: 80}]
  - name: users-get
    matches: [{path: {type: PathPrefix, value: /api/users}, method: GET}]
    backendRefs: [{name: users-read, port: 80}]
  - name: users-header
    matches: [{path: {type: PathPrefix, value: /api/users}, method: GET, headers: [{name: x-canary, value: "true"}]}]
    backendRefs: [{name: users-canary, port: 80}]
  - name: users-query
    matches: [{path: {type: PathPrefix, value: /api/users}, method: GET, headers: [{name: x-canary, value: "true"}], queryParams: [{name: debug, value: "1"}]}]
    backendRefs: [{name: users-debug, port: 80}]
  - name: longer-prefix
    matches: [{path: {type: PathPrefix, value: /api/users/admin/}}]
    backendRefs: [{name: admin, port: 80}]
  - name: exact
    matches: [{path: {type: Exact, value: /api/users}}]
    backendRefs: [{name: users-list, port: 80}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: "/api/users/[0-9]+"}}]
    backendRefs: [{name: users-by-id, port: 80}]
  - name: same-as-older
    matches: [{path: {type: PathPrefix, value: /tie}}]
    backendRefs: [{name: newer-tie, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: older, namespace: microservices, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: user-service}]
  rules:
  - name: tie
    matches: [{path: {type: PathPrefix, value: /tie}}]
    backendRefs: [{name: older-tie, port: 80}]
  - name: alphabetical-tie
    matches: [{path: {type: PathPrefix, value: /tie2}}]
    backendRefs: [{name: older-tie2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: also-older, namespace: microservices, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: user-service}]
  rules:
  - name: alphabetical-tie
    matches: [{path: {type: PathPrefix, value: /tie2}}]
    backendRefs: [{name: also-older-tie2, port: 80}]
`

func TestHTTPRoutePrecedence(t *testing.T) {
	result := mustTranslate(t, twoRoutes)
	if len(result.Unsupported) != 0 {
		t.Fatalf("unsupported: %v", result.Unsupported)
	}
	hosts := result.Model.VirtualHosts
	if len(hosts) != 1 {
		t.Fatalf("virtual hosts %+v, want one for user-service", hosts)
	}
	vh := hosts[0]
	if vh.Hosts[0] != "user-service.microservices.svc.cluster.local" || vh.Gateways[0] != policy.MeshGateway || vh.Port != 0 {
		t.Errorf("virtual host %q %v port %d", vh.Hosts, vh.Gateways, vh.Port)
	}
	if vh.Source != "HTTPRoute microservices/also-older, HTTPRoute microservices/newer, HTTPRoute microservices/older" {
		t.Errorf("source %q", vh.Source)
	}
	var order []string
	for _, r := range vh.Routes {
		order = append(order, r.Name+"->"+r.Destinations[0].Host[:len(r.Destinations[0].Host)-len(".microservices.svc.cluster.local")])
	}
	want := []string{
		"exact->users-list",                 // Exact beats everything
		"regex->users-by-id",                // then regular expressions (as Istio)
		"longer-prefix->admin",              // then the longest prefix (trailing slash ignored)
		"users-query->users-debug",          // same prefix: method, then most headers, then most query params
		"users-header->users-canary",        //
		"users-get->users-read",             //
		"users-prefix->users-v1",            //
		"alphabetical-tie->also-older-tie2", // equal matches: oldest route, then namespace/name
		"alphabetical-tie->older-tie2",      //
		"tie->older-tie",                    // older route first
		"same-as-older->newer-tie",          //
		"catch-all->user-service",           // PathPrefix "/" last
	}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("order:\n%q\nwant\n%q", order, want)
	}

	cases := []struct {
		req  policy.Request
		want string
	}{
		{policy.Request{Method: "GET", Path: "/api/users"}, "exact"},
		{policy.Request{Method: "GET", Path: "/api/users/42"}, "regex"},
		{policy.Request{Method: "POST", Path: "/api/users/"}, "users-prefix"},
		{policy.Request{Method: "GET", Path: "/api/users/x"}, "users-get"},
		{policy.Request{Method: "GET", Path: "/api/users/x", Header: http.Header{"X-Canary": {"true"}}, RawQuery: "debug=1"}, "users-query"},
		{policy.Request{Method: "GET", Path: "/api/usersX"}, "catch-all"}, // segment prefix: /api/users does not match /api/usersX
		{policy.Request{Method: "GET", Path: "/api/users/admin"}, "longer-prefix"},
		{policy.Request{Method: "GET", Path: "/api/users/adminX"}, "users-get"},
		{policy.Request{Method: "GET", Path: "/tie2/a"}, "alphabetical-tie"},
	}
	for _, c := range cases {
		got, ok := policy.SelectRoute(vh.Routes, &c.req)
		if !ok || got.Name != c.want {
			t.Errorf("%s %s -> %v, want %q", c.req.Method, c.req.Path, got, c.want)
		}
	}
}

func TestHTTPRoutePortsShareEveryPortRoutes(t *testing.T) {
	result := mustTranslate(t, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all-ports, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: orders}]
  rules: [{backendRefs: [{name: orders, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: admin-port, namespace: shop}
spec:
  parentRefs: [{kind: Service, group: "", name: orders, port: 9090}]
  rules:
  - matches: [{path: {value: /admin}}]
    backendRefs: [{name: orders-admin, port: 9090}]
`)
	hosts := result.Model.VirtualHosts
	if len(hosts) != 2 || hosts[0].Port != 9090 || hosts[1].Port != 0 {
		t.Fatalf("virtual hosts %+v, want port 9090 then every port", hosts)
	}
	if len(hosts[0].Routes) != 2 || len(hosts[1].Routes) != 1 {
		t.Errorf("routes per table: %d and %d, want 2 and 1", len(hosts[0].Routes), len(hosts[1].Routes))
	}
	vh, ok := policy.SelectVirtualHost(hosts, policy.MeshGateway, "orders.shop.svc.cluster.local:9090", 9090)
	if !ok || vh.Port != 9090 {
		t.Errorf("SelectVirtualHost on 9090 = %+v", vh)
	}
	vh, ok = policy.SelectVirtualHost(hosts, policy.MeshGateway, "orders.shop.svc.cluster.local", 80)
	if !ok || vh.Port != 0 {
		t.Errorf("SelectVirtualHost on 80 = %+v", vh)
	}
}

func TestHTTPRouteRuleFeatures(t *testing.T) {
	result := mustTranslate(t, routeHeader+`  rules:
  - name: split
    matches: [{path: {type: PathPrefix, value: /api/}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: split}], add: [{name: x-add, value: "1"}], remove: [x-remove]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: cache-control, value: no-store}]}
    - type: URLRewrite
      urlRewrite: {hostname: users.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    backendRefs:
    - {name: users-v1, port: 8080, weight: 90}
    - name: users-v2
      port: 8080
      weight: 10
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-version, value: v2}]}}]
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {attempts: 3, codes: [503, 504], backoff: 100ms}
  - name: redirect
    matches: [{path: {type: Exact, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, port: 443, path: {type: ReplaceFullPath, replaceFullPath: /new}}}]
  - name: no-backends
    matches: [{path: {type: Exact, value: /nothing}}]
  - name: ext-auth
    matches: [{path: {type: Exact, value: /guarded}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Auth, name: a}}]
    backendRefs: [{name: users-v1, port: 8080}]
`)
	if got := unsupportedPaths(result); !reflect.DeepEqual(got, []string{"spec.rules[3].filters[0]"}) {
		t.Errorf("unsupported %q, want only the ExtensionRef", got)
	}
	byName := map[string]policy.Route{}
	for _, r := range result.Model.VirtualHosts[0].Routes {
		byName[r.Name] = r
	}
	split := byName["split"]
	if split.Match.Path.Kind != policy.MatchSegmentPrefix || split.Match.Path.Value != "/api" {
		t.Errorf("match %+v, want segment prefix /api", split.Match.Path)
	}
	if got := split.RewritePath("/api/users/1"); got != "/v2/users/1" || split.Rewrite.Authority != "users.internal" {
		t.Errorf("rewrite to %q authority %q", got, split.Rewrite.Authority)
	}
	wantReq := &policy.HeaderModifier{Set: []policy.Header{{Name: "X-Route", Value: "split"}}, Add: []policy.Header{{Name: "X-Add", Value: "1"}}, Remove: []string{"X-Remove"}}
	if !reflect.DeepEqual(split.RequestHeaders, wantReq) || split.ResponseHeaders.Set[0].Name != "Cache-Control" {
		t.Errorf("headers %+v %+v", split.RequestHeaders, split.ResponseHeaders)
	}
	if d := split.Destinations; d[0].Weight != 90 || d[1].Weight != 10 || d[1].Port != 8080 || d[1].RequestHeaders.Set[0].Value != "v2" {
		t.Errorf("destinations %+v", d)
	}
	wantRetries := &policy.RetryPolicy{Attempts: 3, PerTryTimeout: policy.Duration(2 * time.Second), Backoff: policy.Duration(100 * time.Millisecond),
		RetryOn: []string{"connect-failure", "refused-stream", "reset", "retriable-status-codes"}, RetriableStatusCodes: []uint32{503, 504}}
	if split.Timeout.D() != 10*time.Second || !reflect.DeepEqual(split.Retries, wantRetries) {
		t.Errorf("timeout %s retries %+v, want 10s %+v", split.Timeout, split.Retries, wantRetries)
	}
	redirect := byName["redirect"].Redirect
	if redirect == nil || redirect.StatusCode != http.StatusFound || redirect.Scheme != "https" || redirect.Port != 443 || redirect.Path.Value != "/new" {
		t.Errorf("redirect %+v", redirect)
	}
	for _, name := range []string{"no-backends", "ext-auth"} {
		r := byName[name]
		if r.DirectResponse == nil || r.DirectResponse.Status != 500 || len(r.Destinations) != 0 {
			t.Errorf("%s: %+v, want a 500 direct response", name, r)
		}
	}
}
