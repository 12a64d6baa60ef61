package dataplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// benchHTTP sends GETs with a 1 KiB POST body through the mesh and reports allocations per
// request for the whole process (client, proxies and server together).
func benchHTTP(b *testing.B, id string, h2 bool) {
	m := newMesh(b, meshConfig{})
	app := startApp(b)
	m.serve(b, app.addr, id)
	client := m.httpClient(h2)
	body := strings.Repeat("x", 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Post("http://"+app.addr+"/bench", "text/plain", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkHTTP1MeshedMTLS(b *testing.B) { benchHTTP(b, serverSA, false) }
func BenchmarkHTTP2MeshedMTLS(b *testing.B) { benchHTTP(b, serverSA, true) }
func BenchmarkHTTP1Plaintext(b *testing.B)  { benchHTTP(b, "", false) }

// BenchmarkOpaqueTCP moves 64 KiB through two proxies and back per iteration.
func BenchmarkOpaqueTCP(b *testing.B) {
	for _, tc := range []struct {
		name string
		id   string
	}{{"mTLS", serverSA}, {"splice", ""}} {
		b.Run(tc.name, func(b *testing.B) {
			addr := tcpServer(b, func(c net.Conn) { _, _ = io.Copy(c, c) })
			m := newMesh(b, meshConfig{opaquePorts: []uint16{netipAddr(b, addr).Port()}})
			m.serve(b, addr, tc.id)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := m.dial(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			back := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				go func() { _, _ = c.Write(buf) }()
				if _, err := io.ReadFull(c, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChainOverhead measures the handler chain (sanitize, resolve, observe) on an
// in-memory exchange, without the network.
func BenchmarkChainOverhead(b *testing.B) {
	m := newMesh(b, meshConfig{})
	p := m.a
	h := Chain(HandlerFunc(func(ex *Exchange) { ex.Status = 200 }), p.sanitize(outbound), p.resolve, p.observe)
	ci := &connInfo{direction: outbound, origDst: netipAddr(b, "10.0.0.1:80"), tls: "no_identity"}
	req, _ := http.NewRequestWithContext(withConnInfo(context.Background(), ci), http.MethodGet, "http://10.0.0.1:80/api", nil)
	w := &nopWriter{h: http.Header{}}
	header := http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}, "Connection": {"keep-alive"}}
	req.Host = "10.0.0.1:80"
	b.ReportAllocs()
	for b.Loop() {
		req.Header = header
		h.ServeHTTP(w, req)
		header["Connection"] = []string{"keep-alive"}
	}
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkHTTP1Routed is BenchmarkHTTP1Plaintext's request under an outbound policy: a
// route table of three routes (the last matches) and a DestinationRule with a connection
// pool and outlier detection, so the policy path's own cost shows.
func BenchmarkHTTP1Routed(b *testing.B) {
	pol := discovery.NewStaticPolicy()
	m := newMesh(b, meshConfig{plaintext: true, tweakA: func(o *Options) { o.Policy = pol }})
	app := startApp(b)
	const svc = "bench.default.svc.cluster.local"
	if err := m.table.Add(svc+":80", discovery.Endpoint{Addr: netipAddr(b, app.addr)}); err != nil {
		b.Fatal(err)
	}
	dest := []policy.WeightedDestination{{Host: svc, Port: 80, Weight: 1}}
	pol.SetOutbound(svc+":80", &policy.OutboundPolicy{
		VirtualHost: &policy.VirtualHost{Hosts: []string{svc}, Gateways: []string{policy.MeshGateway}, Routes: []policy.Route{
			{Match: policy.Match{Path: &policy.StringMatch{Kind: policy.MatchPrefix, Value: "/api"}}, Destinations: dest},
			{Match: policy.Match{Headers: []policy.HeaderMatch{{Name: "X-Canary", Value: policy.StringMatch{Kind: policy.MatchPresent}}}}, Destinations: dest},
			{Destinations: dest, Retries: &policy.RetryPolicy{Attempts: 2, RetryOn: []string{"connect-failure"}}},
		}},
		Destinations: []policy.Destination{{Host: svc, TrafficPolicy: policy.TrafficPolicy{
			ConnectionPool:   &policy.ConnectionPool{MaxConnections: 100, HTTP1MaxPendingRequests: 100},
			OutlierDetection: &policy.OutlierDetection{Consecutive5xxErrors: 5, Interval: policy.Duration(10 * time.Second), BaseEjectionTime: policy.Duration(30 * time.Second), MaxEjectionPercent: 10},
		}}},
	})
	client := m.httpClient(false)
	body := strings.Repeat("x", 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, "http://10.96.0.30:80/bench", strings.NewReader(body))
		req.Host = svc
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
