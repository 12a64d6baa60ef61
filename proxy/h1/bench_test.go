package h1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// typicalRequest is what an application sends through the proxy.
const typicalRequest = "GET /api/users/42?fields=name,email HTTP/1.1\r\n" +
	"Host: users.default.svc.cluster.local:8080\r\n" +
	"User-Agent: Go-http-client/1.1\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl\r\n" +
	"X-Request-Id: 6f1c2a3e-8d4b-4e0f-9a1b-2c3d4e5f6a7b\r\n" +
	"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
	"\r\n"

// BenchmarkReadRequest measures the head checks and parsing of a typical request.
func BenchmarkReadRequest(b *testing.B) {
	s := newTestServer(b, http.NotFoundHandler(), nil)
	raw := []byte(typicalRequest)
	in := bytes.NewReader(raw)
	br := bufio.NewReaderSize(in, s.opts.MaxHeaderBytes+512)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		in.Reset(raw)
		br.Reset(in)
		req, _, herr := s.readRequest(br)
		if herr != nil || req.Host != "users.default.svc.cluster.local:8080" {
			b.Fatal(herr)
		}
	}
}

// loopConn replays a request n times on reads, then reports EOF; writes are discarded.
type loopConn struct {
	memConn
	req  []byte
	left int
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && c.left > 0 {
		m := copy(p[n:], c.req[c.off:])
		n += m
		if c.off += m; c.off == len(c.req) {
			c.off = 0
			c.left--
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *loopConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkServeConn measures a request on a kept-alive connection, from its bytes to the
// handler's answer written: a GET, and a POST with a 1 KiB chunked body read by the handler.
func BenchmarkServeConn(b *testing.B) {
	for _, bc := range []struct{ name, req string }{
		{"get", typicalRequest},
		{"chunked-post-1KiB", strings.TrimSuffix(strings.Replace(typicalRequest, "GET", "POST", 1), "\r\n") +
			"Transfer-Encoding: chunked\r\n\r\n400\r\n" + strings.Repeat("a", 1024) + "\r\n0\r\n\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			served := 0
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served++
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Length", "2")
				_, _ = io.WriteString(w, "ok")
			})
			s := newTestServer(b, h, func(o *Options) { o.IdleTimeout = time.Minute })
			b.SetBytes(int64(len(bc.req)))
			b.ReportAllocs()
			b.ResetTimer()
			s.ServeConn(context.Background(), &loopConn{req: []byte(bc.req), left: b.N})
			if served != b.N {
				b.Fatalf("served %d of %d requests", served, b.N)
			}
		})
	}
}

var _ net.Conn = (*loopConn)(nil)
