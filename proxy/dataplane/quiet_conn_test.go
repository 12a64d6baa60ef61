package dataplane

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// switchableResolver answers every lookup with its current destination, which the test
// changes while the proxy runs (discovery.Static is fixed before the proxy starts).
type switchableResolver struct {
	dst atomic.Pointer[discovery.Destination]
}

func (r *switchableResolver) Resolve(context.Context, discovery.Target) (*discovery.Destination, bool, error) {
	d := r.dst.Load()
	return d, d != nil, nil
}

// httpServiceMesh is a mesh whose proxy A resolves service to app alone, its port declaring
// HTTP, with the given detection and HTTP idle timeouts.
func httpServiceMesh(t *testing.T, service string, detect, idle time.Duration) (*mesh, *appServer) {
	t.Helper()
	res := &switchableResolver{}
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.DetectTimeout, o.HTTP.IdleTimeout, o.Resolver = detect, idle, res }})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	res.dst.Store(&discovery.Destination{Name: service, Endpoints: []discovery.Endpoint{{Addr: netipAddr(t, app.addr), Identity: testpki.ID(t, serverSA), AppProtocol: "http"}}})
	return m, app
}

// outboundDetectTimeouts reads proxy A's protocol_detect_timeouts_total{direction=outbound}.
func (m *mesh) outboundDetectTimeouts() float64 {
	return m.a.metrics.Sample("protocol_detect_timeouts_total", map[string]string{"direction": "outbound"})
}

// A client's connection pool may open a connection and use it only later: Go's Transport
// keeps a connection it dialed for a request that another connection served first. To a
// Service whose port declares HTTP (appProtocol, or an http/grpc port name), a connection
// quiet past the detection timeout is an idle HTTP one: its requests are still balanced one
// by one and follow the endpoints as they change. To an undeclared port the proxy falls back
// to opaque TCP after the timeout, as Linkerd does (a server-speaks-first protocol needs its
// server's greeting), and the connection stays with the endpoint it was given.
func TestQuietConnectionToAnHTTPServiceIsBalancedPerRequest(t *testing.T) {
	const detectTimeout = 100 * time.Millisecond
	res := &switchableResolver{}
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.DetectTimeout = detectTimeout; o.Resolver = res }})
	first, second := startApp(t), startApp(t)
	m.serve(t, first.addr, serverSA)
	m.serve(t, second.addr, serverSA)
	id := testpki.ID(t, serverSA)
	const service = "10.99.0.3:80"

	for _, tc := range []struct {
		appProtocol string
		followsMove bool
	}{
		{appProtocol: "http", followsMove: true},
		{appProtocol: "grpc", followsMove: true},
		{appProtocol: "", followsMove: false},
	} {
		t.Run("appProtocol="+tc.appProtocol, func(t *testing.T) {
			endpoint := func(addr string) *discovery.Destination {
				return &discovery.Destination{Name: service, Endpoints: []discovery.Endpoint{{Addr: netipAddr(t, addr), Identity: id, AppProtocol: tc.appProtocol}}}
			}
			res.dst.Store(endpoint(first.addr))
			timeoutsBefore := m.outboundDetectTimeouts()
			conn := m.openTCP(t, service, 30*time.Second)
			time.Sleep(3 * detectTimeout) // the quiet period under test: the connection carries nothing yet
			br := bufio.NewReader(conn)
			ask := func() {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, "http://"+service+"/", nil)
				if err := req.Write(conn); err != nil {
					t.Fatalf("writing a request on the quiet connection: %v", err)
				}
				resp, err := http.ReadResponse(br, req)
				if err != nil {
					t.Fatalf("reading the answer on the quiet connection: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
				}
			}
			firstBefore, secondBefore := first.requests.Load(), second.requests.Load()
			ask()
			// The undeclared port's connection timed out (and went opaque); the declared ones
			// were still waiting for their first request.
			timedOut := m.outboundDetectTimeouts() - timeoutsBefore
			if want := map[bool]float64{true: 0, false: 1}[tc.followsMove]; timedOut != want {
				t.Errorf("protocol_detect_timeouts_total grew by %v, want %v", timedOut, want)
			}
			if got := first.requests.Load() - firstBefore; got != 1 {
				t.Fatalf("the first request reached the first endpoint %d times, want 1", got)
			}
			res.dst.Store(endpoint(second.addr)) // the first endpoint leaves the Service
			ask()
			moved := second.requests.Load()-secondBefore == 1
			if moved != tc.followsMove {
				t.Errorf("after the endpoints changed, the request went to the new endpoint: %v, want %v (first %d, second %d requests)",
					moved, tc.followsMove, first.requests.Load()-firstBefore, second.requests.Load()-secondBefore)
			}
		})
	}
}

// A declared HTTP port's quiet connection is closed at the HTTP idle timeout, not carried
// as opaque TCP: nothing reaches an endpoint.
func TestQuietConnectionToAnHTTPServiceClosesWhenIdle(t *testing.T) {
	const service = "10.99.0.4:80"
	m, app := httpServiceMesh(t, service, 50*time.Millisecond, 300*time.Millisecond)
	conn := m.openTCP(t, service, 20*time.Second)
	start := time.Now()
	n, err := conn.Read(make([]byte, 1))
	if err == nil || n != 0 {
		t.Fatalf("read %d bytes, err %v: want the proxy to close the idle connection", n, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the proxy kept the quiet connection open past the test's 20 s deadline")
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("closed after %s: at the 50ms detection timeout, not the 300ms idle timeout", waited)
	}
	if got := app.requests.Load(); got != 0 {
		t.Errorf("the application saw %d requests", got)
	}
	if n := m.outboundDetectTimeouts(); n != 1 {
		t.Errorf("protocol_detect_timeouts_total{direction=outbound} = %v, want 1", n)
	}
}

// A client that connects and closes without a byte did not time out:
// protocol_detect_timeouts_total counts only the silences that lasted their timeout.
func TestClientClosingSilentlyIsNotADetectTimeout(t *testing.T) {
	const service = "10.99.0.5:80"
	m, _ := httpServiceMesh(t, service, 50*time.Millisecond, 150*time.Millisecond)
	m.openTCP(t, service, 10*time.Second).Close() // closes at once: not a timeout
	silent := m.openTCP(t, service, 10*time.Second)
	// The proxy closes the silent one at the idle timeout, having counted it.
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, err %v: want the proxy to close the silent connection", n, err)
	}
	if got := m.outboundDetectTimeouts(); got != 1 {
		t.Errorf("protocol_detect_timeouts_total = %v, want 1 (the connection closed by its client counted too)", got)
	}
}
