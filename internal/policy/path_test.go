package policy

import (
	"errors"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		raw, want string
	}{
		{"/api/users/42", "/api/users/42"},
		{"//api/users/42", "/api/users/42"},
		{"/api//users///42", "/api/users/42"},
		{"/api/%75sers/42", "/api/users/42"},
		{"/api/x/../users/42", "/api/users/42"},
		{"/api/./users/42", "/api/users/42"},
		{"/api/users/42?x=1&y=2", "/api/users/42"},
		{"/api/users/42#frag", "/api/users/42"},
		{"/%41%7a%30-%2E_%7E", "/Az0-._~"},
		{"/api/%2e%2e/users", "/users"},  // encoded dots are dots
		{"/api%2Fusers", "/api%2Fusers"}, // encoded slash kept, not a separator
		{"/api%2fusers/../x", "/x"},      // "api%2fusers" is one segment
		{"/a%20b", "/a%20b"},             // reserved or other escapes kept as written
		{"/a%3Fb", "/a%3Fb"},             // an encoded "?" is not a query
		{"/", "/"},
		{"//", "/"},
		{"/..", "/"},
		{"/../../a", "/a"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/a/", "/a/"},
		{"/a//", "/a/"},
		{"/a//../b", "/a/b"}, // dot segments first, then merged slashes, as Envoy
		{"/.well-known/x", "/.well-known/x"},
		{"/a/..b/c", "/a/..b/c"},
		{"/ünïcode", "/ünïcode"},
	}
	for _, c := range cases {
		t.Run(c.raw, func(t *testing.T) {
			got, err := NormalizePath(c.raw)
			if err != nil {
				t.Fatalf("NormalizePath(%q): %v", c.raw, err)
			}
			if got != c.want {
				t.Errorf("NormalizePath(%q) = %q, want %q", c.raw, got, c.want)
			}
			again, err := NormalizePath(got)
			if err != nil || again != got {
				t.Errorf("NormalizePath is not idempotent: %q -> %q (%v)", got, again, err)
			}
		})
	}

	invalid := []string{"", "api/users", "?x=1", "/a%zz", "/a%4", "/a%", "/a%G0", "/a b", "/a\x00b", "/a\tb", "/a\x7f", "*"}
	for _, raw := range invalid {
		t.Run("invalid "+raw, func(t *testing.T) {
			got, err := NormalizePath(raw)
			if err == nil {
				t.Fatalf("NormalizePath(%q) = %q, want an error", raw, got)
			}
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("error %v does not wrap ErrInvalidPath", err)
			}
		})
	}
}

func TestNormalizePathDoesNotAllocateForNormalPaths(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := NormalizePath("/api/users/42?x=1"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("NormalizePath of a normal path allocated %v times", allocs)
	}
}
