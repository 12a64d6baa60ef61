package policy

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzNormalizePath: NormalizePath never panics; what it returns is a fixed point (normalising
// again changes nothing), starts with "/", has no empty, "." or ".." segment, and no escape
// of an unreserved character is left.
func FuzzNormalizePath(f *testing.F) {
	for _, seed := range []string{"/", "/api/users/42", "//api/users/42", "/api/%75sers/42", "/api/x/../users/42",
		"/a/./b/../../c", "/%2F/%2e%2E/x", "/a?b=../c", "/%zz", "/%4", "relative", "/a//b///c/", "/..", "/.%2e/x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizePath(raw)
		if err != nil {
			return
		}
		again, err := NormalizePath(got)
		if err != nil || again != got {
			t.Fatalf("NormalizePath(%q) = %q, which normalises to %q (%v)", raw, got, again, err)
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") {
			t.Fatalf("NormalizePath(%q) = %q: not an absolute path with single slashes", raw, got)
		}
		for _, seg := range strings.Split(got, "/")[1:] {
			if seg == "." || seg == ".." {
				t.Fatalf("NormalizePath(%q) = %q keeps a dot segment", raw, got)
			}
		}
	})
}

// FuzzAuthorize checks Authorize against an oracle written out by hand for the seed's
// policy plus a DENY policy: a request is allowed exactly when it is a GET or POST from
// order-service's principal to a normalised path under /api/users/ that does not start with
// /api/users/admin. Authorize never panics.
func FuzzAuthorize(f *testing.F) {
	policies := []AuthorizationPolicy{
		{Namespace: "microservices", Name: "user-service-policy", Action: ActionAllow, Rules: []Rule{{
			From: []Source{{Principals: []string{"cluster.local/ns/microservices/sa/order-service"}}},
			To:   []Operation{{Methods: []string{"GET", "POST"}, Paths: []string{"/api/users/*"}}},
		}}},
		{Namespace: "microservices", Name: "deny-admin", Action: ActionDeny, Rules: []Rule{{To: []Operation{{Paths: []string{"/api/users/admin*"}}}}}},
	}
	const orderService = "cluster.local/ns/microservices/sa/order-service"
	f.Add("GET", "/api/users/42", orderService)
	f.Add("GET", "/api/x/../users/admin", orderService)
	f.Add("PUT", "//api/%75sers/42", "cluster.local/ns/microservices/sa/traffic")
	f.Add("POST", "/api/users", "")
	f.Fuzz(func(t *testing.T, method, path, principal string) {
		norm, err := NormalizePath(path)
		if err != nil {
			return
		}
		got := Authorize(policies, &Request{Method: method, Path: norm, SourcePrincipal: principal, Header: http.Header{}}).Allowed
		want := (method == "GET" || method == "POST") && principal == orderService &&
			strings.HasPrefix(norm, "/api/users/") && !strings.HasPrefix(norm, "/api/users/admin")
		if got != want {
			t.Fatalf("%s %q (normalised %q) from %q: allowed %v, want %v", method, path, norm, principal, got, want)
		}
	})
}
