package stats

import (
	"fmt"
	"io"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// sample is what one scrape of one proxy says about its inbound traffic, summed over series.
type sample struct {
	success, failure float64 // response_total by classification
	// buckets are response_latency_ms cumulative counts by upper bound, +Inf included.
	buckets   map[float64]float64
	tcpOpen   float64 // tcp_open_connections (a gauge)
	readBytes float64 // tcp_read_bytes_total
	wrote     float64 // tcp_write_bytes_total
	// inboundBy splits the inbound responses by the client's identity (client_id; "" for
	// plain-text clients); outboundBy splits the outbound ones by the server's (server_id;
	// "" when the destination is not meshed). They answer --from, --to and edges.
	inboundBy, outboundBy map[string]*traffic
}

// traffic is the responses of one slice of a proxy's traffic: counts by classification and
// cumulative latency buckets.
type traffic struct {
	success, failure float64
	buckets          map[float64]float64
}

// peerTraffic returns the traffic of peer in by, creating it.
func peerTraffic(by map[string]*traffic, peer string) *traffic {
	t := by[peer]
	if t == nil {
		t = &traffic{buckets: map[float64]float64{}}
		by[peer] = t
	}
	return t
}

// addHistogram adds a histogram's cumulative buckets (+Inf included) to buckets.
func addHistogram(buckets map[float64]float64, h *dto.Histogram) {
	for _, b := range h.GetBucket() {
		buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
	}
	if n := len(h.GetBucket()); n == 0 || !math.IsInf(h.GetBucket()[n-1].GetUpperBound(), 1) {
		buckets[math.Inf(1)] += float64(h.GetSampleCount())
	}
}

// parseSample reads Prometheus text and sums the inbound series of the metrics stats uses.
func parseSample(r io.Reader) (sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return sample{}, fmt.Errorf("parse the metrics: %w", err)
	}
	s := sample{buckets: map[float64]float64{}, inboundBy: map[string]*traffic{}, outboundBy: map[string]*traffic{}}
	for _, m := range families["response_total"].GetMetric() {
		by, peer := s.outboundBy, label(m, "server_id")
		if inbound(m, false) {
			by, peer = s.inboundBy, label(m, "client_id")
		} else if label(m, "direction") != "outbound" {
			continue
		}
		t := peerTraffic(by, peer)
		switch label(m, "classification") {
		case "success":
			t.success += m.GetCounter().GetValue()
		case "failure":
			t.failure += m.GetCounter().GetValue()
		}
	}
	for _, t := range s.inboundBy {
		s.success += t.success
		s.failure += t.failure
	}
	for _, m := range families["response_latency_ms"].GetMetric() {
		if m.GetHistogram() == nil {
			continue
		}
		switch {
		case inbound(m, false):
			addHistogram(s.buckets, m.GetHistogram())
			addHistogram(peerTraffic(s.inboundBy, label(m, "client_id")).buckets, m.GetHistogram())
		case label(m, "direction") == "outbound":
			addHistogram(peerTraffic(s.outboundBy, label(m, "server_id")).buckets, m.GetHistogram())
		}
	}
	for _, m := range families["tcp_open_connections"].GetMetric() {
		if inbound(m, true) {
			s.tcpOpen += m.GetGauge().GetValue()
		}
	}
	for _, m := range families["tcp_read_bytes_total"].GetMetric() {
		if inbound(m, true) {
			s.readBytes += m.GetCounter().GetValue()
		}
	}
	for _, m := range families["tcp_write_bytes_total"].GetMetric() {
		if inbound(m, true) {
			s.wrote += m.GetCounter().GetValue()
		}
	}
	return s, nil
}

// inbound reports whether m is an inbound series; for TCP metrics, only the accepted side
// (peer="src") counts, so a connection is not counted twice.
func inbound(m *dto.Metric, tcp bool) bool {
	if label(m, "direction") != "inbound" {
		return false
	}
	return !tcp || label(m, "peer") == "src"
}

func label(m *dto.Metric, name string) string {
	for _, p := range m.GetLabel() {
		if p.GetName() == name {
			return p.GetValue()
		}
	}
	return ""
}

// counterDelta is how much a counter grew from prev to cur; a smaller cur means the counter
// was reset (the proxy restarted), so it grew by cur since then.
func counterDelta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	upperBound float64
	count      float64
}

// histogramQuantile returns the q-quantile (0 ≤ q ≤ 1) of cumulative buckets the way
// Prometheus's histogram_quantile does: linear interpolation inside the bucket the rank falls
// in, the first bucket starting at 0, and the highest finite bound when the rank falls in
// +Inf. It returns NaN when there are no observations.
func histogramQuantile(q float64, counts map[float64]float64) float64 {
	buckets := make([]bucket, 0, len(counts))
	for le, c := range counts {
		buckets = append(buckets, bucket{le, c})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].upperBound < buckets[j].upperBound })
	if len(buckets) < 2 || !math.IsInf(buckets[len(buckets)-1].upperBound, 1) {
		return math.NaN()
	}
	// Cumulative counts must not decrease (they can after merging deltas of reset counters).
	for i := 1; i < len(buckets); i++ {
		buckets[i].count = max(buckets[i].count, buckets[i-1].count)
	}
	total := buckets[len(buckets)-1].count
	if total == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	q = min(max(q, 0), 1)
	rank := q * total
	b := sort.Search(len(buckets)-1, func(i int) bool { return buckets[i].count >= rank })
	if b == len(buckets)-1 {
		return buckets[len(buckets)-2].upperBound
	}
	if b == 0 && buckets[0].upperBound <= 0 {
		return buckets[0].upperBound
	}
	start, end, count := 0.0, buckets[b].upperBound, buckets[b].count
	if b > 0 {
		start = buckets[b-1].upperBound
		count -= buckets[b-1].count
		rank -= buckets[b-1].count
	}
	if count == 0 {
		return end
	}
	return start + (end-start)*(rank/count)
}
