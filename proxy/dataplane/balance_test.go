package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// clockApp is an HTTP server whose every answer takes latency on the fake clock.
func clockApp(t *testing.T, clock *identity.FakeClock, latency time.Duration, hits *atomic.Int64) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		clock.Advance(latency)
		fmt.Fprint(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func newBalancedMesh(t *testing.T, bal discovery.Balancer, cfg meshConfig) *mesh {
	t.Helper()
	cfg.tweakA = func(o *Options) { o.Balancer = bal }
	return newMesh(t, cfg)
}

func TestOutboundHTTPFeedsPeakEWMA(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	bal := &discovery.PeakEWMA{Clock: clock}
	m := newBalancedMesh(t, bal, meshConfig{plaintext: true})
	var slowHits, fastHits atomic.Int64
	slow := clockApp(t, clock, 80*time.Millisecond, &slowHits)
	fast := clockApp(t, clock, time.Millisecond, &fastHits)
	const service = "10.96.0.10:80"
	if err := m.table.Add(service, discovery.Endpoint{Addr: slow}, discovery.Endpoint{Addr: fast}); err != nil {
		t.Fatal(err)
	}
	client := m.httpClient(false)
	const requests = 60
	for range requests {
		if resp, body := get(t, client, "http://"+service+"/"); resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("status %d, body %q", resp.StatusCode, body)
		}
		// The balancer is released before the response header reaches the client.
		if n := bal.InFlight(slow) + bal.InFlight(fast); n != 0 {
			t.Fatalf("%d requests still in flight after the response", n)
		}
	}
	if got := fastHits.Load(); got < requests-2 {
		t.Fatalf("the fast endpoint got %d of %d requests (slow %d): latency is not fed back", got, requests, slowHits.Load())
	}
	if bal.Load(slow) <= bal.Load(fast) {
		t.Fatalf("loads slow %f <= fast %f", bal.Load(slow), bal.Load(fast))
	}
}

func TestOutboundReleasesOnErrorsAndCancellation(t *testing.T) {
	bal := &discovery.PeakEWMA{}
	m := newBalancedMesh(t, bal, meshConfig{plaintext: true})
	client := m.httpClient(false)

	// Refused: 502, nothing left in flight, and the failure costs more than an unknown endpoint.
	refused := netipAddr(t, closedPort(t))
	if err := m.table.Add("10.96.0.11:80", discovery.Endpoint{Addr: refused}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, client, "http://10.96.0.11:80/"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("refused endpoint: status %d", resp.StatusCode)
	}
	if n := bal.InFlight(refused); n != 0 {
		t.Fatalf("%d in flight after a refused request", n)
	}
	if bal.Load(refused) < float64(discovery.DefaultRTT) {
		t.Fatalf("a failure lowered the cost: %f", bal.Load(refused))
	}

	// Canceled by the client while the endpoint holds the request. Over HTTP/2 the cancel
	// (RST_STREAM) reaches the proxy's request context; proxy/h1 does not yet watch for a
	// client that goes away, so an HTTP/1 request is released when the endpoint answers.
	client = m.httpClient(true)
	entered, unblock := make(chan struct{}, 1), make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-unblock:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(unblock); srv.Close() })
	hang := ln.Addr().(*net.TCPAddr).AddrPort()
	if err := m.table.Add("10.96.0.12:80", discovery.Endpoint{Addr: hang}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reqCtx, cancelReq := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodGet, "http://10.96.0.12:80/", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the request never reached the endpoint")
	}
	if n := bal.InFlight(hang); n != 1 {
		t.Fatalf("in flight while the endpoint holds the request: %d, want 1", n)
	}
	cancelReq()
	if err := <-done; err == nil {
		t.Fatal("the canceled request succeeded")
	}
	waitFor(t, "the canceled request to be released", func() bool { return bal.InFlight(hang) == 0 })
}

func TestOpaqueTCPFeedsBalancer(t *testing.T) {
	bal := &discovery.PeakEWMA{}
	addr := tcpServer(t, func(c net.Conn) { fmt.Fprint(c, "hello\n") })
	ap := netipAddr(t, addr)
	refused := netipAddr(t, closedPort(t))
	m := newBalancedMesh(t, bal, meshConfig{opaquePorts: []uint16{ap.Port(), refused.Port()}})
	m.serve(t, addr, serverSA)
	if err := m.table.Add(refused.String(), discovery.Endpoint{Addr: refused}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, target := range []netip.AddrPort{ap, refused} {
		c, err := m.dial(ctx, "tcp", target.String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		out, _ := io.ReadAll(c) // the banner, or nothing when the endpoint refused
		c.Close()
		if target == ap && string(out) != "hello\n" {
			t.Fatalf("banner %q", out)
		}
		if n := bal.InFlight(target); n != 0 {
			t.Fatalf("%s: %d connections in flight after connect", target, n)
		}
	}
	if bal.Load(refused) < float64(discovery.DefaultRTT) {
		t.Fatalf("a refused connection lowered the cost: %f", bal.Load(refused))
	}
}

// An endpoint hinted opaque is reached as opaque TCP over the mesh transport, without
// detection, though the client's proxy has no opaque port configured: a server that speaks
// first answers at once (detection would wait a minute). HTTP/2-hinted endpoints keep HTTP.
func TestProtocolHints(t *testing.T) {
	addr := tcpServer(t, func(c net.Conn) {
		fmt.Fprint(c, "220 ready\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "250 %s", line)
	})
	ap := netipAddr(t, addr)
	m := newMesh(t, meshConfig{
		tweakA: func(o *Options) { o.OpaquePorts = []uint16{}; o.DetectTimeout = time.Minute },
		tweakB: func(o *Options) { o.OpaquePorts = []uint16{ap.Port()} },
	})
	m.behindB.Store(addr, true)
	if err := m.table.Add(addr, discovery.Endpoint{Addr: ap, Identity: testpki.ID(t, serverSA), Protocol: discovery.ProtocolOpaque}); err != nil {
		t.Fatal(err)
	}
	c := m.openTCP(t, addr, 20*time.Second)
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != "220 ready\r\n" {
		t.Fatalf("banner %q, %v", line, err)
	}
	fmt.Fprint(c, "HELO mesh\n")
	if line, _ := br.ReadString('\n'); line != "250 HELO mesh\n" {
		t.Fatalf("reply %q", line)
	}
	c.Close()
	in := map[string]string{"direction": "inbound", "peer": "src", "client_id": clientSA, "tls": "true"}
	waitFor(t, "the mesh transport connection to close", func() bool { return m.b.metrics.Sample("tcp_close_total", in) == 1 })

	app := startApp(t)
	m.behindB.Store(app.addr, true)
	if err := m.table.Add(app.addr, discovery.Endpoint{Addr: netipAddr(t, app.addr), Identity: testpki.ID(t, serverSA), Protocol: discovery.ProtocolHTTP2}); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, m.httpClient(false), "http://"+app.addr+"/hinted")
	if resp.StatusCode != http.StatusOK || body != "GET /hinted 0" || resp.Header.Get("X-Seen-Client-Id") != clientSA {
		t.Fatalf("HTTP/2-hinted endpoint: status %d, body %q, client id %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Client-Id"))
	}
}
