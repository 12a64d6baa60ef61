package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRouteAndTCP(t *testing.T) {
	r := New()
	l := Labels{Direction: "outbound", Authority: "web:80", TLS: TLSTrue, ServerID: "spiffe://cluster.local/ns/a/sa/b"}
	rt := r.Route(l)
	if r.Route(l) != rt {
		t.Error("the route was not cached")
	}
	rt.Request()
	rt.Request()
	rt.Response(200, false, 3*time.Millisecond)
	rt.Response(503, true, 700*time.Millisecond)
	tcp := r.TCP(TCPLabels{Labels: l, Peer: "dst"})
	tcp.Open()
	tcp.Read(10)
	tcp.Write(20)
	tcp.Open()
	tcp.Close()

	out := map[string]map[string]string{"outbound": {"direction": "outbound", "authority": "web:80", "tls": "true"}}["outbound"]
	for _, c := range []struct {
		name  string
		extra map[string]string
		want  float64
	}{
		{"request_total", nil, 2},
		{"response_total", map[string]string{"status_code": "200", "classification": "success"}, 1},
		{"response_total", map[string]string{"status_code": "503", "classification": "failure"}, 1},
		{"response_total", map[string]string{"status_code": "503", "classification": "success"}, 0},
		{"response_latency_ms", nil, 2},
		{"tcp_open_total", map[string]string{"peer": "dst"}, 2},
		{"tcp_close_total", map[string]string{"peer": "dst"}, 1},
		{"tcp_open_connections", map[string]string{"peer": "dst"}, 1},
		{"tcp_read_bytes_total", nil, 10},
		{"tcp_write_bytes_total", nil, 20},
	} {
		match := map[string]string{}
		for k, v := range out {
			match[k] = v
		}
		for k, v := range c.extra {
			match[k] = v
		}
		if got := r.Sample(c.name, match); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.extra, got, c.want)
		}
	}
	if got := r.Bucket("response_latency_ms", out, 5); got != 1 {
		t.Errorf("le=5 bucket = %d, want 1", got)
	}
	if got := r.Bucket("response_latency_ms", out, 1000); got != 2 {
		t.Errorf("le=1000 bucket = %d, want 2", got)
	}

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`request_total{authority="web:80",client_id="",direction="outbound",server_id="spiffe://cluster.local/ns/a/sa/b",tls="true"} 2`,
		`response_latency_ms_bucket{authority="web:80",client_id="",direction="outbound",server_id="spiffe://cluster.local/ns/a/sa/b",status_code="503",tls="true",le="500"} 0`,
		`response_latency_ms_bucket{authority="web:80",client_id="",direction="outbound",server_id="spiffe://cluster.local/ns/a/sa/b",status_code="503",tls="true",le="1000"} 1`,
		"process_",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func BenchmarkRouteResponse(b *testing.B) {
	r := New()
	l := Labels{Direction: "inbound", Authority: "web.shop.svc.cluster.local:80", TLS: TLSTrue, ClientID: "spiffe://cluster.local/ns/a/sa/b"}
	b.ReportAllocs()
	for b.Loop() {
		rt := r.Route(l)
		rt.Request()
		rt.Response(200, false, time.Millisecond)
	}
}
