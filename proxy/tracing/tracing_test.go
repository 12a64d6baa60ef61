package tracing

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uber/jaeger-client-go"
)

func newTestTracer(t *testing.T, cfg Config) (*Tracer, *jaeger.InMemoryReporter) {
	t.Helper()
	if cfg.ServiceName == "" {
		cfg.ServiceName = "test.proxy"
	}
	if cfg.SamplerType == "" {
		cfg.SamplerType, cfg.SamplerParam = SamplerConst, 1
	}
	reporter := jaeger.NewInMemoryReporter()
	tr, err := NewWithReporter(cfg, reporter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, reporter
}

func spanContext(t *testing.T, s *Span) jaeger.SpanContext {
	t.Helper()
	return s.span.Context().(jaeger.SpanContext)
}

// Two hops: the client's proxy starts a trace for a request without context; the server's
// proxy continues it from the headers the first wrote, as a child.
func TestTwoHopsMakeOneTrace(t *testing.T) {
	client, reported := newTestTracer(t, Config{ServiceName: "client"})
	server, _ := newTestTracer(t, Config{ServiceName: "server"})
	r := httptest.NewRequest(http.MethodGet, "http://api/users/1", nil)
	out := client.Start(r, "outbound", "api.shop.svc.cluster.local:80")
	for _, h := range []string{"Uber-Trace-Id", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled", "Traceparent"} {
		if r.Header.Get(h) == "" {
			t.Errorf("the forwarded request lacks %s: %v", h, r.Header)
		}
	}
	in := server.Start(r, "inbound", "api.shop.svc.cluster.local:80")
	outCtx, inCtx := spanContext(t, out), spanContext(t, in)
	if inCtx.TraceID() != outCtx.TraceID() || inCtx.ParentID() != outCtx.SpanID() {
		t.Errorf("the server span %v is not a child of the client span %v", inCtx, outCtx)
	}
	if !strings.Contains(r.Header.Get("Traceparent"), inCtx.SpanID().String()) {
		t.Errorf("the request does not carry the server span onwards: traceparent %q", r.Header.Get("Traceparent"))
	}
	in.Finish(200, false)
	out.Finish(503, true)
	spans := reported.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("the client tracer reported %d spans, want 1", len(spans))
	}
	tags := spans[0].(*jaeger.Span).Tags()
	if tags["http.status_code"] != uint16(503) || tags["error"] != true || fmt.Sprint(tags["span.kind"]) != "client" || tags["http.method"] != "GET" {
		t.Errorf("tags %v", tags)
	}
}

func TestExtractEachFormat(t *testing.T) {
	tr, _ := newTestTracer(t, Config{})
	for name, headers := range map[string]map[string]string{
		"jaeger": {"Uber-Trace-Id": "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"},
		"b3":     {"X-B3-Traceid": "4bf92f3577b34da6a3ce929d0e0e4736", "X-B3-Spanid": "00f067aa0ba902b7", "X-B3-Sampled": "1"},
		"w3c":    {"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://api/", nil)
		for k, v := range headers {
			r.Header.Set(k, v)
		}
		sc := spanContext(t, tr.Start(r, "inbound", "api:80"))
		if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.ParentID().String() != "00f067aa0ba902b7" {
			t.Errorf("%s: span %v is not a child of the incoming context", name, sc)
		}
		if got := r.Header.Get("Traceparent"); !strings.HasPrefix(got, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || !strings.HasSuffix(got, "-01") {
			t.Errorf("%s: traceparent written onwards %q", name, got)
		}
	}
	// Corrupt or absent contexts start a new trace.
	for _, tp := range []string{"", "00-0000-00f067aa0ba902b7-01", "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		r := httptest.NewRequest(http.MethodGet, "http://api/", nil)
		if tp != "" {
			r.Header.Set("Traceparent", tp)
		}
		if sc := spanContext(t, tr.Start(r, "outbound", "api:80")); sc.ParentID() != 0 {
			t.Errorf("traceparent %q: the span has parent %v, want a new trace", tp, sc.ParentID())
		}
	}
}

func TestSamplerAndNil(t *testing.T) {
	tr, reported := newTestTracer(t, Config{SamplerType: SamplerConst, SamplerParam: 0})
	r := httptest.NewRequest(http.MethodGet, "http://api/", nil)
	tr.Start(r, "outbound", "api:80").Finish(200, false)
	if n := len(reported.GetSpans()); n != 0 {
		t.Errorf("const 0 reported %d spans", n)
	}
	if !strings.HasSuffix(r.Header.Get("Traceparent"), "-00") {
		t.Errorf("an unsampled trace is propagated as sampled: %q", r.Header.Get("Traceparent"))
	}
	var none *Tracer
	none.Start(r, "inbound", "x").Finish(200, false) // a nil tracer does nothing
	if err := none.Close(); err != nil {
		t.Error(err)
	}
}

func TestValidate(t *testing.T) {
	good := Config{ServiceName: "p", SamplerType: SamplerProbabilistic, SamplerParam: 0.5, LocalAgentHostPort: "jaeger-agent:6831"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Config){
		"no name":     func(c *Config) { c.ServiceName = "" },
		"sampler":     func(c *Config) { c.SamplerType = "remote" },
		"probability": func(c *Config) { c.SamplerParam = 2 },
		"const param": func(c *Config) { c.SamplerType, c.SamplerParam = SamplerConst, 0.5 },
		"rate":        func(c *Config) { c.SamplerType, c.SamplerParam = SamplerRateLimiting, 0 },
		"agent":       func(c *Config) { c.LocalAgentHostPort = "jaeger-agent" },
	} {
		c := good
		change(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}
