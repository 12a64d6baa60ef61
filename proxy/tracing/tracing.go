// Package tracing makes the proxy's spans: one per request it handles, a child of the
// context the request carries (Jaeger's uber-trace-id, Zipkin's B3 or W3C traceparent), with
// the new span's context written back into the request in all three forms, so the next hop
// (the peer proxy or the application) continues the same trace. Spans go to a Jaeger agent
// over UDP (jaeger-client-go), configured with the seed's Jaeger settings: sampler type and
// param, reporter localAgentHostPort and logSpans.
package tracing

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"github.com/uber/jaeger-client-go"
	"github.com/uber/jaeger-client-go/zipkin"
)

// Sampler types, as Jaeger's configuration names them.
const (
	SamplerConst         = "const"
	SamplerProbabilistic = "probabilistic"
	SamplerRateLimiting  = "ratelimiting"
)

// Config is the seed's Jaeger settings.
type Config struct {
	// ServiceName names the proxy's spans' process (for example "order-service.microservices").
	ServiceName string
	// SamplerType is const (param 1 samples every trace, 0 none), probabilistic (param is the
	// probability) or ratelimiting (param is traces per second).
	SamplerType  string
	SamplerParam float64
	// LocalAgentHostPort is the Jaeger agent's UDP address (host:6831).
	LocalAgentHostPort string
	// LogSpans logs every reported span.
	LogSpans bool
	// FlushInterval is how often buffered spans are sent (1 s when zero).
	FlushInterval time.Duration
}

// Validate checks c and says what to fix.
func (c Config) Validate() error {
	if c.ServiceName == "" {
		return errors.New("tracing: no service name")
	}
	switch c.SamplerType {
	case SamplerConst:
		if c.SamplerParam != 0 && c.SamplerParam != 1 {
			return fmt.Errorf("tracing: const sampler param %v: give 1 (sample every trace) or 0 (none)", c.SamplerParam)
		}
	case SamplerProbabilistic:
		if c.SamplerParam < 0 || c.SamplerParam > 1 {
			return fmt.Errorf("tracing: probabilistic sampler param %v: give a probability from 0 to 1", c.SamplerParam)
		}
	case SamplerRateLimiting:
		if c.SamplerParam <= 0 {
			return fmt.Errorf("tracing: ratelimiting sampler param %v: give traces per second above 0", c.SamplerParam)
		}
	default:
		return fmt.Errorf("tracing: sampler type %q: use const, probabilistic or ratelimiting", c.SamplerType)
	}
	if _, _, err := net.SplitHostPort(c.LocalAgentHostPort); err != nil {
		return fmt.Errorf("tracing: agent address %q: %w; write host:port, such as jaeger-agent:6831", c.LocalAgentHostPort, err)
	}
	return nil
}

// Tracer makes and reports the proxy's spans. A nil *Tracer does nothing.
type Tracer struct {
	tracer opentracing.Tracer
	closer io.Closer
}

// New starts a tracer that reports to the agent of cfg.
func New(cfg Config, logger *slog.Logger) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	transport, err := jaeger.NewUDPTransport(cfg.LocalAgentHostPort, 0)
	if err != nil {
		return nil, fmt.Errorf("tracing: the agent at %s: %w", cfg.LocalAgentHostPort, err)
	}
	interval := cfg.FlushInterval
	if interval == 0 {
		interval = time.Second
	}
	reporterOpts := []jaeger.ReporterOption{jaeger.ReporterOptions.BufferFlushInterval(interval)}
	reporter := jaeger.NewRemoteReporter(transport, reporterOpts...)
	if cfg.LogSpans {
		reporter = jaeger.NewCompositeReporter(reporter, jaeger.NewLoggingReporter(slogLogger{logger}))
	}
	return NewWithReporter(cfg, reporter)
}

// NewWithReporter is New with a reporter of the caller's (tests use jaeger.NewInMemoryReporter).
func NewWithReporter(cfg Config, reporter jaeger.Reporter) (*Tracer, error) {
	var sampler jaeger.Sampler
	var err error
	switch cfg.SamplerType {
	case SamplerConst:
		sampler = jaeger.NewConstSampler(cfg.SamplerParam == 1)
	case SamplerProbabilistic:
		sampler, err = jaeger.NewProbabilisticSampler(cfg.SamplerParam)
	case SamplerRateLimiting:
		sampler = jaeger.NewRateLimitingSampler(cfg.SamplerParam)
	default:
		err = fmt.Errorf("tracing: sampler type %q: use const, probabilistic or ratelimiting", cfg.SamplerType)
	}
	if err != nil {
		return nil, err
	}
	b3 := zipkin.NewZipkinB3HTTPHeaderPropagator()
	w3c := traceContextPropagator{}
	tracer, closer := jaeger.NewTracer(cfg.ServiceName, sampler, reporter,
		jaeger.TracerOptions.Injector(opentracing.HTTPHeaders, multiInjector{jaegerTextMap(), b3, w3c}),
		jaeger.TracerOptions.Extractor(opentracing.HTTPHeaders, firstExtractor{jaegerTextMap(), b3, w3c}),
		jaeger.TracerOptions.Gen128Bit(true),
	)
	return &Tracer{tracer: tracer, closer: closer}, nil
}

// Close flushes the spans not reported yet and stops the tracer.
func (t *Tracer) Close() error {
	if t == nil {
		return nil
	}
	return t.closer.Close()
}

// Span is one request's span; a nil *Span does nothing.
type Span struct {
	span opentracing.Span
}

// Start starts the span of r, handled in direction ("inbound" or "outbound"), as a child of
// the context r carries, and writes the new span's context into r's header. authority and
// peer describe where the request goes or comes from.
func (t *Tracer) Start(r *http.Request, direction, authority string) *Span {
	if t == nil {
		return nil
	}
	carrier := opentracing.HTTPHeadersCarrier(r.Header)
	var opts []opentracing.StartSpanOption
	if parent, err := t.tracer.Extract(opentracing.HTTPHeaders, carrier); err == nil {
		opts = append(opts, opentracing.ChildOf(parent))
	}
	span := t.tracer.StartSpan(r.Method+" "+authority, opts...)
	if direction == "inbound" {
		ext.SpanKindRPCServer.Set(span)
	} else {
		ext.SpanKindRPCClient.Set(span)
	}
	ext.HTTPMethod.Set(span, r.Method)
	ext.HTTPUrl.Set(span, r.URL.Path)
	ext.PeerHostname.Set(span, authority)
	span.SetTag("direction", direction)
	clearPropagation(r.Header)
	_ = t.tracer.Inject(span.Context(), opentracing.HTTPHeaders, carrier)
	return &Span{span: span}
}

// Finish records the response status (0: no response) and ends the span.
func (s *Span) Finish(status int, failed bool) {
	if s == nil {
		return
	}
	if status != 0 {
		ext.HTTPStatusCode.Set(s.span, uint16(status))
	}
	if failed {
		ext.Error.Set(s.span, true)
	}
	s.span.Finish()
}

// TraceID returns the span's trace ID in hex (for logs and tests).
func (s *Span) TraceID() string {
	if s == nil {
		return ""
	}
	if sc, ok := s.span.Context().(jaeger.SpanContext); ok {
		return sc.TraceID().String()
	}
	return ""
}

// propagationHeaders are every header a propagation format writes.
var propagationHeaders = []string{
	jaeger.TraceContextHeaderName, "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags", "B3",
	"Traceparent", "Tracestate",
}

// clearPropagation removes the incoming context before the child's is written, so no stale
// form survives next to the new ones (baggage stays).
func clearPropagation(h http.Header) {
	for _, name := range propagationHeaders {
		h.Del(name)
	}
}

func jaegerTextMap() *jaeger.TextMapPropagator {
	return jaeger.NewHTTPHeaderPropagator(&jaeger.HeadersConfig{
		TraceContextHeaderName:   jaeger.TraceContextHeaderName,
		TraceBaggageHeaderPrefix: jaeger.TraceBaggageHeaderPrefix,
		JaegerDebugHeader:        jaeger.JaegerDebugHeader,
		JaegerBaggageHeader:      jaeger.JaegerBaggageHeader,
	}, *jaeger.NewNullMetrics())
}

// multiInjector writes a context in every format.
type multiInjector []jaeger.Injector

func (m multiInjector) Inject(sc jaeger.SpanContext, carrier any) error {
	var errs []error
	for _, inj := range m {
		errs = append(errs, inj.Inject(sc, carrier))
	}
	return errors.Join(errs...)
}

// firstExtractor reads the first format present.
type firstExtractor []jaeger.Extractor

func (f firstExtractor) Extract(carrier any) (jaeger.SpanContext, error) {
	for _, ex := range f {
		sc, err := ex.Extract(carrier)
		if err == nil && sc.IsValid() {
			return sc, nil
		}
	}
	return jaeger.SpanContext{}, opentracing.ErrSpanContextNotFound
}

// slogLogger adapts slog to jaeger.Logger for logSpans.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Error(msg string) { s.l.Error("tracing: " + msg) }
func (s slogLogger) Infof(msg string, args ...any) {
	s.l.Info("span", "span", fmt.Sprintf(msg, args...))
}
func (s slogLogger) Debugf(msg string, args ...any) { s.l.Debug(fmt.Sprintf(msg, args...)) }
func (s slogLogger) String() string                 { return "slog" }
