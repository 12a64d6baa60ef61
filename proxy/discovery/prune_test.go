package discovery

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

func TestPeakEWMAForgetsEndpointsThatLeft(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := &PeakEWMA{Clock: clock, IdleTimeout: time.Minute}
	// Endpoints come and go: each generation of a deployment gets new addresses.
	busy := netip.MustParseAddrPort("10.0.9.9:80")
	held := b.Acquire(busy) // in flight for the whole test: never forgotten
	for gen := range 50 {
		for i := range 10 {
			addr := netip.MustParseAddrPort(fmt.Sprintf("10.1.%d.%d:80", gen, i))
			b.Acquire(addr).DoneAfter(time.Millisecond, Success)
		}
		clock.Advance(20 * time.Second)
	}
	// Only the generations used within the last two idle timeouts (6 of 20 s each) remain.
	if n := b.Tracked(); n > 2*3*10+1+10 {
		t.Fatalf("%d endpoints tracked after 500 came and went; stats are not pruned", n)
	}
	clock.Advance(2 * time.Minute)
	b.Prune()
	if n := b.Tracked(); n != 1 {
		t.Fatalf("%d endpoints tracked after every idle one was pruned, want only the busy one", n)
	}
	if b.InFlight(busy) != 1 {
		t.Fatal("the endpoint with a request in flight lost its count")
	}
	held.Done(Success)

	// Forget drops what the caller says has left, whatever its age.
	keep := netip.MustParseAddrPort("10.2.0.1:80")
	b.Acquire(keep).Done(Success)
	b.Forget(func(a netip.AddrPort) bool { return a == keep })
	if n := b.Tracked(); n != 1 {
		t.Fatalf("%d endpoints tracked after Forget, want 1", n)
	}
}

func TestLeastRequestPicksFewestInFlight(t *testing.T) {
	b := NewLeastRequest(nil)
	dst := twoEndpoints()
	a := dst.Endpoints[0].Addr
	// a is slow to answer but idle; the other has two requests in flight.
	b.Acquire(a).DoneAfter(time.Hour, Success)
	other := dst.Endpoints[1].Addr
	r1, r2 := b.Acquire(other), b.Acquire(other)
	for range 20 {
		if ep, _ := b.Pick(dst); ep.Addr != a {
			t.Fatalf("picked %s with 2 in flight over idle %s", ep.Addr, a)
		}
	}
	r1.Done(Success)
	r2.Done(Success)
	ra := b.Acquire(a)
	for range 20 {
		if ep, _ := b.Pick(dst); ep.Addr != other {
			t.Fatalf("picked %s with 1 in flight over idle %s: latency is not ignored", ep.Addr, other)
		}
	}
	ra.Done(Success)
}
