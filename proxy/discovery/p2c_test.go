package discovery

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

func twoEndpoints() *Destination {
	return &Destination{Name: "web", Endpoints: []Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.1:80")}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")},
	}}
}

func TestPeakEWMAAvoidsSlowEndpointThenRetriesIt(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &PeakEWMA{Clock: clock, Decay: time.Second}
	dst := twoEndpoints()
	slow, fast := dst.Endpoints[0].Addr, dst.Endpoints[1].Addr
	b.Observe(slow, 500*time.Millisecond)
	b.Observe(fast, 5*time.Millisecond)
	for i := range 20 {
		ep, err := b.Pick(dst)
		if err != nil {
			t.Fatal(err)
		}
		if ep.Addr != fast {
			t.Fatalf("pick %d: chose the slow endpoint (loads %f vs %f)", i, b.Load(slow), b.Load(fast))
		}
	}
	// Peak: one slow answer makes the fast endpoint the slow one at once.
	b.Observe(fast, time.Second)
	if ep, _ := b.Pick(dst); ep.Addr != slow {
		t.Fatalf("after a peak on %s, still chose it", fast)
	}
	// Decay: after many time constants both costs fall; the last observed lower wins.
	clock.Advance(10 * time.Second)
	b.Observe(fast, time.Millisecond)
	if b.Load(fast) > float64(2*time.Millisecond) {
		t.Fatalf("the average did not decay: %f", b.Load(fast))
	}
}

func TestPeakEWMACountsRequestsInFlight(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &PeakEWMA{Clock: clock}
	dst := twoEndpoints()
	busy := dst.Endpoints[0].Addr
	var releases []Release
	for range 3 {
		releases = append(releases, b.Acquire(busy))
	}
	if ep, _ := b.Pick(dst); ep.Addr == busy {
		t.Fatal("chose the endpoint with 3 requests in flight over an idle one of the same latency")
	}
	for _, r := range releases {
		r.DoneAfter(DefaultRTT, Success)
	}
	if got, want := b.Load(busy), float64(DefaultRTT); got != want {
		t.Fatalf("load after release %f, want %f", got, want)
	}
}

func TestPeakEWMAEdges(t *testing.T) {
	b := &PeakEWMA{}
	if _, err := b.Pick(&Destination{}); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("empty: %v", err)
	}
	one := &Destination{Endpoints: []Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:80")}}}
	if ep, err := b.Pick(one); err != nil || ep.Addr != one.Endpoints[0].Addr {
		t.Fatalf("one: %v %v", ep, err)
	}
	dst := twoEndpoints()
	b.Observe(dst.Endpoints[0].Addr, time.Second)
	b.Forget(func(netip.AddrPort) bool { return false })
	if b.Load(dst.Endpoints[0].Addr) != 0 {
		t.Fatal("Forget kept statistics")
	}
}

// An endpoint never tried is tried next to one that answers fast, and only one request at a
// time until it has answered; one that went idle is tried again as its average decays.
func TestPeakEWMATriesNewAndIdleEndpoints(t *testing.T) {
	clock := identity.NewFakeClock(time.Unix(1000, 0))
	b := &PeakEWMA{Clock: clock}
	dst := twoEndpoints()
	fast, fresh := dst.Endpoints[0].Addr, dst.Endpoints[1].Addr
	for range 50 { // a busy, fast endpoint: its average falls from DefaultRTT towards 1ms
		clock.Advance(time.Second)
		b.Acquire(fast).DoneAfter(time.Millisecond, Success)
	}
	if ep, _ := b.Pick(dst); ep.Addr != fresh {
		t.Fatalf("picked %v, want the never-tried %v", ep.Addr, fresh)
	}
	probe := b.Acquire(fresh)
	if ep, _ := b.Pick(dst); ep.Addr != fast {
		t.Fatalf("picked %v while the probe of %v is in flight, want %v", ep.Addr, fresh, fast)
	}
	probe.DoneAfter(5*time.Millisecond, Success)
	if ep, _ := b.Pick(dst); ep.Addr != fast {
		t.Fatalf("picked %v, want the faster %v", ep.Addr, fast)
	}
	// fast keeps answering in 1ms; fresh, idle, decays below it and is tried again.
	tried := false
	for range 60 {
		clock.Advance(time.Second)
		if ep, _ := b.Pick(dst); ep.Addr == fresh {
			tried = true
			break
		}
		b.Acquire(fast).DoneAfter(time.Millisecond, Success)
	}
	if !tried {
		t.Fatal("the idle endpoint was never tried again")
	}
}

func TestChain(t *testing.T) {
	a, b := NewStatic(), NewStatic()
	if err := b.Add("10.0.0.1:80", Endpoint{Addr: netip.MustParseAddrPort("10.0.0.9:80")}); err != nil {
		t.Fatal(err)
	}
	dst, found, err := Chain{a, b}.Resolve(t.Context(), Target{Addr: netip.MustParseAddrPort("10.0.0.1:80")})
	if err != nil || !found || dst.Endpoints[0].Addr.String() != "10.0.0.9:80" {
		t.Fatalf("got %v %v %v", dst, found, err)
	}
}

func BenchmarkPeakEWMAPick(b *testing.B) {
	p := &PeakEWMA{}
	dst := &Destination{}
	for i := range 16 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80)
		dst.Endpoints = append(dst.Endpoints, Endpoint{Addr: addr})
		p.Observe(addr, time.Duration(i+1)*time.Millisecond)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ep, _ := p.Pick(dst)
			p.Acquire(ep.Addr).DoneAfter(time.Millisecond, Success)
		}
	})
}

func TestPeakEWMAReleaseOutcomes(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &PeakEWMA{Clock: clock}
	dst := twoEndpoints()
	a, c := dst.Endpoints[0].Addr, dst.Endpoints[1].Addr

	// Done measures the latency with the balancer's clock.
	r := b.Acquire(a)
	if b.InFlight(a) != 1 {
		t.Fatalf("in flight %d, want 1", b.InFlight(a))
	}
	clock.Advance(200 * time.Millisecond)
	r.Done(Success)
	if b.InFlight(a) != 0 || b.Load(a) != float64(200*time.Millisecond) {
		t.Fatalf("after Done: in flight %d, load %f", b.InFlight(a), b.Load(a))
	}

	// A fast failure costs twice the average (DefaultRTT for a new endpoint), each time.
	b.Acquire(c).DoneAfter(time.Microsecond, Failure)
	if got := b.Load(c); got != float64(2*DefaultRTT) {
		t.Fatalf("after a fast failure: %f, want %f", got, float64(2*DefaultRTT))
	}
	b.Acquire(c).DoneAfter(time.Microsecond, Failure)
	if got := b.Load(c); got != float64(4*DefaultRTT) {
		t.Fatalf("after a second failure: %f, want %f", got, float64(4*DefaultRTT))
	}

	// A canceled request only raises the average (its latency is a lower bound).
	before := b.Load(a)
	clock.Advance(time.Second)
	decayed := b.Load(a)
	b.Acquire(a).DoneAfter(time.Millisecond, Canceled)
	if got := b.Load(a); got != decayed || got >= before {
		t.Fatalf("a short canceled request changed the average: %f (decayed %f)", got, decayed)
	}
	b.Acquire(a).DoneAfter(time.Second, Canceled)
	if got := b.Load(a); got != float64(time.Second) {
		t.Fatalf("a long canceled request: %f, want a peak of 1s", got)
	}
	if b.InFlight(a) != 0 || b.InFlight(c) != 0 {
		t.Fatal("requests left in flight")
	}

	// The zero Release does nothing.
	Release{}.Done(Failure)
	Release{}.DoneAfter(time.Second, Success)
}

func BenchmarkPeakEWMAPickRelease(b *testing.B) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := &PeakEWMA{Clock: clock}
	dst := &Destination{}
	for i := range 16 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80)
		dst.Endpoints = append(dst.Endpoints, Endpoint{Addr: addr})
		p.Observe(addr, time.Duration(i+1)*time.Millisecond)
	}
	var lb LoadAware = p
	b.ReportAllocs()
	for b.Loop() {
		ep, err := lb.Pick(dst)
		if err != nil {
			b.Fatal(err)
		}
		r := lb.Acquire(ep.Addr)
		clock.Advance(time.Millisecond)
		r.Done(Success)
	}
}

// Replicas that answer about as fast share the traffic about evenly (none under half its
// fair share), while a clearly slower one still gets little.
func TestPeakEWMASharesAmongSimilarEndpoints(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rnd := rand.New(rand.NewPCG(3, 4))
	b := &PeakEWMA{Clock: clock, Rand: rnd.IntN}
	latency := map[netip.AddrPort]time.Duration{}
	dst := &Destination{Name: "echo"}
	for i, ms := range []float64{1.8, 1.9, 2.0, 2.1, 2.2, 20} {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 80)
		dst.Endpoints = append(dst.Endpoints, Endpoint{Addr: addr})
		latency[addr] = time.Duration(ms * float64(time.Millisecond))
	}
	picks := map[netip.AddrPort]int{}
	const n = 6000
	for range n {
		ep, err := b.Pick(dst)
		if err != nil {
			t.Fatal(err)
		}
		picks[ep.Addr]++
		b.Acquire(ep.Addr).DoneAfter(latency[ep.Addr], Success)
		clock.Advance(5 * time.Millisecond) // 200 requests a second
	}
	slow := dst.Endpoints[5].Addr
	fair := (n - picks[slow]) / 5
	for _, ep := range dst.Endpoints[:5] {
		if picks[ep.Addr] < fair/2 {
			t.Errorf("%s (%s) got %d of %d picks, under half its fair share %d: %v", ep.Addr, latency[ep.Addr], picks[ep.Addr], n, fair, picks)
		}
	}
	if picks[slow] > n/20 {
		t.Errorf("the endpoint ten times slower got %d of %d picks", picks[slow], n)
	}
}

// One latency spike on a replica among similar ones costs it its share only briefly: it is
// avoided while its average decays (about 7 s from 20 ms to within the tie margin of 1.3 ms
// at the 2 s decay), and over the 15 s after that it gets its fair share again (200 requests a
// second; at the 10 s of Finagle's decay it would still be avoided). The draws are seeded,
// so the test is deterministic.
func TestPeakEWMARecoversFromASpike(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rnd := rand.New(rand.NewPCG(1, 2))
	b := &PeakEWMA{Clock: clock, Rand: rnd.IntN}
	dst := &Destination{Name: "echo"}
	for i := range 5 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 80)
		dst.Endpoints = append(dst.Endpoints, Endpoint{Addr: addr})
	}
	run := func(n int) map[netip.AddrPort]int {
		picks := map[netip.AddrPort]int{}
		for range n {
			ep, err := b.Pick(dst)
			if err != nil {
				t.Fatal(err)
			}
			picks[ep.Addr]++
			b.Acquire(ep.Addr).DoneAfter(1300*time.Microsecond, Success)
			clock.Advance(5 * time.Millisecond)
		}
		return picks
	}
	run(12000) // a minute of warm-up: every replica's average settles near 1.3 ms
	spiked := dst.Endpoints[0].Addr
	b.Acquire(spiked).DoneAfter(20*time.Millisecond, Success)
	avoided := run(2000) // 10 s
	if avoided[spiked] > 2000/5/2 {
		t.Errorf("in the 10 s after a 20 ms spike the replica got %d of 2000 picks; a spike should keep it out of most: %v", avoided[spiked], avoided)
	}
	const n = 3000
	picks := run(n)
	if picks[spiked] < n/5*3/4 {
		t.Errorf("10 s after one 20 ms spike the replica got %d of %d picks over 15 s, under three quarters of its fair share: %v", picks[spiked], n, picks)
	}
}

// However long an endpoint failed, it is back in the picks soon after it answers again: its
// cost is capped, then decays like any other.
func TestPeakEWMAFailuresInARowAreCapped(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &PeakEWMA{Clock: clock}
	dst := twoEndpoints()
	a := dst.Endpoints[0].Addr
	for range 2000 { // doubling each time would overflow to +Inf
		b.Acquire(a).DoneAfter(time.Millisecond, Failure)
	}
	if got := b.Load(a); got != float64(MaxFailureCost) {
		t.Fatalf("after 2,000 failures in a row the load is %g ns, want the cap %v", got, MaxFailureCost)
	}
	clock.Advance(10 * DefaultDecay)
	if got := b.Load(a); got > float64(time.Millisecond) {
		t.Errorf("ten decay constants later the load is %v, want under 1ms", time.Duration(got))
	}
	// A slow answer still counts in full.
	b.Acquire(a).DoneAfter(20*time.Second, Success)
	if got := b.Load(a); got != float64(20*time.Second) {
		t.Errorf("a 20 s answer: load %v", time.Duration(got))
	}
}
