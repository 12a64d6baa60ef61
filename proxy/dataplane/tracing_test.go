package dataplane

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/uber/jaeger-client-go"

	"github.com/lightmesh/lightmesh/proxy/tracing"
)

// Both proxies of a meshed request make a span: the server proxy's is a child of the client
// proxy's, and the application receives the server span's context, so its own calls continue
// the same trace.
func TestTracingAcrossTwoProxies(t *testing.T) {
	newTracer := func(name string) (*tracing.Tracer, *jaeger.InMemoryReporter) {
		rep := jaeger.NewInMemoryReporter()
		tr, err := tracing.NewWithReporter(tracing.Config{ServiceName: name, SamplerType: tracing.SamplerConst, SamplerParam: 1}, rep)
		if err != nil {
			t.Fatal(err)
		}
		return tr, rep
	}
	trA, repA := newTracer("client")
	trB, repB := newTracer("server")
	seen := make(chan string, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Uber-Trace-Id")
	}))
	defer app.Close()
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.Tracer = trA }, tweakB: func(o *Options) { o.Tracer = trB }})
	addr := app.Listener.Addr().String()
	m.serve(t, addr, serverSA)
	resp, err := m.httpClient(false).Get("http://" + addr + "/traced")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	appCtx, err := jaeger.ContextFromString(<-seen)
	if err != nil {
		t.Fatalf("the app did not receive a trace context: %v", err)
	}
	waitFor(t, "both proxies to report their span", func() bool { return repA.SpansSubmitted() == 1 && repB.SpansSubmitted() == 1 })
	client := repA.GetSpans()[0].(*jaeger.Span).SpanContext()
	server := repB.GetSpans()[0].(*jaeger.Span).SpanContext()
	if server.TraceID() != client.TraceID() || server.ParentID() != client.SpanID() {
		t.Errorf("the server span %v is not a child of the client span %v", server, client)
	}
	if appCtx.SpanID() != server.SpanID() || appCtx.TraceID() != client.TraceID() {
		t.Errorf("the app got context %v, want the server span %v", appCtx, server)
	}
	if tags := repB.GetSpans()[0].(*jaeger.Span).Tags(); tags["http.status_code"] != uint16(200) {
		t.Errorf("server span tags %v", tags)
	}
}
