package tap

import (
	"net/http"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	for _, bad := range []string{"max=0", "max=10001", "duration=11m", "duration=-1s", "direction=sideways", "path-prefix=api"} {
		if _, err := ParseQuery(mustQuery(t, bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	q, err := ParseQuery(mustQuery(t, "max=5&duration=1m&method=post&authority=web:80&direction=outbound&path-prefix=/a"))
	if err != nil {
		t.Fatal(err)
	}
	want := Query{Max: 5, Duration: time.Minute, Filter: Filter{PathPrefix: "/a", Method: "POST", Authority: "web:80", Direction: Outbound}}
	if q != want {
		t.Errorf("got %+v, want %+v", q, want)
	}
	back, err := ParseQuery(q.Values())
	if err != nil || back != q {
		t.Errorf("Values round trip: %+v, %v", back, err)
	}
	if d, _ := ParseQuery(nil); d.Max != DefaultMax || d.Duration != DefaultDuration {
		t.Errorf("defaults %+v", d)
	}
}

func TestFilterMatch(t *testing.T) {
	cases := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Direction: Inbound}, true},
		{Filter{Direction: Outbound}, false},
		{Filter{Method: "get"}, true},
		{Filter{Method: "POST"}, false},
		{Filter{PathPrefix: "/api/us"}, true},
		{Filter{PathPrefix: "/api/users/"}, false},
		{Filter{Authority: "web.shop:80"}, true},
		{Filter{Authority: "web.shop"}, true},
		{Filter{Authority: "web.shop:81"}, false},
		{Filter{Authority: "web"}, false},
	}
	for _, tc := range cases {
		if got := tc.f.Match(Inbound, "GET", "web.shop:80", "/api/users"); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.f, got, tc.want)
		}
	}
}

func mustQuery(t *testing.T, s string) map[string][]string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "/?"+s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req.URL.Query()
}
