package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSpiffeID(t *testing.T) {
	valid := []struct {
		in   string
		want SpiffeID
	}{
		{"spiffe://cluster.local/ns/microservices/sa/order-service", SpiffeID{"cluster.local", "microservices", "order-service"}},
		{"spiffe://example.org/ns/default/sa/default", SpiffeID{"example.org", "default", "default"}},
		{"spiffe://my_domain-1.example/ns/a.b/sa/A_b-c.9", SpiffeID{"my_domain-1.example", "a.b", "A_b-c.9"}},
		{"spiffe://localhost/ns/x/sa/y", SpiffeID{"localhost", "x", "y"}},
		{"spiffe://" + strings.Repeat("a", 255) + "/ns/x/sa/y", SpiffeID{strings.Repeat("a", 255), "x", "y"}},
	}
	for _, c := range valid {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseSpiffeID(c.in)
			if err != nil {
				t.Fatalf("ParseSpiffeID(%q): %v", c.in, err)
			}
			if got != c.want {
				t.Fatalf("ParseSpiffeID(%q) = %+v, want %+v", c.in, got, c.want)
			}
			if got.String() != c.in {
				t.Errorf("String() = %q, want %q", got.String(), c.in)
			}
			if got.URL().String() != c.in {
				t.Errorf("URL().String() = %q, want %q", got.URL().String(), c.in)
			}
		})
	}

	invalid := []struct{ name, in string }{
		{"empty", ""},
		{"scheme only", "spiffe://"},
		{"upper-case scheme", "SPIFFE://cluster.local/ns/a/sa/b"},
		{"other scheme", "https://cluster.local/ns/a/sa/b"},
		{"no scheme", "cluster.local/ns/a/sa/b"},
		{"upper-case trust domain", "spiffe://Cluster.local/ns/a/sa/b"},
		{"port", "spiffe://cluster.local:8080/ns/a/sa/b"},
		{"user info", "spiffe://user@cluster.local/ns/a/sa/b"},
		{"empty trust domain", "spiffe:///ns/a/sa/b"},
		{"trust domain too long", "spiffe://" + strings.Repeat("a", 256) + "/ns/x/sa/y"},
		{"no path", "spiffe://cluster.local"},
		{"root path", "spiffe://cluster.local/"},
		{"trailing slash", "spiffe://cluster.local/ns/a/sa/b/"},
		{"empty namespace", "spiffe://cluster.local/ns//sa/b"},
		{"dot segment", "spiffe://cluster.local/ns/./sa/b"},
		{"dot-dot segment", "spiffe://cluster.local/ns/../sa/b"},
		{"query", "spiffe://cluster.local/ns/a/sa/b?x=1"},
		{"fragment", "spiffe://cluster.local/ns/a/sa/b#f"},
		{"percent-encoded", "spiffe://cluster.local/ns/a%20b/sa/b"},
		{"non-ASCII", "spiffe://cluster.local/ns/ä/sa/b"},
		{"too short", "spiffe://cluster.local/ns/a/sa"},
		{"too long path", "spiffe://cluster.local/ns/a/sa/b/c"},
		{"wrong keyword", "spiffe://cluster.local/namespace/a/sa/b"},
		{"keywords swapped", "spiffe://cluster.local/sa/a/ns/b"},
		{"whole ID too long", "spiffe://cluster.local/ns/a/sa/" + strings.Repeat("b", 2048)},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSpiffeID(c.in)
			if !errors.Is(err, ErrInvalidSpiffeID) {
				t.Fatalf("ParseSpiffeID(%q) = %+v, %v; want an error wrapping ErrInvalidSpiffeID", c.in, got, err)
			}
		})
	}
}

func TestPrincipal(t *testing.T) {
	id, err := ParsePrincipal("cluster.local/ns/microservices/sa/order-service")
	if err != nil {
		t.Fatal(err)
	}
	want := SpiffeID{TrustDomain: "cluster.local", Namespace: "microservices", ServiceAccount: "order-service"}
	if id != want {
		t.Fatalf("ParsePrincipal = %+v, want %+v", id, want)
	}
	if got := id.Principal(); got != "cluster.local/ns/microservices/sa/order-service" {
		t.Errorf("Principal() = %q", got)
	}
	if got := id.String(); got != "spiffe://cluster.local/ns/microservices/sa/order-service" {
		t.Errorf("String() = %q", got)
	}

	for _, bad := range []string{
		"spiffe://cluster.local/ns/a/sa/b",
		"https://cluster.local/ns/a/sa/b",
		"",
		"*",
		"cluster.local/ns/a",
		"/ns/a/sa/b",
		"cluster.local/ns/a/sa/*",
	} {
		if got, err := ParsePrincipal(bad); !errors.Is(err, ErrInvalidSpiffeID) {
			t.Errorf("ParsePrincipal(%q) = %+v, %v; want an error wrapping ErrInvalidSpiffeID", bad, got, err)
		}
	}
}

func TestNewSpiffeID(t *testing.T) {
	id, err := NewSpiffeID(DefaultTrustDomain, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got := id.String(); got != "spiffe://cluster.local/ns/default/sa/web" {
		t.Errorf("String() = %q", got)
	}
	for _, c := range []struct{ trustDomain, namespace, serviceAccount string }{
		{"", "default", "web"},
		{"Cluster.Local", "default", "web"},
		{"cluster.local", "", "web"},
		{"cluster.local", "default", ""},
		{"cluster.local", "a/b", "web"},
		{"cluster.local", "..", "web"},
		{"cluster.local", "default", "web app"},
	} {
		if _, err := NewSpiffeID(c.trustDomain, c.namespace, c.serviceAccount); !errors.Is(err, ErrInvalidSpiffeID) {
			t.Errorf("NewSpiffeID(%q, %q, %q): err = %v, want ErrInvalidSpiffeID", c.trustDomain, c.namespace, c.serviceAccount, err)
		}
	}
	if !(SpiffeID{}).IsZero() || id.IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestFakeClock(t *testing.T) {
	clock := NewFakeClock(testNow)
	clock.Advance(90 * time.Second)
	if got := clock.Now().Sub(testNow).Seconds(); got != 90 {
		t.Errorf("after Advance(90s) the clock moved %vs", got)
	}
	clock.Set(testNow)
	if !clock.Now().Equal(testNow) {
		t.Errorf("after Set the clock reads %v", clock.Now())
	}
	var _ Clock = SystemClock{}
}
