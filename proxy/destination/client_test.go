package destination

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

const waitFor = 10 * time.Second

// fakeServer streams the updates the test pushes, per path.
type fakeServer struct {
	destinationv1.UnimplementedDestinationServer
	streams chan fakeStream
}

type fakeStream struct {
	path    string
	updates chan *destinationv1.Update
}

func (f *fakeServer) Get(req *destinationv1.GetDestination, stream destinationv1.Destination_GetServer) error {
	s := fakeStream{path: req.GetPath(), updates: make(chan *destinationv1.Update, 16)}
	select {
	case f.streams <- s:
	case <-stream.Context().Done():
		return nil
	}
	for {
		select {
		case u := <-s.updates:
			if err := stream.Send(u); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// serve starts a fake server on lis; stop closes it.
func serve(t *testing.T, lis net.Listener) (*fakeServer, func()) {
	t.Helper()
	f := &fakeServer{streams: make(chan fakeStream, 16)}
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, f)
	done := make(chan struct{})
	go func() { _ = srv.Serve(lis); close(done) }()
	return f, func() { srv.Stop(); <-done }
}

func (f *fakeServer) next(t *testing.T) fakeStream {
	t.Helper()
	select {
	case s := <-f.streams:
		return s
	case <-time.After(waitFor):
		t.Fatal("the client opened no stream")
	}
	return fakeStream{}
}

func addSet(id string, addrs ...string) *destinationv1.Update {
	var was []*destinationv1.WeightedAddr
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		was = append(was, &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: ap.Addr().String(), Port: uint32(ap.Port())}, Weight: 1, TlsIdentity: id})
	}
	return &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{Addrs: was}}}
}

func remove(addrs ...string) *destinationv1.Update {
	var as []*destinationv1.TcpAddress
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		as = append(as, &destinationv1.TcpAddress{Ip: ap.Addr().String(), Port: uint32(ap.Port())})
	}
	return &destinationv1.Update{Update: &destinationv1.Update_Remove{Remove: &destinationv1.AddrSet{Addrs: as}}}
}

func noEndpoints(exists bool) *destinationv1.Update {
	return &destinationv1.Update{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: exists}}}
}

func newClient(t *testing.T, addr string) *Client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	immediately := make(chan time.Time)
	close(immediately)
	c, err := New(ctx, Options{
		Client: destinationv1.NewDestinationClient(conn), InitialTimeout: waitFor,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls resolve until check passes (the state is updated by another goroutine).
func eventually(t *testing.T, c *Client, target discovery.Target, what string, check func(*discovery.Destination, bool) bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		dst, found, err := c.Resolve(t.Context(), target)
		if err != nil {
			t.Fatal(err)
		}
		if check(dst, found) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last answer %v found=%v", what, dst, found)
		}
		time.Sleep(5 * time.Millisecond) // polling an eventually consistent view, bounded above
	}
}

func count(n int) func(*discovery.Destination, bool) bool {
	return func(d *discovery.Destination, found bool) bool { return found && len(d.Endpoints) == n }
}

func TestClientFollowsStreamAndKeepsLastStateWhenServerGoes(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	f, stop := serve(t, lis)
	c := newClient(t, addr)
	target := discovery.Target{Authority: "web.shop.svc.cluster.local:80"}
	const id = "spiffe://cluster.local/ns/shop/sa/web"

	resolved := make(chan *discovery.Destination, 1)
	go func() {
		dst, _, _ := c.Resolve(t.Context(), target)
		resolved <- dst
	}()
	s := f.next(t)
	if s.path != target.Authority {
		t.Fatalf("subscribed to %q", s.path)
	}
	s.updates <- addSet(id, "10.1.0.1:8080", "10.1.0.2:8080")
	dst := <-resolved
	if dst == nil || len(dst.Endpoints) != 2 || dst.Endpoints[0].Identity.String() != id {
		t.Fatalf("first Resolve waited for the full set: got %+v", dst)
	}
	s.updates <- addSet(id, "10.1.0.3:8080")
	eventually(t, c, target, "add", count(3))
	s.updates <- remove("10.1.0.1:8080")
	eventually(t, c, target, "remove", count(2))

	stop()
	// The controller is gone: the last state stays.
	for range 3 {
		if dst, found, _ := c.Resolve(t.Context(), target); !found || len(dst.Endpoints) != 2 {
			t.Fatalf("after the server went away: %v %v", dst, found)
		}
	}

	// It comes back: the client resubscribes and takes the new full set.
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	f2, stop2 := serve(t, lis2)
	defer stop2()
	s2 := f2.next(t)
	s2.updates <- addSet(id, "10.1.0.9:8080")
	eventually(t, c, target, "resubscribed full set replaces the old one", func(d *discovery.Destination, found bool) bool {
		return found && len(d.Endpoints) == 1 && d.Endpoints[0].Addr.String() == "10.1.0.9:8080"
	})
	s2.updates <- noEndpoints(true)
	eventually(t, c, target, "exists without endpoints", count(0))
	s2.updates <- noEndpoints(false)
	eventually(t, c, target, "unknown is passthrough", func(_ *discovery.Destination, found bool) bool { return !found })
}

func TestClientUnknownAuthorityFallsBackToAddress(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, stop := serve(t, lis)
	defer stop()
	c := newClient(t, lis.Addr().String())
	target := discovery.Target{Authority: "example.com:80", Addr: netip.MustParseAddrPort("10.96.0.5:80")}
	go func() {
		for range 2 {
			s := f.next(t)
			if s.path == "example.com:80" {
				s.updates <- noEndpoints(false)
			} else {
				s.updates <- addSet("", "10.1.0.1:8080")
			}
		}
	}()
	eventually(t, c, target, "the address's endpoints", func(d *discovery.Destination, found bool) bool {
		return found && len(d.Endpoints) == 1 && !d.Endpoints[0].Meshed() && d.Name == "10.96.0.5:80"
	})
}

// Without an answer, only the first lookups wait; later ones pass through at once.
func TestClientPassesThroughWhenServerNeverAnswers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, stop := serve(t, lis)
	defer stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	clock := meshid.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	fired := make(chan time.Time)
	close(fired)
	var firstWait sync.Once
	c, err := New(t.Context(), Options{Client: destinationv1.NewDestinationClient(conn), InitialTimeout: time.Second, Clock: clock,
		// The first wait for an answer ends at once (as if InitialTimeout passed); any later
		// wait, or any other timer, never fires.
		After: func(d time.Duration) <-chan time.Time {
			ch := (<-chan time.Time)(nil)
			if d == time.Second {
				firstWait.Do(func() { clock.Advance(time.Second); ch = fired })
			}
			return ch
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	target := discovery.Target{Addr: netip.MustParseAddrPort("10.96.0.5:80")}
	if _, found, err := c.Resolve(t.Context(), target); found || err != nil {
		t.Fatalf("no answer: found=%v err=%v, want passthrough", found, err)
	}
	f.next(t) // the stream is open, the server silent
	done := make(chan bool, 1)
	go func() { _, found, _ := c.Resolve(t.Context(), target); done <- found }()
	select {
	case found := <-done:
		if found {
			t.Fatal("found without an answer")
		}
	case <-time.After(waitFor):
		t.Fatal("a later lookup waited for the answer again")
	}
}

func BenchmarkClientResolve(b *testing.B) {
	c, err := New(b.Context(), Options{Client: destinationv1.NewDestinationClient(nil), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	w := &watch{key: "web.shop.svc.cluster.local:80", ready: make(chan struct{})}
	w.view.Store(newView(w.key, true, map[netip.AddrPort]discovery.Endpoint{
		netip.MustParseAddrPort("10.1.0.1:8080"): {Addr: netip.MustParseAddrPort("10.1.0.1:8080")},
	}))
	c.watches[w.key] = w
	target := discovery.Target{Authority: w.key}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, found, _ := c.Resolve(ctx, target); !found {
			b.Fatal("not found")
		}
	}
}

// A key not resolved for IdleTimeout has its stream closed; the next Resolve opens it again.
func TestClientEvictsIdleStreams(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, stop := serve(t, lis)
	defer stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	clock := meshid.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c, err := New(t.Context(), Options{Client: destinationv1.NewDestinationClient(conn), Clock: clock,
		InitialTimeout: waitFor, IdleTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	target := discovery.Target{Addr: netip.MustParseAddrPort("10.96.0.5:80")}
	answer := func() {
		s := f.next(t)
		s.updates <- addSet("", "10.1.0.1:8080")
	}
	go answer()
	if _, found, _ := c.Resolve(t.Context(), target); !found {
		t.Fatal("not found")
	}
	clock.Advance(30 * time.Second)
	c.evictIdle()
	if _, found, _ := c.Resolve(t.Context(), target); !found {
		t.Fatal("evicted while in use")
	}
	clock.Advance(2 * time.Minute)
	c.evictIdle()
	c.mu.Lock()
	n := len(c.watches)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d watches left after IdleTimeout", n)
	}
	go answer()
	if _, found, _ := c.Resolve(t.Context(), target); !found {
		t.Fatal("not found again after eviction")
	}
}

func TestClientCarriesProtocolHints(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, stop := serve(t, lis)
	defer stop()
	c := newClient(t, lis.Addr().String())
	target := discovery.Target{Authority: "db.shop.svc.cluster.local:5432"}
	hinted := func(addr string, h destinationv1.ProtocolHint) *destinationv1.WeightedAddr {
		ap := netip.MustParseAddrPort(addr)
		return &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: ap.Addr().String(), Port: uint32(ap.Port())},
			Weight: 1, TlsIdentity: "spiffe://cluster.local/ns/shop/sa/db", ProtocolHint: h}
	}
	go func() {
		s := f.next(t)
		s.updates <- &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{Addrs: []*destinationv1.WeightedAddr{
			hinted("10.1.0.1:5432", destinationv1.ProtocolHint_PROTOCOL_HINT_OPAQUE),
			hinted("10.1.0.2:5432", destinationv1.ProtocolHint_PROTOCOL_HINT_HTTP2),
			hinted("10.1.0.3:5432", destinationv1.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED),
			hinted("10.1.0.4:5432", destinationv1.ProtocolHint(99)),
		}}}}
		// The port's declared protocol comes with every endpoint.
		s.updates <- &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{Addrs: []*destinationv1.WeightedAddr{
			{Addr: &destinationv1.TcpAddress{Ip: "10.2.0.1", Port: 80}, Weight: 1, AppProtocol: "grpc"},
		}}}}
	}()
	eventually(t, c, target, "hinted endpoints", count(5))
	dst, _, _ := c.Resolve(t.Context(), target)
	if last := dst.Endpoints[4]; last.AppProtocol != "grpc" || !last.ClientSpeaksFirst() || dst.Endpoints[0].AppProtocol != "" {
		t.Errorf("declared protocols: %q (client first %v) and %q, want grpc (true) and none", last.AppProtocol, last.ClientSpeaksFirst(), dst.Endpoints[0].AppProtocol)
	}
	want := []discovery.ProtocolHint{discovery.ProtocolOpaque, discovery.ProtocolHTTP2, discovery.ProtocolUnknown, discovery.ProtocolUnknown}
	for i, ep := range dst.Endpoints[:len(want)] {
		if ep.Protocol != want[i] {
			t.Errorf("%s: hint %v, want %v", ep.Addr, ep.Protocol, want[i])
		}
	}
	if !dst.Opaque() || !dst.Endpoints[0].Opaque() || dst.Endpoints[1].Opaque() {
		t.Errorf("Opaque: destination %v, endpoints %v %v", dst.Opaque(), dst.Endpoints[0].Opaque(), dst.Endpoints[1].Opaque())
	}
}
