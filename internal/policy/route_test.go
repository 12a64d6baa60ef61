package policy

import (
	"net/http"
	"testing"
)

func pathMatch(kind MatchKind, value string) *StringMatch {
	return &StringMatch{Kind: kind, Value: value}
}

func TestStringMatchPaths(t *testing.T) {
	cases := []struct {
		name  string
		match StringMatch
		path  string
		want  bool
	}{
		{"istio prefix matches itself", StringMatch{Kind: MatchPrefix, Value: "/api/users"}, "/api/users", true},
		{"istio prefix is a plain string prefix", StringMatch{Kind: MatchPrefix, Value: "/api/users"}, "/api/usersX", true},
		{"istio prefix with sub-path", StringMatch{Kind: MatchPrefix, Value: "/api/users"}, "/api/users/42", true},
		{"istio prefix shorter path", StringMatch{Kind: MatchPrefix, Value: "/api/users"}, "/api/user", false},
		{"istio prefix is case-sensitive", StringMatch{Kind: MatchPrefix, Value: "/api/users"}, "/API/users", false},
		{"istio prefix ignoreUriCase", StringMatch{Kind: MatchPrefix, Value: "/api/users", IgnoreCase: true}, "/API/Users/1", true},
		{"segment prefix matches itself", StringMatch{Kind: MatchSegmentPrefix, Value: "/api/users"}, "/api/users", true},
		{"segment prefix trailing slash", StringMatch{Kind: MatchSegmentPrefix, Value: "/api/users"}, "/api/users/", true},
		{"segment prefix sub-path", StringMatch{Kind: MatchSegmentPrefix, Value: "/api/users"}, "/api/users/1", true},
		{"segment prefix is not a string prefix", StringMatch{Kind: MatchSegmentPrefix, Value: "/api/users"}, "/api/usersX", false},
		{"segment prefix ignores its trailing slash", StringMatch{Kind: MatchSegmentPrefix, Value: "/api/users/"}, "/api/users", true},
		{"segment prefix with trailing slash, other segment", StringMatch{Kind: MatchSegmentPrefix, Value: "/api/users/"}, "/api/usersX", false},
		{"segment prefix root matches all", StringMatch{Kind: MatchSegmentPrefix, Value: "/"}, "/anything", true},
		{"exact", StringMatch{Kind: MatchExact, Value: "/abc"}, "/abc", true},
		{"exact is not prefix", StringMatch{Kind: MatchExact, Value: "/abc"}, "/abc/", false},
		{"exact ignore case", StringMatch{Kind: MatchExact, Value: "/abc", IgnoreCase: true}, "/ABC", true},
		{"regex matches whole path", StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("/api/v[0-9]+")}, "/api/v2", true},
		{"regex is anchored", StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("/api/v[0-9]+")}, "/api/v2/users", false},
		{"regex is anchored at the start", StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("v[0-9]+")}, "/v2", false},
		{"regex with alternation stays anchored", StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("/a|/b")}, "/ab", false},
		{"unknown kind never matches", StringMatch{Kind: "Fuzzy", Value: "/"}, "/", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.match.Matches(c.path); got != c.want {
				t.Errorf("%+v.Matches(%q) = %v, want %v", c.match, c.path, got, c.want)
			}
		})
	}
}

func TestHeaderAndQueryMatches(t *testing.T) {
	header := http.Header{
		"X-User":    {"alice"},
		"X-Version": {"v2-beta"},
		"Accept":    {"text/html", "application/json"},
	}
	headerCases := []struct {
		name  string
		match HeaderMatch
		want  bool
	}{
		{"exact", HeaderMatch{Name: "X-User", Value: StringMatch{Kind: MatchExact, Value: "alice"}}, true},
		{"exact other value", HeaderMatch{Name: "X-User", Value: StringMatch{Kind: MatchExact, Value: "bob"}}, false},
		{"prefix", HeaderMatch{Name: "X-Version", Value: StringMatch{Kind: MatchPrefix, Value: "v2"}}, true},
		{"regex", HeaderMatch{Name: "X-Version", Value: StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("v[0-9]-.*")}}, true},
		{"present", HeaderMatch{Name: "X-User", Value: StringMatch{Kind: MatchPresent}}, true},
		{"absent is not present", HeaderMatch{Name: "X-Missing", Value: StringMatch{Kind: MatchPresent}}, false},
		{"absent does not match exact", HeaderMatch{Name: "X-Missing", Value: StringMatch{Kind: MatchExact, Value: ""}}, false},
		{"several values are joined with commas", HeaderMatch{Name: "Accept", Value: StringMatch{Kind: MatchExact, Value: "text/html,application/json"}}, true},
		{"invert of a match", HeaderMatch{Name: "X-User", Value: StringMatch{Kind: MatchExact, Value: "alice"}, Invert: true}, false},
		{"invert of an absent header", HeaderMatch{Name: "X-Missing", Value: StringMatch{Kind: MatchExact, Value: "x"}, Invert: true}, true},
	}
	for _, c := range headerCases {
		t.Run("header "+c.name, func(t *testing.T) {
			if got := c.match.Matches(header); got != c.want {
				t.Errorf("Matches = %v, want %v", got, c.want)
			}
		})
	}

	queryCases := []struct {
		name  string
		query string
		match QueryParamMatch
		want  bool
	}{
		{"exact", "a=1&debug=true", QueryParamMatch{Name: "debug", Value: StringMatch{Kind: MatchExact, Value: "true"}}, true},
		{"first occurrence wins", "debug=false&debug=true", QueryParamMatch{Name: "debug", Value: StringMatch{Kind: MatchExact, Value: "true"}}, false},
		{"decoded value", "q=a%20b", QueryParamMatch{Name: "q", Value: StringMatch{Kind: MatchExact, Value: "a b"}}, true},
		{"plus is a space", "q=a+b", QueryParamMatch{Name: "q", Value: StringMatch{Kind: MatchExact, Value: "a b"}}, true},
		{"decoded name", "%64ebug=1", QueryParamMatch{Name: "debug", Value: StringMatch{Kind: MatchPresent}}, true},
		{"empty value is present", "debug", QueryParamMatch{Name: "debug", Value: StringMatch{Kind: MatchExact, Value: ""}}, true},
		{"absent", "a=1", QueryParamMatch{Name: "debug", Value: StringMatch{Kind: MatchPresent}}, false},
		{"names are case-sensitive", "Debug=1", QueryParamMatch{Name: "debug", Value: StringMatch{Kind: MatchPresent}}, false},
		{"regex", "v=12", QueryParamMatch{Name: "v", Value: StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("[0-9]+")}}, true},
		{"invalid escape in value", "v=%zz", QueryParamMatch{Name: "v", Value: StringMatch{Kind: MatchPresent}}, false},
	}
	for _, c := range queryCases {
		t.Run("query "+c.name, func(t *testing.T) {
			if got := c.match.Matches(c.query); got != c.want {
				t.Errorf("Matches(%q) = %v, want %v", c.query, got, c.want)
			}
		})
	}
}

func TestSelectRouteFirstMatchWins(t *testing.T) {
	routes := []Route{
		{Name: "users-v2", Match: Match{Path: pathMatch(MatchPrefix, "/api/users"), Headers: []HeaderMatch{{Name: "X-Version", Value: StringMatch{Kind: MatchExact, Value: "v2"}}}}},
		{Name: "users", Match: Match{Path: pathMatch(MatchPrefix, "/api/users")}},
		{Name: "users-exact-never-reached", Match: Match{Path: pathMatch(MatchExact, "/api/users")}},
		{Name: "post-orders", Match: Match{Path: pathMatch(MatchPrefix, "/api/orders"), Method: &StringMatch{Kind: MatchExact, Value: "POST"}}},
		{Name: "orders-8080", Match: Match{Path: pathMatch(MatchPrefix, "/api/orders"), Port: 8080}},
		{Name: "debug", Match: Match{QueryParams: []QueryParamMatch{{Name: "debug", Value: StringMatch{Kind: MatchExact, Value: "1"}}}}},
		{Name: "https-only", Match: Match{Scheme: &StringMatch{Kind: MatchExact, Value: "https"}, Authority: &StringMatch{Kind: MatchPrefix, Value: "secure."}}},
	}
	cases := []struct {
		name string
		req  Request
		want string // "" means no route
	}{
		{"header route first", Request{Method: "GET", Path: "/api/users/1", Header: http.Header{"X-Version": {"v2"}}, Port: 80}, "users-v2"},
		{"plain string prefix matches /api/usersX", Request{Method: "GET", Path: "/api/usersX", Port: 80}, "users"},
		{"earlier prefix shadows a later exact", Request{Method: "GET", Path: "/api/users", Port: 80}, "users"},
		{"method", Request{Method: "POST", Path: "/api/orders", Port: 80}, "post-orders"},
		{"port", Request{Method: "GET", Path: "/api/orders", Port: 8080}, "orders-8080"},
		{"no route", Request{Method: "GET", Path: "/api/orders", Port: 80}, ""},
		{"query", Request{Method: "GET", Path: "/x", RawQuery: "debug=1", Port: 80}, "debug"},
		{"scheme and authority", Request{Method: "GET", Path: "/x", Scheme: "https", Authority: "secure.example.com", Port: 443}, "https-only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := SelectRoute(routes, &c.req)
			if c.want == "" {
				if ok {
					t.Fatalf("SelectRoute = %q, want no route (404)", got.Name)
				}
				return
			}
			if !ok {
				t.Fatalf("SelectRoute found no route, want %q", c.want)
			}
			if got.Name != c.want {
				t.Errorf("SelectRoute = %q, want %q", got.Name, c.want)
			}
		})
	}
}

func TestSelectRouteEmptyMatchMatchesAll(t *testing.T) {
	routes := []Route{{Name: "all"}}
	got, ok := SelectRoute(routes, &Request{Path: "/anything"})
	if !ok || got.Name != "all" {
		t.Fatalf("SelectRoute = %v, %v; want the catch-all route", got, ok)
	}
	if _, ok := SelectRoute(nil, &Request{Path: "/"}); ok {
		t.Fatal("SelectRoute on no routes found one")
	}
}

// share returns how many of n consecutive random values PickWeighted sends to each host.
func share(t *testing.T, dests []WeightedDestination, n uint64) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	for rnd := range n {
		d, ok := PickWeighted(dests, rnd)
		if !ok {
			t.Fatalf("PickWeighted(%d) found nothing", rnd)
		}
		got[d.Host]++
	}
	return got
}

func TestPickWeightedIsRelativeToTheSum(t *testing.T) {
	cases := []struct {
		name  string
		dests []WeightedDestination
		want  map[string]uint64 // out of 1000 consecutive random values
	}{
		{"90/10", []WeightedDestination{{Host: "v1", Weight: 90}, {Host: "v2", Weight: 10}}, map[string]uint64{"v1": 900, "v2": 100}},
		{"9/1 is the same split", []WeightedDestination{{Host: "v1", Weight: 9}, {Host: "v2", Weight: 1}}, map[string]uint64{"v1": 900, "v2": 100}},
		{"weights need not sum to 100", []WeightedDestination{{Host: "a", Weight: 1}, {Host: "b", Weight: 1}, {Host: "c", Weight: 2}}, map[string]uint64{"a": 250, "b": 250, "c": 500}},
		{"weight 0 gets nothing", []WeightedDestination{{Host: "a", Weight: 0}, {Host: "b", Weight: 5}}, map[string]uint64{"b": 1000}},
		{"single destination", []WeightedDestination{{Host: "only", Weight: 100}}, map[string]uint64{"only": 1000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := share(t, c.dests, 1000)
			if len(got) != len(c.want) {
				t.Fatalf("shares = %v, want %v", got, c.want)
			}
			for host, n := range c.want {
				if got[host] != n {
					t.Errorf("shares = %v, want %v", got, c.want)
				}
			}
		})
	}
	if _, ok := PickWeighted([]WeightedDestination{{Host: "a"}, {Host: "b"}}, 7); ok {
		t.Error("PickWeighted with every weight 0 picked a destination")
	}
	if _, ok := PickWeighted(nil, 7); ok {
		t.Error("PickWeighted with no destination picked one")
	}
}

func TestRewritePath(t *testing.T) {
	istio := func(match *StringMatch, value string) Route {
		return Route{Match: Match{Path: match}, Rewrite: &Rewrite{Path: &PathRewrite{Kind: RewritePrefix, Value: value}}}
	}
	gateway := func(prefix, value string) Route {
		return Route{Match: Match{Path: pathMatch(MatchSegmentPrefix, prefix)}, Rewrite: &Rewrite{Path: &PathRewrite{Kind: RewriteSegmentPrefix, Value: value}}}
	}
	cases := []struct {
		name  string
		route Route
		path  string
		want  string
	}{
		{"istio prefix", istio(pathMatch(MatchPrefix, "/api/users"), "/users"), "/api/users/42", "/users/42"},
		{"istio prefix is a plain string", istio(pathMatch(MatchPrefix, "/api/users"), "/users"), "/api/usersX", "/usersX"},
		{"istio exact replaces the whole path", istio(pathMatch(MatchExact, "/old"), "/new"), "/old", "/new"},
		{"istio regex replaces the whole path", istio(&StringMatch{Kind: MatchRegex, Regex: MustCompileRegex("/v[0-9]")}, "/v9"), "/v1", "/v9"},
		{"istio without path match replaces the leading slash", istio(nil, "/v2"), "/foo", "/v2foo"},
		{"full path", Route{Rewrite: &Rewrite{Path: &PathRewrite{Kind: RewriteFullPath, Value: "/fixed"}}}, "/a/b", "/fixed"},
		{"no rewrite", Route{}, "/a", "/a"},
		// Gateway API's ReplacePrefixMatch table.
		{"gw /foo/bar /foo -> /xyz", gateway("/foo", "/xyz"), "/foo/bar", "/xyz/bar"},
		{"gw /foo/bar /foo -> /xyz/", gateway("/foo", "/xyz/"), "/foo/bar", "/xyz/bar"},
		{"gw /foo/bar /foo/ -> /xyz", gateway("/foo/", "/xyz"), "/foo/bar", "/xyz/bar"},
		{"gw /foo/bar /foo/ -> /xyz/", gateway("/foo/", "/xyz/"), "/foo/bar", "/xyz/bar"},
		{"gw /foo /foo -> /xyz", gateway("/foo", "/xyz"), "/foo", "/xyz"},
		{"gw /foo/ /foo -> /xyz", gateway("/foo", "/xyz"), "/foo/", "/xyz/"},
		{"gw /foo/bar /foo -> empty", gateway("/foo", ""), "/foo/bar", "/bar"},
		{"gw /foo/ /foo -> empty", gateway("/foo", ""), "/foo/", "/"},
		{"gw /foo /foo -> empty", gateway("/foo", ""), "/foo", "/"},
		{"gw /foo/ /foo -> /", gateway("/foo", "/"), "/foo/", "/"},
		{"gw /foo /foo -> /", gateway("/foo", "/"), "/foo", "/"},
		{"gw root prefix", gateway("/", "/xyz"), "/bar", "/xyz/bar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.route.RewritePath(c.path); got != c.want {
				t.Errorf("RewritePath(%q) = %q, want %q", c.path, got, c.want)
			}
		})
	}
	redirect := Route{Match: Match{Path: pathMatch(MatchPrefix, "/old")}, Redirect: &Redirect{Path: &PathRewrite{Kind: RewriteFullPath, Value: "/new"}, StatusCode: 301}}
	if got := redirect.RedirectPath("/old/x"); got != "/new" {
		t.Errorf("RedirectPath = %q, want /new", got)
	}
}

func TestSelectVirtualHost(t *testing.T) {
	hosts := []VirtualHost{
		{Source: "any", Hosts: []string{"*"}, Gateways: []string{"default/gw"}},
		{Source: "wild", Hosts: []string{"*.example.com"}, Gateways: []string{"default/gw"}},
		{Source: "longer-wild", Hosts: []string{"*.api.example.com"}, Gateways: []string{"default/gw"}},
		{Source: "users", Hosts: []string{"user-service.microservices.svc.cluster.local"}, Gateways: []string{MeshGateway}},
		{Source: "users-newer", Hosts: []string{"user-service.microservices.svc.cluster.local"}, Gateways: []string{MeshGateway}},
		{Source: "orders-8080", Hosts: []string{"orders.shop.svc.cluster.local"}, Port: 8080, Gateways: []string{MeshGateway}},
	}
	cases := []struct {
		gateway, authority string
		port               uint32
		want               string
	}{
		{MeshGateway, "user-service.microservices.svc.cluster.local", 80, "users"},
		{MeshGateway, "User-Service.microservices.svc.cluster.local.:80", 80, "users"},
		{MeshGateway, "other.svc", 80, ""},
		{"default/gw", "user-service.microservices.svc.cluster.local", 80, "any"},
		{"default/gw", "www.example.com:8443", 8443, "wild"},
		{"default/gw", "v1.api.example.com", 80, "longer-wild"},
		{"default/gw", "example.com", 80, "any"},
		{"other/gw", "www.example.com", 80, ""},
		{MeshGateway, "orders.shop.svc.cluster.local", 8080, "orders-8080"},
		{MeshGateway, "orders.shop.svc.cluster.local", 80, ""},
	}
	for _, c := range cases {
		t.Run(c.gateway+" "+c.authority, func(t *testing.T) {
			got, ok := SelectVirtualHost(hosts, c.gateway, c.authority, c.port)
			switch {
			case c.want == "" && ok:
				t.Errorf("SelectVirtualHost = %q, want none", got.Source)
			case c.want != "" && !ok:
				t.Errorf("SelectVirtualHost found none, want %q", c.want)
			case ok && got.Source != c.want:
				t.Errorf("SelectVirtualHost = %q, want %q", got.Source, c.want)
			}
		})
	}
}

func TestRegexJSON(t *testing.T) {
	var r Regex
	if err := r.UnmarshalText([]byte("/a/[0-9]+")); err != nil {
		t.Fatal(err)
	}
	if !r.MatchString("/a/12") || r.MatchString("/a/12/") {
		t.Errorf("regex %q does not match whole strings", r.String())
	}
	if err := r.UnmarshalText([]byte("(")); err == nil {
		t.Error("UnmarshalText accepted an invalid expression")
	}
	text, _ := r.MarshalText()
	if string(text) != "/a/[0-9]+" {
		t.Errorf("MarshalText = %q", text)
	}
}
