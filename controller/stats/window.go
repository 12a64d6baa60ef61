package stats

import (
	"math"
	"sync"
	"time"
)

// DefaultRetention is how much history the store keeps per pod.
const DefaultRetention = 15 * time.Minute

// snapshot is one scrape of one pod at a time.
type snapshot struct {
	at time.Time
	s  sample
}

// podKey names a pod; uid tells a re-created pod of the same name apart.
type podKey struct{ namespace, name string }

// ring is a pod's snapshots, oldest first, trimmed to the retention.
type ring struct {
	uid   string
	snaps []snapshot
}

// store keeps each pod's recent snapshots. It is safe for concurrent use.
type store struct {
	retention time.Duration
	mu        sync.Mutex
	pods      map[podKey]*ring
}

func newStore(retention time.Duration) *store {
	return &store{retention: retention, pods: map[podKey]*ring{}}
}

// add records a scrape of pod k (with uid) at at and drops snapshots older than the retention.
func (st *store) add(k podKey, uid string, at time.Time, s sample) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.pods[k]
	if r == nil || r.uid != uid {
		r = &ring{uid: uid}
		st.pods[k] = r
	}
	r.snaps = append(r.snaps, snapshot{at: at, s: s})
	cut := 0
	for cut < len(r.snaps)-1 && at.Sub(r.snaps[cut].at) > st.retention {
		cut++
	}
	if cut > 0 {
		r.snaps = append(r.snaps[:0:0], r.snaps[cut:]...)
	}
}

// retain forgets every pod keep does not want.
func (st *store) retain(keep func(podKey) bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := range st.pods {
		if !keep(k) {
			delete(st.pods, k)
		}
	}
}

// windowStats is what a pod, or a group of pods, did over a window.
type windowStats struct {
	success, failure float64             // responses in the window
	rps              float64             // responses per second
	buckets          map[float64]float64 // latency bucket deltas
	tcpOpen          float64             // open connections at the last scrape
	readRate         float64             // bytes per second
	writeRate        float64
	scraped          bool // at least two scrapes fall in the window
	// sliced: the window measured a slice of the traffic (one peer's), without TCP figures.
	sliced bool
}

// slice picks the part of a sample's responses a window measures: nil means none.
type slice func(s *sample) *traffic

// peers returns the slice of the given peers' traffic (inbound or outbound), summed.
func peers(outbound bool, match func(peer string) bool) slice {
	return func(s *sample) *traffic {
		by := s.inboundBy
		if outbound {
			by = s.outboundBy
		}
		var sum *traffic
		for peer, t := range by {
			if !match(peer) {
				continue
			}
			if sum == nil {
				sum = &traffic{buckets: map[float64]float64{}}
			}
			sum.success += t.success
			sum.failure += t.failure
			for le, c := range t.buckets {
				sum.buckets[le] += c
			}
		}
		return sum
	}
}

var noTraffic = &traffic{}

// window returns what pod k did over the last window before now: the deltas (resets handled
// pair by pair) between its snapshots since now-window, as rates over their time span. With
// a slice, only that slice's responses count and TCP is not measured.
func (st *store) window(k podKey, now time.Time, window time.Duration, sl slice) windowStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	w := windowStats{buckets: map[float64]float64{}, sliced: sl != nil}
	r := st.pods[k]
	if r == nil || len(r.snaps) == 0 {
		return w
	}
	last := r.snaps[len(r.snaps)-1]
	w.tcpOpen = last.s.tcpOpen
	start := len(r.snaps) - 1
	for start > 0 && now.Sub(r.snaps[start-1].at) <= window {
		start--
	}
	if start == len(r.snaps)-1 {
		return w
	}
	pick := func(s *sample) *traffic {
		if sl == nil {
			return &traffic{success: s.success, failure: s.failure, buckets: s.buckets}
		}
		if t := sl(s); t != nil {
			return t
		}
		return noTraffic
	}
	var read, wrote float64
	for i := start + 1; i < len(r.snaps); i++ {
		prevS, curS := &r.snaps[i-1].s, &r.snaps[i].s
		prev, cur := pick(prevS), pick(curS)
		w.success += counterDelta(prev.success, cur.success)
		w.failure += counterDelta(prev.failure, cur.failure)
		read += counterDelta(prevS.readBytes, curS.readBytes)
		wrote += counterDelta(prevS.wrote, curS.wrote)
		reset := cur.buckets[math.Inf(1)] < prev.buckets[math.Inf(1)]
		for le, c := range cur.buckets {
			if reset {
				w.buckets[le] += c
			} else {
				w.buckets[le] += counterDelta(prev.buckets[le], c)
			}
		}
	}
	seconds := last.at.Sub(r.snaps[start].at).Seconds()
	w.scraped = true
	w.rps = (w.success + w.failure) / seconds
	w.readRate = read / seconds
	w.writeRate = wrote / seconds
	return w
}

// peersSeen returns every peer key of pod k's snapshots in the window (inbound or outbound).
func (st *store) peersSeen(k podKey, now time.Time, window time.Duration, outbound bool) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.pods[k]
	if r == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, snap := range r.snaps {
		if now.Sub(snap.at) > window+time.Minute {
			continue
		}
		by := snap.s.inboundBy
		if outbound {
			by = snap.s.outboundBy
		}
		for peer := range by {
			if !seen[peer] {
				seen[peer] = true
				out = append(out, peer)
			}
		}
	}
	return out
}

// add merges o into w: counts and rates add up, buckets merge.
func (w *windowStats) add(o windowStats) {
	w.success += o.success
	w.failure += o.failure
	w.rps += o.rps
	w.tcpOpen += o.tcpOpen
	w.readRate += o.readRate
	w.writeRate += o.writeRate
	w.scraped = w.scraped || o.scraped
	w.sliced = w.sliced || o.sliced
	for le, c := range o.buckets {
		w.buckets[le] += c
	}
}
