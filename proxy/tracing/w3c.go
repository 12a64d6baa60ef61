package tracing

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/opentracing/opentracing-go"
	"github.com/uber/jaeger-client-go"
)

// traceContextPropagator reads and writes W3C Trace Context's traceparent header
// (version 00: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>").
type traceContextPropagator struct{}

const traceparentHeader = "Traceparent"

func (traceContextPropagator) Inject(sc jaeger.SpanContext, carrier any) error {
	h, ok := headersOf(carrier)
	if !ok {
		return opentracing.ErrInvalidCarrier
	}
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	tid := sc.TraceID()
	h.Set(traceparentHeader, fmt.Sprintf("00-%016x%016x-%016x-%s", tid.High, tid.Low, uint64(sc.SpanID()), flags))
	return nil
}

func (traceContextPropagator) Extract(carrier any) (jaeger.SpanContext, error) {
	h, ok := headersOf(carrier)
	if !ok {
		return jaeger.SpanContext{}, opentracing.ErrInvalidCarrier
	}
	value := strings.TrimSpace(h.Get(traceparentHeader))
	if value == "" {
		return jaeger.SpanContext{}, opentracing.ErrSpanContextNotFound
	}
	parts := strings.Split(value, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return jaeger.SpanContext{}, opentracing.ErrSpanContextCorrupted
	}
	for _, p := range parts[:4] {
		if _, err := hex.DecodeString(p); err != nil || strings.ToLower(p) != p {
			return jaeger.SpanContext{}, opentracing.ErrSpanContextCorrupted
		}
	}
	tid, err := jaeger.TraceIDFromString(parts[1])
	if err != nil || !tid.IsValid() {
		return jaeger.SpanContext{}, opentracing.ErrSpanContextCorrupted
	}
	sid, err := jaeger.SpanIDFromString(parts[2])
	if err != nil || sid == 0 {
		return jaeger.SpanContext{}, opentracing.ErrSpanContextCorrupted
	}
	flags, _ := hex.DecodeString(parts[3])
	return jaeger.NewSpanContext(tid, sid, 0, flags[0]&1 == 1, nil), nil
}

func headersOf(carrier any) (http.Header, bool) {
	switch c := carrier.(type) {
	case opentracing.HTTPHeadersCarrier:
		return http.Header(c), true
	case http.Header:
		return c, true
	}
	return nil, false
}
