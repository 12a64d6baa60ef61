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
}

// window returns what pod k did over the last window before now: the deltas (resets handled
// pair by pair) between its snapshots since now-window, as rates over their time span.
func (st *store) window(k podKey, now time.Time, window time.Duration) windowStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	w := windowStats{buckets: map[float64]float64{}}
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
	var read, wrote float64
	for i := start + 1; i < len(r.snaps); i++ {
		prev, cur := r.snaps[i-1].s, r.snaps[i].s
		w.success += counterDelta(prev.success, cur.success)
		w.failure += counterDelta(prev.failure, cur.failure)
		read += counterDelta(prev.readBytes, cur.readBytes)
		wrote += counterDelta(prev.wrote, cur.wrote)
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

// add merges o into w: counts and rates add up, buckets merge.
func (w *windowStats) add(o windowStats) {
	w.success += o.success
	w.failure += o.failure
	w.rps += o.rps
	w.tcpOpen += o.tcpOpen
	w.readRate += o.readRate
	w.writeRate += o.writeRate
	w.scraped = w.scraped || o.scraped
	for le, c := range o.buckets {
		w.buckets[le] += c
	}
}
