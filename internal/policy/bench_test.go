package policy

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"
)

// benchRoutes is a route table of n prefix routes with a header match, then the seed's two.
func benchRoutes(n int) []Route {
	var routes []Route
	for i := range n {
		routes = append(routes, Route{
			Match: Match{
				Path:    &StringMatch{Kind: MatchPrefix, Value: fmt.Sprintf("/svc%d/", i)},
				Headers: []HeaderMatch{{Name: "X-Version", Value: StringMatch{Kind: MatchExact, Value: "v2"}}},
			},
			Destinations: []WeightedDestination{{Host: "a", Weight: 1}},
		})
	}
	routes = append(routes,
		Route{Match: Match{Path: &StringMatch{Kind: MatchPrefix, Value: "/api/users"}}, Destinations: []WeightedDestination{{Host: "user-service", Weight: 90}, {Host: "user-service-v2", Weight: 10}}},
		Route{Match: Match{Path: &StringMatch{Kind: MatchPrefix, Value: "/api/orders"}}, Destinations: []WeightedDestination{{Host: "order-service", Weight: 1}}},
	)
	return routes
}

func BenchmarkSelectRoute(b *testing.B) {
	for _, n := range []int{0, 20} {
		routes := benchRoutes(n)
		req := &Request{Method: "GET", Path: "/api/orders/42", Port: 80, Header: http.Header{"X-Version": {"v1"}}}
		b.Run(fmt.Sprintf("routes=%d", len(routes)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, ok := SelectRoute(routes, req)
				if !ok || r.Destinations[0].Host != "order-service" {
					b.Fatal("wrong route")
				}
			}
		})
	}
}

func BenchmarkPickWeighted(b *testing.B) {
	dests := []WeightedDestination{{Host: "user-service", Weight: 90}, {Host: "user-service-v2", Weight: 10}}
	b.ReportAllocs()
	var rnd uint64
	for b.Loop() {
		rnd++
		if _, ok := PickWeighted(dests, rnd); !ok {
			b.Fatal("no destination")
		}
	}
}

func BenchmarkAuthorize(b *testing.B) {
	policies := []AuthorizationPolicy{
		{Name: "deny-debug", Action: ActionDeny, Rules: []Rule{{To: []Operation{{Paths: []string{"/debug*", "/admin*"}}}}}},
		{Name: "deny-outside", Action: ActionDeny, Rules: []Rule{{From: []Source{{NotIPBlocks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}}}},
		{Name: "allow-tenant", Action: ActionAllow, Rules: []Rule{{When: []Condition{{Key: KeyRequestHeader, Header: "X-Tenant", Values: []string{"other"}}}}}},
		seedPolicy(),
	}
	req := &Request{
		Method: "POST", Path: "/api/users/42", Port: 8080, Authority: "user-service",
		Header:          http.Header{"X-Tenant": {"acme"}},
		SourcePrincipal: orderPrincipal,
		SourceIP:        netip.MustParseAddr("10.1.2.3"),
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := Authorize(policies, req); !d.Allowed {
			b.Fatalf("denied: %s", d.Reason)
		}
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, path := range []string{"/api/users/42?x=1", "//api/%75sers/../users/42"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizePath(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	routes := benchRoutes(5)
	req := &Request{Method: "GET", Path: "/api/orders/42", Port: 80, Header: http.Header{"X-Version": {"v1"}}, SourcePrincipal: orderPrincipal}
	policies := []AuthorizationPolicy{seedPolicy(), {Action: ActionDeny, Rules: []Rule{{To: []Operation{{Paths: []string{"/debug*"}}}}}}}
	allocs := testing.AllocsPerRun(100, func() {
		SelectRoute(routes, req)
		Authorize(policies, req)
		PickWeighted(routes[len(routes)-2].Destinations, 7)
	})
	if allocs != 0 {
		t.Errorf("SelectRoute, Authorize and PickWeighted allocated %v times per run", allocs)
	}
}
