package stats

import (
	"context"
	"math"
	"testing"
	"time"
)

// The accuracy case, in fake time: 50 requests/s, every 10th answered 500, scraped
// about every 10 s with jitter (scrapes are not aligned with the window or the traffic).
// Every 1-minute answer, at any moment, shows 90 % success within a point and 50 RPS within
// 10 % (here much closer: 2 %).
func TestRateAccuracyWithUnalignedScrapes(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: start}
	p := newProxies(t, "echo-a")
	s := startService(t, clock, p, deploymentPod("shop", "echo", "echo-a", true))
	ctx := context.Background()
	rt := p.regs["echo-a"].Route(inboundLabels)
	jitter := []time.Duration{300 * time.Millisecond, -450 * time.Millisecond, 120 * time.Millisecond, 0, 800 * time.Millisecond, -200 * time.Millisecond}
	nextScrape := start.Add(3700 * time.Millisecond)
	n, scrapes := 0, 0
	for step := 1; step <= 3000; step++ { // 150 s of 50 ms steps
		clock.Advance(50 * time.Millisecond)
		// 2.5 requests a step on average: 2, then 3.
		for range 2 + step%2 {
			n++
			rt.Request()
			rt.Response(200+300*btoi(n%10 == 0), n%10 == 0, time.Millisecond)
		}
		if now := clock.Now(); !now.Before(nextScrape) {
			s.ScrapeOnce(ctx)
			scrapes++
			nextScrape = nextScrape.Add(10*time.Second + jitter[scrapes%len(jitter)])
		}
		if clock.Now().Sub(start) < 70*time.Second || step%7 != 0 {
			continue
		}
		rows, err := s.Stat(Query{Resource: ResourceDeployment, Namespace: "shop", Name: "echo", Window: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		sr, rps := val(rows[0].SuccessRate), val(rows[0].RequestsPerSecond)
		if math.Abs(sr-0.9) > 0.01 || math.Abs(rps-50) > 1 {
			t.Fatalf("at %s: success %.4f rps %.3f, want 0.90±0.01 and 50±1", clock.Now().Sub(start), sr, rps)
		}
	}
}
