//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// destScaleControlPlane is the control plane TestDestinationUnderLoad installs.
const destScaleControlPlane = "h-dest-cp"

// loadRate is the client's constant rate of GETs, requests per second.
const loadRate = 200

// defaultControllerOutage is how long TestDestinationUnderLoad keeps the controller away
// (issue 13: "controller killed for 5 minutes"); E2E_CONTROLLER_OUTAGE overrides it.
const defaultControllerOutage = 5 * time.Minute

const destScaleServer = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 1
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      terminationGracePeriodSeconds: 20
      containers:
        - name: echo
          image: %[1]s
          imagePullPolicy: Never
          args: [serve, --addr, ":8080", --drain, 5s, --quiet]
          env: [{name: VERSION, value: "1"}]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /ready, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: http}]
`

// The client sends loadRate GETs a second to the Service by its name, through its proxy, and
// serves its counters on 9000, which its proxy leaves alone so the test reads them directly.
const destScaleClient = `
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
      args: [load, "http://echo/", --rate, "%[2]d", --timeout, 2s, --stats-addr, ":9000"]
`

// loadStats is what the load client serves at /stats (test/images/echo, LoadSummary).
type loadStats struct {
	Now      time.Time        `json:"now"`
	Sent     int64            `json:"sent"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Failures map[string]int64 `json:"failures"`
	// FailuresPerSecond is keyed by the second, RFC 3339 UTC.
	FailuresPerSecond map[string]int64 `json:"failures_per_second"`
	// SendLagPerSecond: the seconds in which the load generator itself was late, in ms.
	SendLagPerSecond map[string]float64 `json:"send_lag_ms_per_second"`
	Pods             map[string]*struct {
		Answers       int64     `json:"answers"`
		LatencyMillis float64   `json:"latency_ms"`
		First         time.Time `json:"first"`
		Last          time.Time `json:"last"`
	} `json:"pods"`
	RecentFailures []struct {
		At    time.Time `json:"at"`
		Kind  string    `json:"kind"`
		Error string    `json:"error"`
	} `json:"recent_failures"`
}

func (s loadStats) answers(pod string) int64 {
	if p := s.Pods[pod]; p != nil {
		return p.Answers
	}
	return 0
}

// failuresSince describes the failures after base, or "" when there were none.
func (s loadStats) failuresSince(base loadStats) string {
	if s.Failed == base.Failed {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d requests failed (all failures so far by kind: %v); the last ones:\n",
		s.Failed-base.Failed, s.Sent-base.Sent, s.Failures)
	var seconds []string
	for sec := range s.FailuresPerSecond {
		if at, err := time.Parse(time.RFC3339, sec); err == nil && !at.Before(base.Now.Truncate(time.Second)) {
			seconds = append(seconds, sec)
		}
	}
	slices.Sort(seconds)
	b.WriteString("  failures per second:")
	for _, sec := range seconds {
		fmt.Fprintf(&b, " %s=%d", strings.TrimSuffix(strings.TrimPrefix(sec[strings.Index(sec, "T"):], "T"), "Z"), s.FailuresPerSecond[sec])
	}
	b.WriteString("\n  the load generator's own send lag (CPU starvation), worst per second:")
	var lagSeconds []string
	for sec := range s.SendLagPerSecond {
		if at, err := time.Parse(time.RFC3339, sec); err == nil && !at.Before(base.Now.Truncate(time.Second)) {
			lagSeconds = append(lagSeconds, sec)
		}
	}
	slices.Sort(lagSeconds)
	for _, sec := range lagSeconds {
		fmt.Fprintf(&b, " %s=%.0fms", strings.TrimSuffix(strings.TrimPrefix(sec[strings.Index(sec, "T"):], "T"), "Z"), s.SendLagPerSecond[sec])
	}
	b.WriteString("\n")
	for _, f := range s.RecentFailures {
		if f.At.After(base.Now) {
			fmt.Fprintf(&b, "  %s %s: %s\n", f.At.Format("15:04:05.000"), f.Kind, f.Error)
		}
	}
	return b.String()
}

// answering returns the pods that answered between two snapshots.
func answering(from, to loadStats) []string {
	var out []string
	for name, p := range to.Pods {
		if p.Answers > from.answers(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// readLoadStats reads the counters of the load client at ip (its port 9000), trying a few
// times.
func readLoadStats(t *testing.T, httpc *http.Client, ip string) loadStats {
	t.Helper()
	var s loadStats
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = getJSON(httpc, "http://"+ip+":9000/stats", &s); err == nil {
			return s
		}
		time.Sleep(200 * time.Millisecond) // retry pacing, bounded by the attempts
	}
	t.Fatalf("reading the load client's counters: %v", err)
	return s
}

// Issue 7's end-to-end proof of discovery and load balancing: a meshed client sends 200 GETs a
// second to a meshed Deployment by its Service name while the Deployment scales 1 -> 5 -> 1
// and rolls out a new version, and while the controller is gone for five minutes (issue 13;
// E2E_CONTROLLER_OUTAGE, a Go duration such as 1m, changes it). No request may fail; with 5
// replicas none gets under half its share (unless measurably slower); a deleted pod stops
// getting requests within a second of its EndpointSlice entry leaving the ready set; during
// the outage the proxy serves on its last state; after the controller returns the proxy
// subscribes again and follows changes. It takes about 3 minutes plus the outage.
func TestDestinationUnderLoad(t *testing.T) {
	c := localCluster(t)
	outage := defaultControllerOutage
	if v := os.Getenv("E2E_CONTROLLER_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("E2E_CONTROLLER_OUTAGE=%q: give a positive Go duration such as 5m or 90s", v)
		}
		outage = d
	}
	mesh := buildMesh(t)
	phase := phaseLogger(t)

	installOwnControlPlane(t, c, mesh, destScaleControlPlane)
	phase("control plane available")

	app := c.namespace(t, "h-dest")
	inject := func(manifest string) string { return injectFor(t, c, mesh, destScaleControlPlane, manifest) }
	c.apply(t, app, inject(fmt.Sprintf(destScaleServer, testImage("e2e-echo"))))
	rollout := func(what string) {
		t.Helper()
		if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
			t.Fatalf("%s: the echo deployment did not roll out: %v\n%s", what, err, c.describe(t, app))
		}
	}
	rollout("start")
	c.apply(t, app, inject(fmt.Sprintf(destScaleClient, testImage("e2e-echo"), loadRate)))
	if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod/load", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed load client did not become ready: %v\n%s", err, c.describe(t, app))
	}
	clientIP := strings.TrimSpace(c.must(t, "-n", app, "get", "pod", "load", "-o", "jsonpath={.status.podIP}"))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := c.run(t, time.Minute, "-n", app, "logs", "load", "-c", "mesh-proxy", "--tail=200")
		t.Logf("the load client's proxy, last lines:\n%s", logs)
		logs, _ = c.run(t, time.Minute, "-n", app, "logs", "-l", "app=echo", "-c", "mesh-proxy", "--prefix", "--tail=50")
		t.Logf("the echo replicas' proxies, last lines:\n%s", logs)
		if metrics, err := getText(&http.Client{Timeout: 5 * time.Second}, "http://"+clientIP+":4191/metrics"); err == nil {
			var lines []string
			for _, line := range strings.Split(metrics, "\n") {
				if !strings.HasPrefix(line, "#") && (strings.Contains(line, "response_total") || strings.Contains(line, "error") ||
					strings.Contains(line, "destination") || strings.HasPrefix(line, "tcp_open_total") || strings.HasPrefix(line, "tcp_close_total")) {
					lines = append(lines, line)
				}
			}
			t.Logf("the load client's proxy's metrics:\n%s", strings.Join(lines, "\n"))
			t.Logf("the load client's proxy, outbound: %s", slowResponses(metrics, "outbound"))
		}
		ips, _ := c.run(t, 30*time.Second, "-n", app, "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].status.podIP}")
		for _, ip := range strings.Fields(ips) {
			if metrics, err := getText(&http.Client{Timeout: 5 * time.Second}, "http://"+ip+":4191/metrics"); err == nil {
				t.Logf("the echo replica %s's proxy, inbound: %s", ip, slowResponses(metrics, "inbound"))
			}
		}
	})

	httpc := &http.Client{Timeout: 5 * time.Second}
	stats := func() loadStats {
		t.Helper()
		return readLoadStats(t, httpc, clientIP)
	}
	// waitLoad polls the counters until check passes.
	waitLoad := func(timeout time.Duration, what string, check func(loadStats) (bool, string)) loadStats {
		t.Helper()
		var s loadStats
		eventually(t, timeout, what, func() (bool, string) {
			s = stats()
			return check(s)
		})
		return s
	}
	// window returns the counters at least d after from.
	window := func(from loadStats, d time.Duration) loadStats {
		t.Helper()
		return waitLoad(d+30*time.Second, fmt.Sprintf("%s of load", d), func(s loadStats) (bool, string) {
			return s.Now.Sub(from.Now) >= d, fmt.Sprintf("%s so far", s.Now.Sub(from.Now))
		})
	}
	// settled waits until exactly the deployment's ready pods answer.
	settled := func(what string, want int) []string {
		t.Helper()
		rollout(what)
		var names []string
		eventually(t, time.Minute, fmt.Sprintf("%s: exactly %d ready pods answering", what, want), func() (bool, string) {
			names = readyPods(t, c, app)
			if len(names) != want {
				return false, fmt.Sprintf("ready pods %v", names)
			}
			from := stats()
			to := window(from, 2*time.Second)
			got := answering(from, to)
			return slices.Equal(got, names), fmt.Sprintf("ready pods %v, answering in the last 2s %v", names, got)
		})
		return names
	}

	// Warm up: the one replica answers.
	first := settled("warm-up", 1)
	base := stats()
	phase(fmt.Sprintf("load flowing to %v: %d sent, %d failed before the baseline", first, base.Sent, base.Failed))

	// 1 -> 5.
	c.must(t, "-n", app, "scale", "deployment/echo", "--replicas=5")
	five := settled("scaling to 5", 5)
	phase("5 replicas answering")

	// Balance: after warm-up, no replica gets under half its fair share. The balancer is
	// power of two choices over peak-EWMA latency (averages that decay over 10 s), so the
	// window starts 10 s after the last replica's first answer and lasts 15 s; and a replica
	// that answered measurably slower than the others in the window (mean latency over
	// slowFactor times the median replica's) may get less, by design: on a busy node the
	// replicas' latencies differ, and the balancer must prefer the faster ones. A replica
	// starved for any other reason fails the test.
	const slowFactor = 1.5
	from := window(stats(), 10*time.Second)
	to := window(from, 15*time.Second)
	total := to.OK - from.OK
	fair := float64(total) / float64(len(five))
	counts, means := map[string]int64{}, map[string]float64{}
	var allMeans []float64
	var shares []string
	for _, p := range five {
		n := to.answers(p) - from.answers(p)
		counts[p] = n
		if n > 0 && from.Pods[p] != nil {
			means[p] = (to.Pods[p].LatencyMillis - from.Pods[p].LatencyMillis) / float64(n)
		}
		allMeans = append(allMeans, means[p])
		shares = append(shares, fmt.Sprintf("%s=%d (mean %.1fms)", p, n, means[p]))
	}
	slices.Sort(allMeans)
	median := allMeans[len(allMeans)/2]
	for _, p := range five {
		if float64(counts[p]) >= 0.5*fair {
			continue
		}
		if means[p] > slowFactor*median {
			t.Logf("replica %s answered %d of %d requests, under half its fair share (%.0f), being slower: mean %.1fms against a median of %.1fms",
				p, counts[p], total, fair/2, means[p], median)
			continue
		}
		t.Errorf("replica %s answered %d of %d requests over %s, under half its fair share (%.0f), though not slower (mean %.1fms, median %.1fms)",
			p, counts[p], total, to.Now.Sub(from.Now).Round(time.Millisecond), fair/2, means[p], median)
	}
	phase(fmt.Sprintf("shares over %s: %s", to.Now.Sub(from.Now).Round(time.Millisecond), strings.Join(shares, " ")))

	// A deleted pod stops getting requests within a second, though it keeps serving (--drain 5s).
	victim := five[0]
	sliceChanged := watchEndpointLeaving(t, c, app, "echo", victim)
	deleted := time.Now()
	c.must(t, "-n", app, "delete", "pod", victim, "--wait=false")
	var removed time.Time
	select {
	case removed = <-sliceChanged:
	case <-time.After(30 * time.Second):
		t.Fatalf("the EndpointSlice of echo did not mark %s terminating within 30s of its deletion", victim)
	}
	after := window(stats(), 3*time.Second)
	if p := after.Pods[victim]; p == nil {
		t.Errorf("no answers from %s at all", victim)
	} else {
		lag := p.Last.Sub(removed)
		phase(fmt.Sprintf("deleted %s: its EndpointSlice entry left the ready set %s after the delete; its last answer came %s after that",
			victim, removed.Sub(deleted).Round(time.Millisecond), lag.Round(time.Millisecond)))
		if lag > time.Second {
			t.Errorf("pod %s answered requests until %s after its EndpointSlice entry stopped being ready (%s after its deletion), want under 1s (it serves 5s after SIGTERM; the proxy must stop sending once its endpoint is removed)",
				victim, lag.Round(time.Millisecond), p.Last.Sub(deleted).Round(time.Millisecond))
		}
	}
	settled("replacing the deleted pod", 5)

	// 5 -> 1, then a rolling update of the one replica.
	c.must(t, "-n", app, "scale", "deployment/echo", "--replicas=1")
	settled("scaling to 1", 1)
	phase("scaled back to 1")
	c.must(t, "-n", app, "set", "env", "deployment/echo", "VERSION=2")
	updated := settled("rolling update", 1)
	phase(fmt.Sprintf("rolled out %v", updated))
	if slices.Equal(updated, first) {
		t.Errorf("the rolling update left the same pod %v answering", updated)
	}
	now := stats()
	if msg := now.failuresSince(base); msg != "" {
		t.Errorf("scaling 1 -> 5 -> 1 and a rolling update under load: %s", msg)
	}
	phase(fmt.Sprintf("scaling and rolling update: %d requests, %d failed", now.Sent-base.Sent, now.Failed-base.Failed))

	// The controller gone for the outage: the proxy serves on what it knows.
	base = stats()
	c.must(t, "-n", destScaleControlPlane, "scale", "deployment/lightmesh-controller", "--replicas=0")
	eventually(t, time.Minute, "the controller's pods gone", func() (bool, string) {
		out, err := c.run(t, 20*time.Second, "-n", destScaleControlPlane, "get", "pods", "-o", "name")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	phase(fmt.Sprintf("controller gone, for %s", outage))
	// The proxy stays ready and says it serves its last state (/ready detail, metric).
	proxyLink := func(what string, connected bool) {
		t.Helper()
		eventually(t, 45*time.Second, what, func() (bool, string) {
			ready, err := getText(httpc, "http://"+clientIP+":4191/ready")
			if err != nil {
				return false, "/ready: " + err.Error()
			}
			metrics, err := getText(httpc, "http://"+clientIP+":4191/metrics")
			if err != nil {
				return false, "/metrics: " + err.Error()
			}
			want := "destination_connected 0"
			if connected {
				want = "destination_connected 1"
			}
			detailed := strings.Contains(ready, "destination disconnected for") && strings.Contains(ready, "serving last known state")
			ok := strings.Contains(metrics, "\n"+want+"\n") && strings.HasPrefix(ready, "ready") && detailed != connected
			return ok, fmt.Sprintf("/ready %q, want %s", strings.TrimSpace(ready), want)
		})
	}
	proxyLink("the load client's proxy to report the controller gone", false)
	gone := stats()
	during := window(gone, outage)
	if got := answering(gone, during); !slices.Equal(got, updated) {
		t.Errorf("while the controller was gone, %v answered, want %v", got, updated)
	}
	c.must(t, "-n", destScaleControlPlane, "scale", "deployment/lightmesh-controller", "--replicas=1")
	if _, err := c.run(t, 3*time.Minute, "-n", destScaleControlPlane, "rollout", "status", "deployment/lightmesh-controller", "--timeout=150s"); err != nil {
		t.Fatalf("the controller did not come back: %v\n%s", err, c.describe(t, destScaleControlPlane))
	}
	phase("controller back")

	// The proxy subscribes again (the proxy retries with backoff up to 30 s): the controller
	// counts its stream, and a replica added now gets traffic.
	controllerIP := strings.TrimSpace(c.must(t, "-n", destScaleControlPlane, "get", "pods", "-o", "jsonpath={.items[0].status.podIP}"))
	eventually(t, 90*time.Second, "the load client's proxy to subscribe again", func() (bool, string) {
		text, err := getText(httpc, "http://"+controllerIP+":9996/metrics")
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(text, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "destination_subscribers" {
				return f[1] != "0", line
			}
		}
		return false, "no destination_subscribers in the controller's metrics"
	})
	proxyLink("the load client's proxy to report the controller back", true)
	phase("the proxy subscribed again")
	c.must(t, "-n", app, "scale", "deployment/echo", "--replicas=2")
	settled("scaling to 2 after the controller returned", 2)
	phase("a replica added after the controller returned gets traffic")
	now = stats()
	if msg := now.failuresSince(base); msg != "" {
		t.Errorf("the controller gone for %s under load: %s", outage, msg)
	}
	phase(fmt.Sprintf("controller outage: %d requests, %d failed; in all %d requests, %d failed",
		now.Sent-base.Sent, now.Failed-base.Failed, now.Sent, now.Failed))
}

// watchEndpointLeaving watches the EndpointSlices of service and sends on the returned
// channel the time pod's endpoint is first seen not ready, terminating or gone. The watch
// (a kubectl process) is stopped by PID when the test ends.
func watchEndpointLeaving(t *testing.T, c *cluster, ns, service, pod string) <-chan time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	// kubectl prints every event of a watch with -o json (with -o jsonpath, only the first).
	cmd := exec.CommandContext(ctx, c.kubectl, "--kubeconfig", c.kubeconfig, "-n", ns, "get", "endpointslices",
		"-l", "kubernetes.io/service-name="+service, "--watch", "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubectl get endpointslices --watch: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	leaving := make(chan time.Time, 1)
	seen := make(chan struct{})
	go func() {
		dec := json.NewDecoder(out)
		holder := "" // the slice that lists pod as ready
		for {
			var slice struct {
				Metadata  struct{ Name string } `json:"metadata"`
				Endpoints []struct {
					TargetRef  *struct{ Name string } `json:"targetRef"`
					Conditions struct {
						Ready       *bool `json:"ready"`
						Terminating *bool `json:"terminating"`
					} `json:"conditions"`
				} `json:"endpoints"`
			}
			if err := dec.Decode(&slice); err != nil {
				return
			}
			now := time.Now()
			listed, ready := false, false
			for _, e := range slice.Endpoints {
				if e.TargetRef != nil && e.TargetRef.Name == pod {
					c := e.Conditions
					listed, ready = true, (c.Ready == nil || *c.Ready) && (c.Terminating == nil || !*c.Terminating)
				}
			}
			switch {
			case holder == "" && ready:
				holder = slice.Metadata.Name
				close(seen)
			case holder != "" && slice.Metadata.Name == holder && (!listed || !ready):
				leaving <- now
				return
			}
		}
	}()
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatalf("the EndpointSlice watch did not show %s ready within 30s", pod)
	}
	return leaving
}

// slowResponses sums a proxy's response_latency_ms histogram in direction: how many
// responses, and how many took over 1 s and over 2 s.
func slowResponses(metrics, direction string) string {
	var total, upTo1s, upTo2s float64
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, "response_latency_ms_bucket{") || !strings.Contains(line, `direction="`+direction+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, `le="+Inf"`):
			total += v
		case strings.Contains(line, `le="1000"`):
			upTo1s += v
		case strings.Contains(line, `le="2000"`):
			upTo2s += v
		}
	}
	return fmt.Sprintf("%.0f responses, %.0f over 1 s, %.0f over 2 s", total, total-upTo1s, total-upTo2s)
}

// readyPods lists the echo pods that are ready and not being deleted.
func readyPods(t *testing.T, c *cluster, ns string) []string {
	t.Helper()
	out := c.must(t, "-n", ns, "get", "pods", "-l", "app=echo", "-o", "json")
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get pods -o json: %v", err)
	}
	var names []string
	for _, p := range list.Items {
		if p.Metadata.DeletionTimestamp != nil {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == "Ready" && cond.Status == "True" {
				names = append(names, p.Metadata.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// withoutCRDs drops the CustomResourceDefinitions from a multi-document YAML stream.
func withoutCRDs(manifests string) string {
	var keep []string
	for _, doc := range strings.Split(manifests, "\n---") {
		if !strings.Contains(doc, "\nkind: CustomResourceDefinition") && !strings.HasPrefix(strings.TrimSpace(doc), "kind: CustomResourceDefinition") {
			keep = append(keep, doc)
		}
	}
	return strings.Join(keep, "\n---")
}

func getText(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

func getJSON(c *http.Client, url string, v any) error {
	text, err := getText(c, url)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(text), v)
}
