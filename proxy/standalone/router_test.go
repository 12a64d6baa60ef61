package standalone

import (
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/lightmesh/lightmesh/proxy/envoy"
)

const routesYAML = `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: exact
              domains: ["api.example.com"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: exact}
            - name: suffix
              domains: ["*.example.com"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: suffix}
            - name: prefix
              domains: ["api.*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: prefix}
            - name: any
              domains: ["*"]
              routes:
              - match: {path: "/exact"}
                route: {cluster: path}
              - match: {prefix: "/api/users"}
                route: {cluster: users, prefix_rewrite: "/users"}
              - match: {safe_regex: {google_re2: {}, regex: "/items/[0-9]+"}}
                route: {cluster: regex}
              - match:
                  prefix: "/h"
                  headers:
                  - {name: x-canary, string_match: {exact: "yes"}}
                route: {cluster: canary}
              - match: {prefix: "/h"}
                route:
                  weighted_clusters:
                    clusters:
                    - {name: a, weight: 90}
                    - {name: b, weight: 10}
  clusters:
  - {name: exact}
  - {name: suffix}
  - {name: prefix}
  - {name: path}
  - {name: users}
  - {name: regex}
  - {name: canary}
  - {name: a}
  - {name: b}
`

func table(t *testing.T) *routeTable {
	t.Helper()
	bs, _, err := envoy.Parse([]byte(routesYAML), envoy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := newRouteTable(bs.StaticResources.Listeners[0].FilterChains[0].Filters[0].HCM.RouteConfig)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestRouteTableMatching(t *testing.T) {
	rt := table(t)
	rng := &lockedRand{r: rand.New(rand.NewPCG(1, 2))}
	for _, tc := range []struct {
		host, path string
		hdr        http.Header
		want       string
	}{
		{"api.example.com", "/x", nil, "exact"},
		{"api.example.com:8080", "/x", nil, "prefix"}, // Envoy compares the Host with its port
		{"web.example.com", "/x", nil, "suffix"},
		{"api.other.org", "/x", nil, "prefix"},
		{"example.com", "/exact", nil, "path"},
		{"example.com", "/exact?q=1", nil, "path"},
		{"example.com", "/api/users", nil, "users"},
		{"example.com", "/api/users-admin", nil, "users"}, // a plain string prefix
		{"example.com", "/items/42", nil, "regex"},
		{"example.com", "/items/42x", nil, ""},
		{"example.com", "/exact/more", nil, ""},
		{"example.com", "/h", http.Header{"X-Canary": {"yes"}}, "canary"},
		{"example.com", "/API/users", nil, ""},
	} {
		r := rt.match(tc.host, tc.path, tc.hdr)
		got := ""
		if r != nil && len(r.clusters) == 1 {
			got = r.pickCluster(rng)
		}
		if got != tc.want {
			t.Errorf("%s%s: got %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	if r := rt.match("x", "/api/users/7", nil); r.rewritePath("/api/users/7") != "/users/7" {
		t.Errorf("prefix_rewrite = %q", r.rewritePath("/api/users/7"))
	}
}

func TestWeightedPick(t *testing.T) {
	rt := table(t)
	r := rt.match("example.com", "/h", nil)
	rng := &lockedRand{r: rand.New(rand.NewPCG(7, 7))}
	counts := map[string]int{}
	const n = 10000
	for range n {
		counts[r.pickCluster(rng)]++
	}
	if a := counts["a"]; a < n*87/100 || a > n*93/100 || counts["a"]+counts["b"] != n {
		t.Fatalf("split = %v, want about 90/10", counts)
	}
}
