//go:build e2e

package e2e

// Issue 13's "endpoints rotated every 5 seconds for 10 minutes: no request to a removed
// endpoint", end to end: four meshed echo pods that keep running and serving throughout,
// a Service that selects the two or three of them labelled rotation=in, and every 5 s one pod
// relabelled in and another out; a meshed load client sends 100 GETs a second to the Service by
// name and records, per answering pod, when each answered request was sent (e2e-echo load
// --record-starts). The test watches the Service's EndpointSlices and checks that no request
// sent more than rotationAllowance after a pod left the ready set was answered by that pod
// before it came back.
//
//	make e2e E2E_RUN=TestEndpointRotation                       # 10 minutes of rotations
//	E2E_ROTATION_DURATION=1m make e2e E2E_RUN=TestEndpointRotation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// rotationControlPlane is the control plane TestEndpointRotation installs.
	rotationControlPlane = "h-rot-cp"
	// rotationPods is how many echo pods take turns behind the Service; two are in at a time
	// (three for a moment during each rotation).
	rotationPods = 4
	// rotationEvery is the rotation period.
	rotationEvery = 5 * time.Second
	// rotationRate is the load client's GETs per second.
	rotationRate = 100
	// rotationAllowance is how long after a pod leaves the ready set a request may still be
	// sent to it: the propagation bound TestDestinationUnderLoad uses for a deleted pod (1 s),
	// from the EndpointSlice change through the controller's watch and the destination stream
	// to the client's proxy. E2E_ROTATION_ALLOWANCE overrides it (a Go duration), for example
	// 0s to see the test fail on requests already in the proxy's pipeline.
	rotationAllowance = time.Second
)

// rotationServer is one echo pod, %[2]d its index, %[3]s its rotation label (in or out). It
// serves whatever its label: a request that reaches it after it left the Service is answered,
// so only the answering pod's name tells it.
const rotationServer = `
apiVersion: v1
kind: Pod
metadata:
  name: echo-%[2]d
  labels: {app: rot-echo, rotation: %[3]s}
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: echo
      image: %[1]s
      imagePullPolicy: Never
      args: [serve, --addr, ":8080", --quiet]
      ports: [{name: http, containerPort: 8080}]
      readinessProbe:
        httpGet: {path: /ready, port: 8080}
        periodSeconds: 1
`

const rotationService = `
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: rot-echo, rotation: in}
  ports: [{name: http, port: 80, targetPort: http}]
`

// rotationClient sends the GETs through its proxy and serves its counters and the send times
// of the answered requests on 9000, which its proxy leaves alone.
const rotationClient = `
apiVersion: v1
kind: Pod
metadata:
  name: load
  annotations:
    config.lightmesh.io/skip-inbound-ports: "9000"
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: load
      image: %[1]s
      imagePullPolicy: Never
      args: [load, "http://echo/", --rate, "%[2]d", --timeout, 2s, --stats-addr, ":9000", --record-starts]
`

// loadStarts is what the load client serves at /starts (test/images/echo, StartsSummary).
type loadStarts struct {
	Start time.Time          `json:"start"`
	Now   time.Time          `json:"now"`
	Pods  map[string][]int64 `json:"pods"` // microseconds after Start
}

// times returns the send times of the requests each pod answered, sorted.
func (s loadStarts) times() map[string][]time.Time {
	out := map[string][]time.Time{}
	for pod, offsets := range s.Pods {
		ts := make([]time.Time, 0, len(offsets))
		for _, us := range offsets {
			ts = append(ts, s.Start.Add(time.Duration(us)*time.Microsecond))
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		out[pod] = ts
	}
	return out
}

func TestEndpointRotation(t *testing.T) {
	duration, allowance := 10*time.Minute, rotationAllowance
	for name, v := range map[string]*time.Duration{"E2E_ROTATION_DURATION": &duration, "E2E_ROTATION_ALLOWANCE": &allowance} {
		if s := os.Getenv(name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				t.Fatalf("%s=%q: want a Go duration such as 10m or 1s", name, s)
			}
			*v = d
		}
	}
	if duration < 2*rotationEvery {
		t.Fatalf("E2E_ROTATION_DURATION=%s: want at least %s (two rotations)", duration, 2*rotationEvery)
	}
	c := localCluster(t)
	// The whole test is bounded: the rotations plus 8 minutes for installing, warming up and
	// checking.
	ctx, cancel := context.WithTimeout(context.Background(), duration+8*time.Minute)
	t.Cleanup(cancel)
	deadline, _ := ctx.Deadline()
	bounded := func(what string) {
		t.Helper()
		if ctx.Err() != nil {
			t.Fatalf("%s: the test's time (%s: the rotations plus 8 minutes) ran out", what, duration+8*time.Minute)
		}
	}
	mesh := buildMesh(t)
	phase := phaseLogger(t)

	installOwnControlPlane(t, c, mesh, rotationControlPlane)
	phase("control plane available")
	bounded("installing the control plane")
	app := c.namespace(t, "h-rot")
	// Watch first, so the timeline starts before the Service has any endpoint.
	timeline := watchReadyEndpoints(t, ctx, c, app, "echo")

	inject := func(manifest string) string { return injectFor(t, c, mesh, rotationControlPlane, manifest) }
	var pods []string
	var manifest strings.Builder
	for i := range rotationPods {
		label := "out"
		if i < 2 {
			label = "in"
		}
		pods = append(pods, fmt.Sprintf("echo-%d", i))
		manifest.WriteString("---" + fmt.Sprintf(rotationServer, testImage("e2e-echo"), i, label))
	}
	manifest.WriteString("---" + rotationService)
	c.apply(t, app, inject(manifest.String()))
	if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the echo pods did not become ready: %v\n%s", err, c.describe(t, app))
	}
	c.apply(t, app, inject(fmt.Sprintf(rotationClient, testImage("e2e-echo"), rotationRate)))
	if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod/load", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed load client did not become ready: %v\n%s", err, c.describe(t, app))
	}
	clientIP := strings.TrimSpace(c.must(t, "-n", app, "get", "pod", "load", "-o", "jsonpath={.status.podIP}"))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := c.run(t, time.Minute, "-n", app, "logs", "load", "-c", "mesh-proxy", "--tail=100")
		t.Logf("the load client's proxy, last lines:\n%s", logs)
		// What could keep it on a removed endpoint: a stale destination stream, or a
		// connection carried as opaque TCP (one endpoint for its life) after a silent start.
		t.Logf("the load client's proxy's counters:\n%s", proxyCounters(t, clientIP, "destination_", "protocol_detect_timeouts_total", "tcp_open_total"))
		restarts, _ := c.run(t, time.Minute, "-n", rotationControlPlane, "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}{\" restarts:\"}{range .status.containerStatuses[*]}{\" \"}{.name}{\"=\"}{.restartCount}{end}{\"\\n\"}{end}")
		t.Logf("the control plane's restarts:\n%s", restarts)
	})

	httpc := &http.Client{Timeout: 10 * time.Second}
	stats := func() loadStats {
		t.Helper()
		return readLoadStats(t, httpc, clientIP)
	}

	// Warm up: exactly the two pods labelled in answer, and the slice shows them ready.
	in, out := []string{pods[0], pods[1]}, []string{pods[2], pods[3]} // each oldest first
	eventually(t, 2*time.Minute, "the EndpointSlice to list echo-0 and echo-1 ready, and exactly they to answer", func() (bool, string) {
		ready := timeline.ready()
		if !slices.Equal(ready, []string{pods[0], pods[1]}) {
			return false, fmt.Sprintf("ready in the EndpointSlices: %v", ready)
		}
		from := stats()
		var to loadStats
		for to = from; to.Now.Sub(from.Now) < 2*time.Second; to = stats() {
			time.Sleep(250 * time.Millisecond) // polling the counters over a 2 s window
		}
		got := answering(from, to)
		return slices.Equal(got, []string{pods[0], pods[1]}), fmt.Sprintf("answering in the last 2s: %v", got)
	})
	base := stats()
	phase(fmt.Sprintf("load flowing to %v: %d sent, %d failed before the baseline", in, base.Sent, base.Failed))
	if base.Failed > 0 {
		t.Logf("failures during the warm-up (not counted): %s", base.failuresSince(loadStats{}))
	}
	bounded("warming up")

	// Rotate: every rotationEvery, the pod out longest goes in, then the pod in longest goes
	// out, so the Service has two endpoints, three for a moment.
	type rotation struct {
		inPod, outPod string
		outLabelling  time.Time // when kubectl started relabelling outPod
	}
	var rotations []rotation
	steps := int(duration / rotationEvery)
	begin := time.Now()
	timer := time.NewTimer(rotationEvery)
	defer timer.Stop()
	relabel := func(pod, value string) {
		t.Helper()
		if _, err := c.run(t, 30*time.Second, "-n", app, "label", "pod", pod, "rotation="+value, "--overwrite"); err != nil {
			t.Fatalf("rotation %d: relabelling %s %s: %v", len(rotations)+1, pod, value, err)
		}
	}
	var lateSteps int
	for i := 1; i <= steps; i++ {
		select {
		case <-ctx.Done():
			bounded(fmt.Sprintf("rotation %d of %d", i, steps))
		case <-timer.C: // the rotation schedule
		}
		if late := time.Since(begin.Add(time.Duration(i) * rotationEvery)); late > rotationEvery/2 {
			lateSteps++
		}
		inPod, outPod := out[0], in[0]
		relabel(inPod, "in")
		outLabelling := time.Now()
		relabel(outPod, "out")
		rotations = append(rotations, rotation{inPod: inPod, outPod: outPod, outLabelling: outLabelling})
		in, out = append(in[1:], inPod), append(out[1:], outPod)
		timer.Reset(time.Until(begin.Add(time.Duration(i+1) * rotationEvery)))
		if i%12 == 0 {
			s := stats()
			phase(fmt.Sprintf("%d rotations: %d requests sent, %d failed, in now %v", i, s.Sent, s.Failed, in))
		}
	}
	rotatedFor := time.Since(begin)
	phase(fmt.Sprintf("%d rotations in %s", len(rotations), rotatedFor.Round(time.Millisecond)))

	// The last pod out stays out for a rotation period more, under load, so that its removal is
	// checked like the others; then the EndpointSlices must show the last state.
	wantReady := slices.Clone(in)
	slices.Sort(wantReady)
	eventually(t, 30*time.Second, fmt.Sprintf("the EndpointSlices to list exactly %v ready", wantReady), func() (bool, string) {
		got := timeline.ready()
		return slices.Equal(got, wantReady), fmt.Sprintf("ready: %v", got)
	})
	settle := stats()
	for s := settle; s.Now.Sub(settle.Now) < rotationEvery; s = stats() {
		time.Sleep(250 * time.Millisecond) // polling the counters while the load runs on
	}
	bounded("after the rotations")

	// Every request that will ever be recorded as sent before cutoff has finished by now:
	// the client's timeout is 2 s.
	final := stats()
	var starts loadStarts
	if err := getJSON(&http.Client{Timeout: time.Minute}, "http://"+clientIP+":9000/starts", &starts); err != nil {
		t.Fatalf("reading the send times of the answered requests: %v", err)
	}
	cutoff := starts.Now.Add(-3 * time.Second)
	changes, watchErr := timeline.snapshot()
	if watchErr != nil {
		t.Fatalf("the EndpointSlice watch ended before the test did (%v): the timeline is incomplete", watchErr)
	}
	r := analyseRotation(changes, timeline.origin, pods, starts.times(), base.Now, cutoff, allowance)

	// Zero failed requests.
	if msg := final.failuresSince(base); msg != "" {
		t.Errorf("rotating endpoints every %s under load: %s", rotationEvery, msg)
	}
	// Zero requests to a removed endpoint.
	if len(r.late) > 0 {
		// One line per stay out of the ready set with late requests.
		type stayOut struct {
			pod  string
			left time.Time
		}
		var order []stayOut
		byStay := map[stayOut][]rotationHit{}
		for _, h := range r.late {
			k := stayOut{h.pod, h.left}
			if byStay[k] == nil {
				order = append(order, k)
			}
			byStay[k] = append(byStay[k], h)
		}
		var b strings.Builder
		for i, k := range order {
			if i == 20 {
				fmt.Fprintf(&b, "  ... and %d more stays out\n", len(order)-20)
				break
			}
			hits := byStay[k]
			first, last := hits[0], hits[len(hits)-1]
			when := fmt.Sprintf("after it left the ready set at %s", k.left.UTC().Format("15:04:05.000"))
			if first.beforeAnyEntry {
				when = fmt.Sprintf("before it was ever in the ready set (watched from %s)", k.left.UTC().Format("15:04:05.000"))
			}
			fmt.Fprintf(&b, "  %s answered %d requests sent %s: the first sent at %s (+%s), the last at %s (+%s)\n",
				k.pod, len(hits), when, first.sent.UTC().Format("15:04:05.000"), first.lateness.Round(time.Millisecond),
				last.sent.UTC().Format("15:04:05.000"), last.lateness.Round(time.Millisecond))
		}
		t.Errorf("%d requests sent more than %s after their pod left the Service's ready set were answered by that pod (it keeps serving; the client's proxy must stop choosing it once its endpoint is removed):\n%s",
			len(r.late), allowance, b.String())
	}
	// Every pod got traffic while it was in.
	for _, s := range r.starved {
		t.Errorf("%s was in the ready set from %s to %s (%s) but answered no request sent then",
			s.pod, s.from.UTC().Format("15:04:05.000"), s.to.UTC().Format("15:04:05.000"), s.to.Sub(s.from).Round(time.Millisecond))
	}
	// At least duration/rotationEvery rotations, each seen in the EndpointSlices.
	if len(rotations) < steps {
		t.Errorf("%d rotations in %s, want %d", len(rotations), duration, steps)
	}
	var leaves int
	var worstRemoval time.Duration
	for _, rot := range rotations {
		left, ok := r.firstLeave(rot.outPod, rot.outLabelling)
		if !ok {
			t.Errorf("%s was relabelled out at %s but never left the ready set", rot.outPod, rot.outLabelling.UTC().Format("15:04:05.000"))
			continue
		}
		leaves++
		worstRemoval = max(worstRemoval, left.Sub(rot.outLabelling))
	}
	worst := "none: no request sent after a pod left reached it"
	if n := len(r.lastSent); n > 0 {
		worst += fmt.Sprintf(" (over the %d removals, the last request a removed pod answered was sent %s to %s after it left, median %s; negative: before the test's watch saw it leave)",
			n, r.lastSent[0].Round(time.Millisecond), r.lastSent[n-1].Round(time.Millisecond), r.lastSent[n/2].Round(time.Millisecond))
	}
	if r.worst.pod != "" {
		worst = fmt.Sprintf("%s (%s, sent %s, it left at %s)", r.worst.lateness.Round(time.Millisecond), r.worst.pod,
			r.worst.sent.UTC().Format("15:04:05.000"), r.worst.left.UTC().Format("15:04:05.000"))
		if n := len(r.lastSent); n > 0 {
			worst += fmt.Sprintf("; over the %d removals, the last request a removed pod answered was sent %s to %s after it left, median %s",
				n, r.lastSent[0].Round(time.Millisecond), r.lastSent[n-1].Round(time.Millisecond), r.lastSent[n/2].Round(time.Millisecond))
		}
	}
	if lateSteps > 0 {
		t.Logf("%d rotations started over %s late (kubectl slow on a busy machine)", lateSteps, rotationEvery/2)
	}
	watchLag := "no join to compare"
	if len(r.firstSent) > 0 {
		watchLag = fmt.Sprintf("the earliest first request to a joining pod was sent %s the test's watch saw it join (how late the watch may see a change)", signed(r.firstSent[0]))
	}
	// The summary RELIABILITY.md quotes.
	t.Logf("endpoint rotation summary: %d rotations every %s over %s (%d seen leaving the EndpointSlices, the slice change at most %s after the relabel command started), %d pods always serving; %d requests at %d/s, %d failed; %d requests to a removed endpoint (sent over %s after it left the ready set); worst lateness %s; %d requests in all reached a pod after it left, %d within %s before it was seen back; %d in-intervals, each with answers (fewest %d); %s",
		len(rotations), rotationEvery, rotatedFor.Round(time.Second), leaves, worstRemoval.Round(time.Millisecond), rotationPods,
		final.Sent-base.Sent, rotationRate, final.Failed-base.Failed, len(r.late), allowance, worst, r.afterLeaving,
		r.beforeSeenJoin, joinSlack, r.inIntervals, r.fewestInAnswers, watchLag)
	if time.Until(deadline) < 0 {
		t.Errorf("the test overran its bound of %s", duration+8*time.Minute)
	}
}

// proxyCounters returns the lines of the /metrics of the proxy at ip that start with one of
// prefixes (for a failing test's report); what went wrong reading them, if it did.
func proxyCounters(t *testing.T, ip string, prefixes ...string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + ip + ":4191/metrics")
	if err != nil {
		return fmt.Sprintf("(reading them: %v)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Sprintf("(reading them: %v)", err)
	}
	var b strings.Builder
	for line := range strings.SplitSeq(string(body), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				b.WriteString("  " + line + "\n")
				break
			}
		}
	}
	return b.String()
}

// signed says d as "150ms after" or "20ms before".
func signed(d time.Duration) string {
	if d < 0 {
		return (-d).Round(time.Millisecond).String() + " before"
	}
	return d.Round(time.Millisecond).String() + " after"
}

// readyChange is a pod entering or leaving a Service's ready set (the union of its
// EndpointSlices' ready, not terminating endpoints), seen at At.
type readyChange struct {
	At    time.Time
	Pod   string
	Ready bool
}

// endpointTimeline follows the ready set of a Service's EndpointSlices; safe for concurrent use.
type endpointTimeline struct {
	origin time.Time // when the watch started; every pod was out before its first change

	mu      sync.Mutex
	slices  map[string][]string // slice name -> its ready pods
	current map[string]bool     // the union
	changes []readyChange
	err     error // why the watch ended, if it did
}

func newEndpointTimeline(origin time.Time) *endpointTimeline {
	return &endpointTimeline{origin: origin, slices: map[string][]string{}, current: map[string]bool{}}
}

// observe records a watch event of one slice: its ready pods now (none when deleted).
func (tl *endpointTimeline) observe(at time.Time, slice string, deleted bool, readyPods []string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if deleted {
		delete(tl.slices, slice)
	} else {
		tl.slices[slice] = readyPods
	}
	union := map[string]bool{}
	for _, ps := range tl.slices {
		for _, p := range ps {
			union[p] = true
		}
	}
	var changed []readyChange
	for p := range union {
		if !tl.current[p] {
			changed = append(changed, readyChange{At: at, Pod: p, Ready: true})
		}
	}
	for p := range tl.current {
		if !union[p] {
			changed = append(changed, readyChange{At: at, Pod: p, Ready: false})
		}
	}
	sort.Slice(changed, func(i, j int) bool { return changed[i].Pod < changed[j].Pod })
	tl.changes = append(tl.changes, changed...)
	tl.current = union
}

func (tl *endpointTimeline) ended(err error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.err = err
}

// ready returns the pods in the ready set now, sorted.
func (tl *endpointTimeline) ready() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []string
	for p := range tl.current {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// snapshot returns the changes so far and why the watch ended, if it did.
func (tl *endpointTimeline) snapshot() ([]readyChange, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.changes), tl.err
}

// watchReadyEndpoints follows the ready set of service's EndpointSlices with
// `kubectl get endpointslices --watch --output-watch-events -o json`, stamping each event
// with the time the test reads it. The kubectl process is stopped when ctx ends or the test
// does.
func watchReadyEndpoints(t *testing.T, ctx context.Context, c *cluster, ns, service string) *endpointTimeline {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, c.kubectl, "--kubeconfig", c.kubeconfig, "-n", ns, "get", "endpointslices",
		"-l", "kubernetes.io/service-name="+service, "--watch", "--output-watch-events", "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	tl := newEndpointTimeline(time.Now())
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubectl get endpointslices --watch: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
	})
	go func() {
		defer close(done)
		dec := json.NewDecoder(out)
		for {
			var ev struct {
				Type   string `json:"type"`
				Object struct {
					Metadata  struct{ Name string } `json:"metadata"`
					Endpoints []struct {
						TargetRef  *struct{ Name string } `json:"targetRef"`
						Conditions struct {
							Ready       *bool `json:"ready"`
							Terminating *bool `json:"terminating"`
						} `json:"conditions"`
					} `json:"endpoints"`
				} `json:"object"`
			}
			if err := dec.Decode(&ev); err != nil {
				tl.ended(fmt.Errorf("reading the watch (kubectl said %q): %w", strings.TrimSpace(stderr.String()), err))
				return
			}
			now := time.Now()
			var ready []string
			for _, e := range ev.Object.Endpoints {
				// As the destination service counts them: ready unless said not, not terminating.
				c := e.Conditions
				if e.TargetRef != nil && (c.Ready == nil || *c.Ready) && (c.Terminating == nil || !*c.Terminating) {
					ready = append(ready, e.TargetRef.Name)
				}
			}
			switch ev.Type {
			case "ADDED", "MODIFIED", "DELETED":
				tl.observe(now, ev.Object.Metadata.Name, ev.Type == "DELETED", ready)
			default:
				tl.ended(fmt.Errorf("unexpected watch event %q", ev.Type))
				return
			}
		}
	}()
	return tl
}

// rotationHit is a request a pod answered though it was sent after the pod left the ready set.
type rotationHit struct {
	pod            string
	sent, left     time.Time
	lateness       time.Duration // sent - left
	beforeAnyEntry bool          // the pod had never been in the ready set
}

// rotationStarved is an in-interval in which the pod answered no request sent then.
type rotationStarved struct {
	pod      string
	from, to time.Time
}

type rotationReport struct {
	changes []readyChange
	// late are the requests sent more than the allowance after their pod left, oldest first.
	late []rotationHit
	// worst is the request sent latest after its pod left (within the allowance or not).
	worst rotationHit
	// afterLeaving counts the requests sent after their pod left, within the allowance or not.
	afterLeaving int
	// lastSent is, for each time a pod left, when the last request it answered (before it
	// came back) was sent, relative to its leaving; sorted.
	lastSent []time.Duration
	// firstSent is, for each time a pod joined, when the first request it answered was sent,
	// relative to the join as the watch saw it; sorted.
	firstSent []time.Duration
	// beforeSeenJoin counts the requests sent to a pod out of the ready set within joinSlack
	// before the watch saw it come back: not counted as sent to a removed endpoint.
	beforeSeenJoin int
	// inIntervals counts the checked intervals in which a pod was in; fewestInAnswers is the
	// least answers in one of them.
	inIntervals, fewestInAnswers int
	starved                      []rotationStarved
}

// firstLeave returns the first time pod left the ready set after after.
func (r rotationReport) firstLeave(pod string, after time.Time) (time.Time, bool) {
	for _, ch := range r.changes {
		if ch.Pod == pod && !ch.Ready && ch.At.After(after) {
			return ch.At, true
		}
	}
	return time.Time{}, false
}

// minInInterval is the shortest stay in the ready set in which a pod must get traffic: the
// rotation gives each pod two periods in a row; shorter stays (a pod briefly unready) are
// not held to it.
const minInInterval = 3 * time.Second

// joinSlack: a pod counts as back from joinSlack before the test's watch saw it join the
// ready set, since the client's proxy may learn of the change (from the controller's own
// watch) before the test's kubectl prints it. It can only excuse requests sent a whole
// period after the pod left (a pod stays out 10 s), never the ones right after a removal.
const joinSlack = time.Second

// analyseRotation checks the answered requests (their send times per pod, sorted) against the
// ready-set changes (in order, from origin, before which no pod was in): a request sent
// while its pod was out, more than allowance after it left (or at any time before it was first
// in), is late, unless sent within joinSlack before the pod came back; every stay in the ready
// set that overlaps [from, to] by minInInterval or more must have answers sent within it.
func analyseRotation(changes []readyChange, origin time.Time, pods []string, sent map[string][]time.Time, from, to time.Time, allowance time.Duration) rotationReport {
	r := rotationReport{changes: changes, fewestInAnswers: -1}
	// Every pod that answered is checked, even one the test did not expect.
	all := slices.Clone(pods)
	for p := range sent {
		if !slices.Contains(all, p) {
			all = append(all, p)
		}
	}
	slices.Sort(all)
	for _, pod := range all {
		type stay struct {
			in       bool
			from, to time.Time // to is zero while it lasts
			never    bool      // out since the origin, never in before
		}
		stays := []stay{{in: false, from: origin, never: true}}
		for _, ch := range changes {
			if ch.Pod != pod {
				continue
			}
			last := &stays[len(stays)-1]
			if last.in == ch.Ready {
				continue
			}
			last.to = ch.At
			stays = append(stays, stay{in: ch.Ready, from: ch.At})
		}
		times := sent[pod]
		for _, s := range stays {
			end := s.to
			if end.IsZero() {
				end = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			// The answers sent within [s.from, end).
			lo := sort.Search(len(times), func(i int) bool { return !times[i].Before(s.from) })
			hi := sort.Search(len(times), func(i int) bool { return !times[i].Before(end) })
			if s.never {
				lo = 0 // anything before the first entry counts, even before the watch began
			}
			if !s.in && !s.never {
				// The last request the pod answered that was sent before it was (about to be)
				// back, relative to its leaving: negative when the client's proxy stopped
				// choosing it before the test's watch saw the change.
				stop := hi
				if !s.to.IsZero() {
					stop = sort.Search(len(times), func(i int) bool { return !times[i].Before(s.to.Add(-joinSlack)) })
				}
				if stop > 0 {
					r.lastSent = append(r.lastSent, times[stop-1].Sub(s.from))
				}
			}
			if !s.in {
				for _, at := range times[lo:hi] {
					if !s.to.IsZero() && !at.Before(s.to.Add(-joinSlack)) {
						r.beforeSeenJoin++ // the pod was (about to be) back
						continue
					}
					h := rotationHit{pod: pod, sent: at, left: s.from, lateness: at.Sub(s.from), beforeAnyEntry: s.never}
					r.afterLeaving++
					if !s.never && h.lateness > r.worst.lateness {
						r.worst = h
					}
					if h.lateness > allowance || s.never {
						r.late = append(r.late, h)
					}
				}
				continue
			}
			// How early the client's proxy used the pod, against when the test's watch saw it
			// join: a measure of how late the watch sees changes (and so of how lenient the
			// lateness of requests after a removal may be).
			if k := sort.Search(len(times), func(i int) bool { return !times[i].Before(s.from.Add(-joinSlack)) }); k < len(times) && times[k].Before(end) {
				r.firstSent = append(r.firstSent, times[k].Sub(s.from))
			}
			// A stay in, clipped to [from, to].
			cf, ct := s.from, end
			if cf.Before(from) {
				cf = from
			}
			if ct.After(to) {
				ct = to
			}
			if ct.Sub(cf) < minInInterval {
				continue
			}
			n := hi - lo
			r.inIntervals++
			if r.fewestInAnswers < 0 || n < r.fewestInAnswers {
				r.fewestInAnswers = n
			}
			if n == 0 {
				r.starved = append(r.starved, rotationStarved{pod: pod, from: s.from, to: end})
			}
		}
	}
	slices.SortFunc(r.late, func(a, b rotationHit) int { return a.sent.Compare(b.sent) })
	slices.Sort(r.lastSent)
	slices.Sort(r.firstSent)
	if r.fewestInAnswers < 0 {
		r.fewestInAnswers = 0
	}
	return r
}

// The analysis itself, on a made-up timeline (no cluster): it must flag a request sent after
// the allowance, one to a pod never in, and a stay in without traffic, and only those.
func TestEndpointRotationAnalysis(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tl := newEndpointTimeline(at(0))
	tl.observe(at(1), "echo-abc", false, []string{"a", "b"})
	tl.observe(at(6), "echo-abc", false, []string{"a", "b", "c"})
	tl.observe(at(6.1), "echo-abc", false, []string{"b", "c"}) // a leaves at 6.1
	tl.observe(at(11), "echo-abc", false, []string{"b", "c", "a"})
	tl.observe(at(11.2), "echo-abc", false, []string{"c", "a"}) // b leaves at 11.2
	tl.observe(at(16), "echo-abc", true, nil)                   // the slice deleted: all leave at 16
	changes, _ := tl.snapshot()
	if got := len(changes); got != 8 {
		t.Fatalf("%d changes, want 8: %+v", got, changes)
	}
	sent := map[string][]time.Time{
		"a": {at(2), at(6.05), at(6.5), at(10.5), at(12), at(16.5)}, // 6.5: 0.4 s late, fine; 10.5: 0.5 s before it is back, fine; 16.5: 0.5 s after the deletion, fine
		"b": {at(2), at(7), at(11.1), at(12.3)},                     // 12.3: 1.1 s after leaving: late
		"c": {at(8), at(9)},
		"d": {at(3)}, // never in
	}
	r := analyseRotation(changes, tl.origin, []string{"a", "b", "c", "d", "e"}, sent, at(1), at(16), time.Second)
	var late []string
	for _, h := range r.late {
		late = append(late, fmt.Sprintf("%s@%s", h.pod, h.sent.Sub(t0)))
	}
	if want := []string{"d@3s", "b@12.3s"}; !slices.Equal(late, want) {
		t.Errorf("late requests %v, want %v", late, want)
	}
	if r.afterLeaving != 4 {
		t.Errorf("%d requests after their pod left, want 4 (a@6.5, a@16.5, b@12.3, d@3)", r.afterLeaving)
	}
	// a joined at 1 (first 2) and 11 (first 10.5), b at 1 (first 2), c at 6 (first 8).
	if want := []time.Duration{-500 * time.Millisecond, time.Second, time.Second, 2 * time.Second}; !slices.EqualFunc(r.firstSent, want, func(a, b time.Duration) bool {
		return (a - b).Abs() < time.Microsecond
	}) {
		t.Errorf("first requests after joining %v, want %v", r.firstSent, want)
	}
	// a left at 6.1 (last 6.5) and 16 (last 16.5), b at 11.2 (last 12.3), c at 16 (last 9).
	if want := []time.Duration{-7 * time.Second, 400 * time.Millisecond, 500 * time.Millisecond, 1100 * time.Millisecond}; !slices.EqualFunc(r.lastSent, want, func(a, b time.Duration) bool {
		return (a - b).Abs() < time.Microsecond
	}) {
		t.Errorf("last requests after leaving %v, want %v", r.lastSent, want)
	}
	if r.beforeSeenJoin != 1 {
		t.Errorf("%d requests just before their pod was seen back, want 1 (a@10.5)", r.beforeSeenJoin)
	}
	// b's request is the worst: 1.1 s after b left (d, never in, has no lateness to compare).
	if r.worst.pod != "b" || r.worst.lateness != 1100*time.Millisecond {
		t.Errorf("worst %+v, want b's, 1.1s late", r.worst)
	}
	// Stays in: a [1,6.1) and [11,16), b [1,11.2), c [6,16); b's second stay does not exist.
	// c answered in [6,16): fine. All have answers.
	if r.inIntervals != 4 || len(r.starved) != 0 || r.fewestInAnswers != 1 {
		t.Errorf("in-intervals %d, starved %v, fewest answers %d; want 4, none, 1 (a's second stay)", r.inIntervals, r.starved, r.fewestInAnswers)
	}
	sent["c"] = nil
	if r := analyseRotation(changes, tl.origin, []string{"a", "b", "c"}, sent, at(1), at(16), time.Second); len(r.starved) != 1 || r.starved[0].pod != "c" {
		t.Errorf("starved %v, want c's stay [6s,16s)", r.starved)
	}
	if r := analyseRotation(changes, tl.origin, []string{"a", "b", "c"}, sent, at(1), at(16), 0); len(r.late) != 4 {
		t.Errorf("with no allowance, %d late requests, want 4 (%v)", len(r.late), r.late)
	}
}
