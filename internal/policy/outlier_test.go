package policy

import (
	"reflect"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

func TestEjectionTime(t *testing.T) {
	cases := []struct {
		base       time.Duration
		multiplier uint32
		want       time.Duration
	}{
		{30 * time.Second, 0, 30 * time.Second},
		{30 * time.Second, 1, 30 * time.Second},
		{30 * time.Second, 2, 60 * time.Second},
		{30 * time.Second, 3, 90 * time.Second},
		{30 * time.Second, 10, 300 * time.Second},
		{30 * time.Second, 11, 300 * time.Second}, // capped at Envoy's max_ejection_time
		{10 * time.Minute, 3, 10 * time.Minute},   // the cap is never below base
		{time.Second, 1 << 31, 300 * time.Second}, // no overflow
	}
	for _, c := range cases {
		if got := EjectionTime(c.base, c.multiplier); got != c.want {
			t.Errorf("EjectionTime(%s, %d) = %s, want %s", c.base, c.multiplier, got, c.want)
		}
	}
}

func TestMayEject(t *testing.T) {
	cases := []struct {
		ejected, hosts int
		maxPercent     uint32
		want           bool
	}{
		{0, 4, 50, true},   // 25 % <= 50 %
		{1, 4, 50, true},   // 50 % <= 50 %
		{2, 4, 50, false},  // 75 % > 50 %
		{0, 2, 50, true},   // 50 %
		{1, 2, 50, false},  // 100 %
		{0, 1, 50, false},  // the only host: 100 %
		{0, 9, 10, false},  // default 10 %: 11.1 % > 10 %
		{0, 10, 10, true},  // 10 %
		{0, 3, 33, false},  // 33.3 % > 33 %: compared exactly, not truncated
		{0, 1, 100, true},  // 100 %
		{0, 0, 100, false}, // no hosts
	}
	for _, c := range cases {
		if got := MayEject(c.ejected, c.hosts, c.maxPercent); got != c.want {
			t.Errorf("MayEject(%d, %d, %d) = %v, want %v", c.ejected, c.hosts, c.maxPercent, got, c.want)
		}
	}
}

func TestPanic(t *testing.T) {
	cases := []struct {
		healthy, hosts int
		minHealth      uint32
		want           bool
	}{
		{1, 4, 0, false},
		{1, 4, 50, true},
		{2, 4, 50, false},
		{0, 0, 50, false},
	}
	for _, c := range cases {
		if got := Panic(c.healthy, c.hosts, c.minHealth); got != c.want {
			t.Errorf("Panic(%d, %d, %d) = %v, want %v", c.healthy, c.hosts, c.minHealth, got, c.want)
		}
	}
}

// TestEjectorSeedCircuitBreaker drives the seed's outlier detection (3 consecutive 5xx,
// interval 30s, base ejection 30s, max 50 %) with a fake clock.
func TestEjectorSeedCircuitBreaker(t *testing.T) {
	clock := identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	config := OutlierDetection{
		Consecutive5xxErrors: 3,
		Interval:             Duration(30 * time.Second),
		BaseEjectionTime:     Duration(30 * time.Second),
		MaxEjectionPercent:   50,
	}
	e := NewEjector(config, clock, []string{"a", "b", "c", "d"})

	// Two 5xx, then a 200: the count starts over.
	for _, status := range []int{500, 503, 200, 500, 502} {
		if e.Record("a", status) {
			t.Fatalf("Record(a, %d) ejected before three consecutive 5xx", status)
		}
	}
	if !e.Record("a", 500) {
		t.Fatal("the third consecutive 5xx did not eject a")
	}
	if !e.Ejected("a") || e.Multiplier("a") != 1 {
		t.Fatalf("a: ejected %v multiplier %d, want ejected with multiplier 1", e.Ejected("a"), e.Multiplier("a"))
	}
	// b can go too (2 of 4 = 50 %), c cannot (3 of 4 = 75 % > 50 %).
	for range 3 {
		e.Record("b", 503)
	}
	for i := range 3 {
		if e.Record("c", 503) {
			t.Fatalf("c was ejected at answer %d beyond maxEjectionPercent", i+1)
		}
	}
	if !e.Ejected("b") || e.Ejected("c") {
		t.Fatalf("ejected: b %v c %v; want b only", e.Ejected("b"), e.Ejected("c"))
	}
	if e.Panic() {
		t.Error("Panic with minHealthPercent 0")
	}

	// Sweeps: nothing returns before base × multiplier has passed.
	clock.Advance(29 * time.Second)
	if got := e.Sweep(); len(got) != 0 {
		t.Fatalf("Sweep after 29s returned %v", got)
	}
	clock.Advance(time.Second)
	if got, want := e.Sweep(), []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Sweep after 30s returned %v, want %v", got, want)
	}

	// Ejected again at once: the multiplier is 2, so 60s.
	for range 3 {
		e.Record("a", 500)
	}
	if e.Multiplier("a") != 2 {
		t.Fatalf("multiplier after the second ejection = %d, want 2", e.Multiplier("a"))
	}
	clock.Advance(30 * time.Second)
	if got := e.Sweep(); len(got) != 0 {
		t.Fatalf("Sweep 30s into a 60s ejection returned %v", got)
	}
	clock.Advance(30 * time.Second)
	if got := e.Sweep(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("Sweep after 60s returned %v, want [a]", got)
	}
	// Healthy intervals lower the multiplier, one per sweep.
	clock.Advance(30 * time.Second)
	e.Sweep()
	if e.Multiplier("a") != 1 {
		t.Fatalf("multiplier after a healthy interval = %d, want 1", e.Multiplier("a"))
	}
	clock.Advance(30 * time.Second)
	e.Sweep()
	clock.Advance(30 * time.Second)
	e.Sweep()
	if e.Multiplier("a") != 0 {
		t.Fatalf("multiplier after healthy intervals = %d, want 0", e.Multiplier("a"))
	}

	// Hosts that leave are forgotten, and their ejection with them.
	for range 3 {
		e.Record("d", 500)
	}
	e.SetHosts([]string{"a", "b", "c"})
	if e.Ejected("d") || e.Record("d", 500) {
		t.Error("a removed host is still tracked")
	}
}

func TestEjectorGatewayErrors(t *testing.T) {
	clock := identity.NewFakeClock(time.Unix(0, 0))
	config := OutlierDetection{ConsecutiveGatewayErrors: 2, BaseEjectionTime: Duration(time.Second), MaxEjectionPercent: 100, MinHealthPercent: 60}
	e := NewEjector(config, clock, []string{"a", "b"})
	if e.Record("a", 502) || e.Record("a", 500) || e.Record("a", 504) {
		t.Fatal("a 500 between gateway errors did not reset their count")
	}
	if !e.Record("a", 503) {
		t.Fatal("two consecutive gateway errors did not eject")
	}
	if !e.Panic() {
		t.Error("1 healthy of 2 is below minHealthPercent 60 but Panic is false")
	}
	if e.Record("unknown", 500) {
		t.Error("Record ejected an unknown host")
	}
}
