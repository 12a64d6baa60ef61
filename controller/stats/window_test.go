package stats

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestCounterDelta(t *testing.T) {
	for _, tt := range []struct{ prev, cur, want float64 }{
		{0, 0, 0}, {3, 10, 7}, {10, 10, 0}, {10, 4, 4}, // reset: grew by 4 since
	} {
		if got := counterDelta(tt.prev, tt.cur); got != tt.want {
			t.Errorf("counterDelta(%v, %v) = %v, want %v", tt.prev, tt.cur, got, tt.want)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	inf := math.Inf(1)
	buckets := map[float64]float64{10: 5, 20: 15, inf: 20}
	for _, tt := range []struct{ q, want float64 }{
		{0.25, 10}, // rank 5 ends bucket (0,10]
		{0.5, 15},  // rank 10: 5 of the 10 in (10,20] → halfway
		{0.6, 17},  // rank 12: 7 of the 10 in (10,20] → 10 + 10*0.7
		{0.99, 20}, // rank 19.8 in +Inf: the highest finite bound
		{0.1, 4},   // rank 2 of 5 in (0,10]
		{0, 0},     // rank 0
		{1.5, 20},  // clamped to 1
	} {
		if got := histogramQuantile(tt.q, buckets); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("quantile %v = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := histogramQuantile(0.5, map[float64]float64{10: 0, inf: 0}); !math.IsNaN(got) {
		t.Errorf("quantile of no observations = %v, want NaN", got)
	}
	if got := histogramQuantile(0.5, map[float64]float64{10: 3}); !math.IsNaN(got) {
		t.Errorf("quantile without +Inf = %v, want NaN", got)
	}
}

// Two pods' bucket deltas merge bucket by bucket before the quantile is taken.
func TestQuantileOfMergedBuckets(t *testing.T) {
	inf := math.Inf(1)
	a := windowStats{buckets: map[float64]float64{10: 4, 20: 4, inf: 4}}
	b := windowStats{buckets: map[float64]float64{10: 0, 20: 4, inf: 4}}
	merged := windowStats{buckets: map[float64]float64{}}
	merged.add(a)
	merged.add(b)
	// merged: le10=4, le20=8, +Inf=8.
	if got := histogramQuantile(0.5, merged.buckets); got != 10 {
		t.Errorf("p50 = %v, want 10", got)
	}
	if got := histogramQuantile(0.75, merged.buckets); got != 15 {
		t.Errorf("p75 = %v, want 15", got)
	}
}

func snap(success, failure float64, buckets map[float64]float64) sample {
	return sample{success: success, failure: failure, buckets: buckets}
}

func TestWindowRatesAndResets(t *testing.T) {
	inf := math.Inf(1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := newStore(15 * time.Minute)
	k := podKey{"shop", "web-1"}
	st.add(k, "u1", t0, snap(10, 0, map[float64]float64{10: 10, inf: 10}))
	st.add(k, "u1", t0.Add(10*time.Second), snap(20, 2, map[float64]float64{10: 20, inf: 22}))
	// The proxy restarted: counters start again from zero.
	st.add(k, "u1", t0.Add(20*time.Second), snap(5, 1, map[float64]float64{10: 5, inf: 6}))
	st.add(k, "u1", t0.Add(30*time.Second), snap(15, 1, map[float64]float64{10: 10, inf: 16}))

	w := st.window(k, t0.Add(30*time.Second), time.Minute, nil)
	// success: 10 + 5 (reset) + 10; failure: 2 + 1 (reset) + 0.
	if w.success != 25 || w.failure != 3 {
		t.Errorf("success, failure = %v, %v; want 25, 3", w.success, w.failure)
	}
	if want := 28.0 / 30; math.Abs(w.rps-want) > 1e-9 {
		t.Errorf("rps = %v, want %v", w.rps, want)
	}
	if w.buckets[10] != 10+5+5 || w.buckets[inf] != 12+6+10 {
		t.Errorf("buckets = %v, want le10=20, +Inf=28", w.buckets)
	}

	// A 15s window covers the last two snapshots only (20s and 30s).
	w = st.window(k, t0.Add(30*time.Second), 15*time.Second, nil)
	if w.success != 10 || w.failure != 0 || math.Abs(w.rps-1) > 1e-9 {
		t.Errorf("15s window: success %v failure %v rps %v; want 10, 0, 1", w.success, w.failure, w.rps)
	}

	// One snapshot in the window gives no rate.
	if w := st.window(k, t0.Add(30*time.Second+9*time.Minute), 10*time.Second, nil); w.scraped {
		t.Errorf("a window with one snapshot gave rates: %+v", w)
	}

	// Old snapshots fall out of the ring; a new pod UID starts it again.
	st.add(k, "u1", t0.Add(20*time.Minute), snap(16, 1, nil))
	if n := len(st.pods[k].snaps); n != 1 {
		t.Errorf("after 20 minutes the ring holds %d snapshots, want 1", n)
	}
	st.add(k, "u2", t0.Add(21*time.Minute), snap(1, 0, nil))
	if r := st.pods[k]; r.uid != "u2" || len(r.snaps) != 1 {
		t.Errorf("a re-created pod kept the old ring: %+v", r)
	}
}

func TestParseSampleKeepsInbound(t *testing.T) {
	text := `# TYPE response_total counter
response_total{direction="inbound",classification="success",status_code="200"} 7
response_total{direction="inbound",classification="failure",status_code="500"} 1
response_total{direction="outbound",classification="success",status_code="200"} 100
# TYPE response_latency_ms histogram
response_latency_ms_bucket{direction="inbound",le="10"} 6
response_latency_ms_bucket{direction="inbound",le="+Inf"} 8
response_latency_ms_sum{direction="inbound"} 50
response_latency_ms_count{direction="inbound"} 8
response_latency_ms_bucket{direction="outbound",le="10"} 100
response_latency_ms_bucket{direction="outbound",le="+Inf"} 100
response_latency_ms_sum{direction="outbound"} 50
response_latency_ms_count{direction="outbound"} 100
# TYPE tcp_open_connections gauge
tcp_open_connections{direction="inbound",peer="src"} 3
tcp_open_connections{direction="inbound",peer="dst"} 3
tcp_open_connections{direction="outbound",peer="src"} 9
`
	s, err := parseSample(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if s.success != 7 || s.failure != 1 || s.tcpOpen != 3 {
		t.Errorf("success %v failure %v tcp %v; want 7, 1, 3", s.success, s.failure, s.tcpOpen)
	}
	if s.buckets[10] != 6 || s.buckets[math.Inf(1)] != 8 || len(s.buckets) != 2 {
		t.Errorf("buckets %v, want le10=6 +Inf=8", s.buckets)
	}
	if _, err := parseSample(strings.NewReader("not metrics {")); err == nil {
		t.Error("parsing garbage gave no error")
	}
}
