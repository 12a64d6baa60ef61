package dataplane

import (
	"net/http"
	"reflect"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":        {"keep-alive, X-Secret", "x-other"},
		"X-Secret":          {"1"},
		"X-Other":           {"2"},
		"Keep-Alive":        {"timeout=5"},
		"Proxy-Connection":  {"keep-alive"},
		"Transfer-Encoding": {"chunked"},
		"Upgrade":           {"h2c"},
		"Http2-Settings":    {"AAAA"},
		"Te":                {"trailers"},
		"Trailer":           {"X-T"},
		"X-Kept":            {"yes"},
	}
	removeHopByHop(h)
	want := http.Header{"X-Kept": {"yes"}, "Te": {"trailers"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %v, want %v", h, want)
	}
	h = http.Header{"Te": {"gzip"}}
	removeHopByHop(h)
	if len(h) != 0 {
		t.Errorf("TE other than trailers kept: %v", h)
	}
}

func TestRemoveMeshHeaders(t *testing.T) {
	h := http.Header{ClientIDHeader: {"x"}, OrigProtoHeader: {"y"}, "Lightmesh-Anything": {"z"}, "X-Lightmesh": {"kept"}}
	removeMeshHeaders(h)
	if !reflect.DeepEqual(h, http.Header{"X-Lightmesh": {"kept"}}) {
		t.Errorf("got %v", h)
	}
}

func TestUpgradeOf(t *testing.T) {
	for _, tc := range []struct {
		conn, upgrade, want string
		minor               int
	}{
		{"Upgrade", "websocket", "websocket", 1},
		{"keep-alive, upgrade", "websocket", "websocket", 1},
		{"Upgrade", "h2c", "", 1},
		{"Upgrade, HTTP2-Settings", "h2c, websocket", "websocket", 1},
		{"keep-alive", "websocket", "", 1},
		{"Upgrade", "websocket", "", 0},
	} {
		r := &http.Request{ProtoMajor: 1, ProtoMinor: tc.minor, Header: http.Header{"Connection": {tc.conn}, "Upgrade": {tc.upgrade}}}
		if got := upgradeOf(r); got != tc.want {
			t.Errorf("Connection %q Upgrade %q HTTP/1.%d: %q, want %q", tc.conn, tc.upgrade, tc.minor, got, tc.want)
		}
	}
}

func BenchmarkRemoveHopByHop(b *testing.B) {
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}, "Content-Type": {"application/json"}}
	b.ReportAllocs()
	for b.Loop() {
		h["Connection"] = []string{"keep-alive"}
		removeHopByHop(h)
		removeMeshHeaders(h)
	}
}
