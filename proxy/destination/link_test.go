package destination

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// newLinkClient is a client of addr with a fake clock (for the durations it reports), fast
// real backoff, and its metrics in reg.
func newLinkClient(t *testing.T, addr string, clock meshid.Clock, reg prometheus.Registerer) *Client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c, err := New(t.Context(), Options{
		Client: destinationv1.NewDestinationClient(conn), InitialTimeout: waitFor, Clock: clock,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitStatus polls the client's status until ok passes.
func waitStatus(t *testing.T, c *Client, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		st := c.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond) // polling another goroutine's state, bounded above
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// The destination service goes away and comes back: the client says it is disconnected (status,
// /ready detail, metrics) while it serves the last state, and connected again after.
func TestClientReportsDisconnection(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	f, stop := serve(t, lis)
	clock := meshid.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	c := newLinkClient(t, addr, clock, reg)
	if st := c.Status(); st.Connected || !st.DisconnectedSince.IsZero() || c.ReadyDetail() != "" {
		t.Fatalf("before any stream: %+v %q", st, c.ReadyDetail())
	}
	if _, ok := metricValue(t, reg, "destination_last_update_age_seconds"); ok {
		t.Error("an update age before any update")
	}
	target := discovery.Target{Authority: "web.shop.svc.cluster.local:80"}
	go func() { f.next(t).updates <- addSet("", "10.1.0.1:8080", "10.1.0.2:8080") }()
	eventually(t, c, target, "first state", count(2))
	if st := c.Status(); !st.Connected || !st.EverConnected || st.Reconnects != 0 || c.ReadyDetail() != "" {
		t.Fatalf("connected: %+v %q", st, c.ReadyDetail())
	}
	if v, _ := metricValue(t, reg, "destination_connected"); v != 1 {
		t.Errorf("destination_connected %v while connected", v)
	}
	clock.Advance(3 * time.Second)
	if v, ok := metricValue(t, reg, "destination_last_update_age_seconds"); !ok || v != 3 {
		t.Errorf("destination_last_update_age_seconds %v (present %v), want 3", v, ok)
	}

	stop()
	st := waitStatus(t, c, "disconnected", func(s Status) bool { return !s.Connected })
	if !st.DisconnectedSince.Equal(clock.Now()) {
		t.Errorf("disconnected since %v, want %v", st.DisconnectedSince, clock.Now())
	}
	clock.Advance(42 * time.Second)
	if got, want := c.ReadyDetail(), "destination disconnected for 42s, serving last known state"; got != want {
		t.Errorf("ready detail %q, want %q", got, want)
	}
	if v, _ := metricValue(t, reg, "destination_connected"); v != 0 {
		t.Errorf("destination_connected %v while disconnected", v)
	}
	if dst, found, _ := c.Resolve(t.Context(), target); !found || len(dst.Endpoints) != 2 {
		t.Fatalf("the last state is gone: %v %v", dst, found)
	}

	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	f2, stop2 := serve(t, lis2)
	defer stop2()
	f2.next(t).updates <- addSet("", "10.1.0.3:8080")
	st = waitStatus(t, c, "connected again", func(s Status) bool { return s.Connected })
	if st.Reconnects != 1 || !st.DisconnectedSince.IsZero() || c.ReadyDetail() != "" {
		t.Errorf("after the service came back: %+v %q", st, c.ReadyDetail())
	}
	for name, want := range map[string]float64{"destination_connected": 1, "destination_reconnects_total": 1} {
		if v, ok := metricValue(t, reg, name); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

// A destination service that never answered: /ready says outbound traffic goes to its original
// destination.
func TestClientReportsNeverConnected(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close() // nothing listens: every attempt is refused
	clock := meshid.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newLinkClient(t, addr, clock, nil)
	go func() { _, _, _ = c.Resolve(t.Context(), discovery.Target{Authority: "web.shop.svc.cluster.local:80"}) }()
	waitStatus(t, c, "a failed attempt", func(s Status) bool { return !s.DisconnectedSince.IsZero() })
	clock.Advance(7 * time.Second)
	if got, want := c.ReadyDetail(), "destination unreachable for 7s, no state received yet: outbound traffic goes to its original destination"; got != want {
		t.Errorf("ready detail %q, want %q", got, want)
	}
}

// The request path must never wait for an absent destination service once it has a state:
// while the service refuses connections, and while it accepts them and never answers (a
// controller going away behind a ClusterIP: dials that hang until their timeout), lookups of
// known keys answer at once from the last state, from many goroutines at once. This is the
// unit reproduction of the timeouts seen in TestDestinationUnderLoad's controller outage.
func TestClientLookupsDoNotWaitDuringOutage(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	f, stop := serve(t, lis)
	c := newClient(t, addr)
	targets := []discovery.Target{
		{Authority: "web.shop.svc.cluster.local:80"},
		{Authority: "echo:80", Addr: netip.MustParseAddrPort("10.96.0.7:80")}, // unknown name, known address
	}
	go func() {
		for range 3 {
			s := f.next(t)
			if s.path == "echo:80" {
				s.updates <- noEndpoints(false)
			} else {
				s.updates <- addSet("", "10.1.0.1:8080", "10.1.0.2:8080")
			}
		}
	}()
	for _, target := range targets {
		eventually(t, c, target, "first state of "+target.Authority, count(2))
	}

	// Lookers: resolve in a loop and record the slowest lookup and any miss.
	var slowest atomic.Int64
	var misses atomic.Int64
	done := make(chan struct{})
	var lookers sync.WaitGroup
	for i := range 8 {
		lookers.Go(func() {
			target := targets[i%len(targets)]
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				dst, found, err := c.Resolve(t.Context(), target)
				d := time.Since(start)
				for {
					old := slowest.Load()
					if int64(d) <= old || slowest.CompareAndSwap(old, int64(d)) {
						break
					}
				}
				if err != nil || !found || len(dst.Endpoints) != 2 {
					misses.Add(1)
				}
				time.Sleep(time.Millisecond) // paced like requests, not a busy loop
			}
		})
	}
	stopLookers := func() {
		close(done)
		lookers.Wait()
	}

	// The service goes away: connections are refused.
	stop()
	waitStatus(t, c, "disconnected", func(s Status) bool { return !s.Connected })
	time.Sleep(300 * time.Millisecond) // let the lookers run through many reconnect attempts
	// It comes back as a black hole: connections are accepted, nothing is ever answered.
	hole, err := net.Listen("tcp", addr)
	if err != nil {
		stopLookers()
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			conn, err := hole.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, conn)
			heldMu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond) // attempts hang on the black hole meanwhile
	stopLookers()
	_ = hole.Close()
	heldMu.Lock()
	for _, conn := range held {
		_ = conn.Close()
	}
	heldMu.Unlock()

	if n := misses.Load(); n != 0 {
		t.Errorf("%d lookups lost the last state during the outage", n)
	}
	t.Logf("the slowest lookup during the outage took %s", time.Duration(slowest.Load()))
	// A wait for the service lasts InitialTimeout (2 s in the proxy, 10 s here) or a dial
	// timeout (20 s); a second leaves room for a busy machine's scheduling.
	if d := time.Duration(slowest.Load()); d > time.Second {
		t.Errorf("the slowest lookup during the outage took %s: the request path waited for the destination service", d)
	}
}

// While the destination service is away, idle keys are not evicted: their last state stays
// and their next use gets it at once; evicted, it would wait for an answer, then pass through.
func TestClientKeepsIdleKeysWhileDisconnected(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, stop := serve(t, lis)
	clock := meshid.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newLinkClient(t, lis.Addr().String(), clock, nil)
	target := discovery.Target{Authority: "web.shop.svc.cluster.local:80"}
	go func() { f.next(t).updates <- addSet("", "10.1.0.1:8080") }()
	eventually(t, c, target, "first state", count(1))
	stop()
	waitStatus(t, c, "disconnected", func(s Status) bool { return !s.Connected })
	clock.Advance(2 * DefaultIdleTimeout)
	c.evictIdle()
	c.mu.Lock()
	n := len(c.watches)
	c.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d watches left after an idle period without the destination service, want 1", n)
	}
	if dst, found, _ := c.Resolve(t.Context(), target); !found || len(dst.Endpoints) != 1 {
		t.Fatalf("the idle key's last state: %v %v", dst, found)
	}
}
