package dataplane

import (
	"net/http"
	"testing"
)

// The Content-Length copied from upstream is kept only when it is exactly the canonical
// decimal of the length the proxy sends; anything else is written again.
func TestHasContentLength(t *testing.T) {
	for _, tc := range []struct {
		values []string
		n      int64
		want   bool
	}{
		{[]string{"5"}, 5, true},
		{[]string{"0"}, 0, true},
		{[]string{"1048576"}, 1 << 20, true},
		{[]string{"6"}, 5, false},
		{[]string{"005"}, 5, false},
		{[]string{"+5"}, 5, false},
		{[]string{" 5"}, 5, false},
		{[]string{"5", "5"}, 5, false},
		{[]string{""}, 0, false},
		{nil, 0, false},
		{[]string{"99999999999999999999"}, 5, false},
	} {
		h := http.Header{}
		if tc.values != nil {
			h["Content-Length"] = tc.values
		}
		if got := hasContentLength(h, tc.n); got != tc.want {
			t.Errorf("Content-Length %q, length %d: %v, want %v", tc.values, tc.n, got, tc.want)
		}
	}
}
