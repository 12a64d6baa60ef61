// Command soakwatch records, every --interval for --duration, the resident memory, open file
// descriptors and goroutines of every meshed proxy in --namespaces and of every container of
// the controller in --controller-namespace (from their admin /metrics: process_* and
// go_goroutines), writes them to a CSV, plots them as a PNG (one panel per measure, one line
// per process), and exits non-zero when any process grew beyond the bounds or the load
// client (--load-stats, the e2e-echo load generator's /stats) saw more failed requests than
// --max-failures, or any proxy counted a failed mesh TLS handshake (tls_handshake_errors_total;
// connections closed at their certificate's expiry, tls_expired_connections_total, are reported).
// hack/soak.sh (make soak) runs it; see hack/README.md.
//
//	soakwatch --duration 1h --namespaces lm-soak-app --controller-namespace lm-soak \
//	    --load-stats http://10.88.0.12:9000/stats --out /tmp/soak
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Admin ports: the proxy's, and the controller's containers'.
var (
	proxyAdminPort      = 4191
	controllerAdminPort = map[string]int{"identity": 9990, "injector": 9995, "destination": 9996, "stats": 9997}
)

type options struct {
	duration, interval, warmup time.Duration
	namespaces, controllerNS   string
	kubectl, kubeconfig        string
	loadStats, out             string
	maxFailures                int64
	// Growth bounds between the start (after warm-up) and the end of each process's series.
	maxRSSGrowth, maxFDGrowth, maxGoroutineGrowth float64 // ratios
	rssSlack                                      float64 // MiB allowed on top of the ratio
	fdSlack, goroutineSlack                       float64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", time.Hour, "how long to record")
	flag.DurationVar(&o.interval, "interval", time.Minute, "time between samples")
	flag.DurationVar(&o.warmup, "warmup", 0, "samples before this are recorded but not the baseline of the growth check (default: one interval)")
	flag.StringVar(&o.namespaces, "namespaces", "", "comma-separated namespaces whose meshed pods' proxies are recorded")
	flag.StringVar(&o.controllerNS, "controller-namespace", "lightmesh", "the control plane's namespace")
	flag.StringVar(&o.kubectl, "kubectl", "kubectl", "kubectl binary")
	flag.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	flag.StringVar(&o.loadStats, "load-stats", "", "URL of the load generator's /stats (e2e-echo load --stats-addr)")
	flag.StringVar(&o.out, "out", ".", "directory for soak.csv, soak.png and summary.txt")
	flag.Int64Var(&o.maxFailures, "max-failures", 0, "failed requests the load generator may see")
	flag.Float64Var(&o.maxRSSGrowth, "max-rss-growth", 0.5, "largest growth of resident memory, as a ratio of the baseline")
	flag.Float64Var(&o.rssSlack, "rss-slack-mib", 20, "MiB of resident memory growth always allowed")
	flag.Float64Var(&o.maxFDGrowth, "max-fd-growth", 0.5, "largest growth of open file descriptors, as a ratio")
	flag.Float64Var(&o.fdSlack, "fd-slack", 50, "open file descriptors of growth always allowed")
	flag.Float64Var(&o.maxGoroutineGrowth, "max-goroutine-growth", 0.5, "largest growth of goroutines, as a ratio")
	flag.Float64Var(&o.goroutineSlack, "goroutine-slack", 100, "goroutines of growth always allowed")
	flag.Parse()
	if o.warmup == 0 {
		o.warmup = o.interval
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "soakwatch:", err)
		os.Exit(1)
	}
}

// sample is one reading of one process.
type sample struct {
	At                        time.Time
	Component, Pod, Container string
	RSS, OpenFDs, Goroutines  float64
	// A proxy's mesh TLS counters (both directions): failed handshakes, and connections
	// closed because a certificate of theirs expired.
	HandshakeErrors, ExpiredConns float64
	scrapeErr                     error
}

func (s sample) key() string { return s.Component + "/" + s.Pod + "/" + s.Container }

func run(ctx context.Context, o options, out io.Writer) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(o.out, "soak.csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"time", "minute", "component", "pod", "container", "rss_bytes", "open_fds", "goroutines", "tls_handshake_errors", "tls_expired_connections"})
	start := time.Now()
	var all []sample
	scrapeErrors := 0
	for i := 0; ; i++ {
		round := collect(ctx, o)
		for _, s := range round {
			if s.scrapeErr != nil {
				scrapeErrors++
				fmt.Fprintf(out, "%s scrape %s: %v\n", s.At.Format("15:04:05"), s.key(), s.scrapeErr)
				continue
			}
			all = append(all, s)
			_ = w.Write([]string{s.At.UTC().Format(time.RFC3339), fmt.Sprintf("%.2f", s.At.Sub(start).Minutes()), s.Component, s.Pod, s.Container,
				strconv.FormatFloat(s.RSS, 'f', 0, 64), strconv.FormatFloat(s.OpenFDs, 'f', 0, 64), strconv.FormatFloat(s.Goroutines, 'f', 0, 64),
				strconv.FormatFloat(s.HandshakeErrors, 'f', 0, 64), strconv.FormatFloat(s.ExpiredConns, 'f', 0, 64)})
		}
		w.Flush()
		fmt.Fprintf(out, "%s sample %d: %d processes\n", time.Now().Format("15:04:05"), i, len(round))
		if time.Since(start)+o.interval > o.duration+o.interval/2 {
			break
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(o.interval): // the sampling period, not synchronisation
		}
	}
	if err := w.Error(); err != nil {
		return err
	}
	if err := plot(filepath.Join(o.out, "soak.png"), all, start); err != nil {
		return err
	}
	problems := checkGrowth(o, all, start)
	handshakeErrors, expired := tlsTotals(all)
	var summary strings.Builder
	fmt.Fprintf(&summary, "soak of %v from %s: %d samples of %d processes; %d scrape errors\n",
		o.duration, start.UTC().Format(time.RFC3339), len(all), len(series(all)), scrapeErrors)
	for _, line := range growthTable(o, all, start) {
		summary.WriteString(line + "\n")
	}
	fmt.Fprintf(&summary, "mesh TLS, over the proxies' last samples: %.0f failed handshakes, %.0f connections closed as a certificate of theirs expired\n", handshakeErrors, expired)
	if handshakeErrors > 0 {
		problems = append(problems, fmt.Sprintf("%.0f mesh TLS handshakes failed (tls_handshake_errors_total)", handshakeErrors))
	}
	if o.loadStats != "" {
		var s struct {
			Sent, OK, Failed int64
			Failures         map[string]int64
			FailuresPerSec   map[string]int64 `json:"failures_per_second"`
			MaxLatencyMillis float64          `json:"max_latency_ms"`
		}
		if err := getJSON(o.loadStats, &s); err != nil {
			problems = append(problems, fmt.Sprintf("reading the load generator's counters: %v", err))
		} else {
			fmt.Fprintf(&summary, "load: %d sent, %d ok, %d failed %v, slowest answer %.0f ms\n", s.Sent, s.OK, s.Failed, s.Failures, s.MaxLatencyMillis)
			if s.Failed > o.maxFailures {
				secs := slices.Sorted(mapKeys(s.FailuresPerSec))
				var b strings.Builder
				for _, sec := range secs {
					fmt.Fprintf(&b, " %s=%d", sec, s.FailuresPerSec[sec])
				}
				problems = append(problems, fmt.Sprintf("%d requests failed (at most %d allowed); by second:%s", s.Failed, o.maxFailures, b.String()))
			}
		}
	}
	for _, p := range problems {
		fmt.Fprintf(&summary, "PROBLEM: %s\n", p)
	}
	if len(problems) == 0 {
		summary.WriteString("OK: every process stayed within its bounds and no request failed beyond the allowance\n")
	}
	_ = os.WriteFile(filepath.Join(o.out, "summary.txt"), []byte(summary.String()), 0o644)
	fmt.Fprint(out, summary.String())
	if len(problems) > 0 {
		return fmt.Errorf("%d problems; see %s", len(problems), filepath.Join(o.out, "summary.txt"))
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pod is what collect needs of a pod.
type pod struct {
	Namespace, Name, IP string
	Containers          []string
}

// pods lists the running pods of namespace.
func pods(ctx context.Context, o options, namespace string) ([]pod, error) {
	args := []string{"-n", namespace, "get", "pods", "-o", "json"}
	if o.kubeconfig != "" {
		args = append([]string{"--kubeconfig", o.kubeconfig}, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, o.kubectl, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl get pods -n %s: %w", namespace, err)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Containers     []struct{ Name string }
				InitContainers []struct{ Name string }
			}
			Status struct {
				Phase string
				PodIP string `json:"podIP"`
			}
		}
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	var out []pod
	for _, it := range list.Items {
		if it.Status.Phase != "Running" || it.Status.PodIP == "" {
			continue
		}
		p := pod{Namespace: it.Metadata.Namespace, Name: it.Metadata.Name, IP: it.Status.PodIP}
		for _, c := range it.Spec.InitContainers {
			p.Containers = append(p.Containers, c.Name)
		}
		for _, c := range it.Spec.Containers {
			p.Containers = append(p.Containers, c.Name)
		}
		out = append(out, p)
	}
	return out, nil
}

// collect reads every process once.
func collect(ctx context.Context, o options) []sample {
	var out []sample
	now := time.Now()
	for _, ns := range strings.Split(o.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns == "" {
			continue
		}
		list, err := pods(ctx, o, ns)
		if err != nil {
			out = append(out, sample{At: now, Component: "proxy", Pod: ns, scrapeErr: err})
			continue
		}
		for _, p := range list {
			if !slices.Contains(p.Containers, "mesh-proxy") {
				continue
			}
			out = append(out, scrape(now, "proxy", p.Namespace+"/"+p.Name, "mesh-proxy", p.IP, proxyAdminPort))
		}
	}
	if o.controllerNS != "" {
		list, err := pods(ctx, o, o.controllerNS)
		if err != nil {
			out = append(out, sample{At: now, Component: "controller", Pod: o.controllerNS, scrapeErr: err})
		}
		for _, p := range list {
			for _, c := range p.Containers {
				if port, ok := controllerAdminPort[c]; ok {
					out = append(out, scrape(now, "controller", p.Namespace+"/"+p.Name, c, p.IP, port))
				}
			}
			if slices.Contains(p.Containers, "mesh-proxy") { // a meshed gateway or the like
				out = append(out, scrape(now, "proxy", p.Namespace+"/"+p.Name, "mesh-proxy", p.IP, proxyAdminPort))
			}
		}
	}
	return out
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func scrape(at time.Time, component, podName, container, ip string, port int) sample {
	s := sample{At: at, Component: component, Pod: podName, Container: container}
	resp, err := httpClient.Get(fmt.Sprintf("http://%s:%d/metrics", ip, port))
	if err != nil {
		s.scrapeErr = err
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.scrapeErr = fmt.Errorf("GET /metrics: %s", resp.Status)
		return s
	}
	found := 0
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 32<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "process_resident_memory_bytes":
			s.RSS, found = v, found+1
		case "process_open_fds":
			s.OpenFDs, found = v, found+1
		case "go_goroutines":
			s.Goroutines, found = v, found+1
		default:
			switch name, _, _ := strings.Cut(fields[0], "{"); name {
			case "tls_handshake_errors_total":
				s.HandshakeErrors += v
			case "tls_expired_connections_total":
				s.ExpiredConns += v
			}
		}
	}
	if found < 3 {
		s.scrapeErr = errors.New("/metrics lacks process_resident_memory_bytes, process_open_fds or go_goroutines")
	}
	return s
}

func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// tlsTotals sums the mesh TLS counters of every process's last sample (counters only grow;
// what a pod counted after its last sample, before it was deleted, is not seen).
func tlsTotals(all []sample) (handshakeErrors, expired float64) {
	for _, ss := range series(all) {
		last := ss[len(ss)-1]
		handshakeErrors += last.HandshakeErrors
		expired += last.ExpiredConns
	}
	return handshakeErrors, expired
}

// series groups samples by process, in time order.
func series(all []sample) map[string][]sample {
	out := map[string][]sample{}
	for _, s := range all {
		out[s.key()] = append(out[s.key()], s)
	}
	return out
}

// ends returns the medians of the first and last third of a series' values after warm-up;
// ok is false when the series is too short to tell a trend (a pod that was rolled).
func ends(ss []sample, start time.Time, warmup time.Duration, value func(sample) float64) (first, last float64, ok bool) {
	var vs []float64
	for _, s := range ss {
		if s.At.Sub(start) >= warmup {
			vs = append(vs, value(s))
		}
	}
	if len(vs) < 3 {
		return 0, 0, false
	}
	n := max(1, len(vs)/3)
	return median(vs[:n]), median(vs[len(vs)-n:]), true
}

func median(vs []float64) float64 {
	c := slices.Clone(vs)
	slices.Sort(c)
	return c[len(c)/2]
}

type measure struct {
	name  string
	value func(sample) float64
	ratio func(options) float64
	slack func(options) float64
}

var measures = []measure{
	{"rss", func(s sample) float64 { return s.RSS }, func(o options) float64 { return o.maxRSSGrowth }, func(o options) float64 { return o.rssSlack * (1 << 20) }},
	{"open_fds", func(s sample) float64 { return s.OpenFDs }, func(o options) float64 { return o.maxFDGrowth }, func(o options) float64 { return o.fdSlack }},
	{"goroutines", func(s sample) float64 { return s.Goroutines }, func(o options) float64 { return o.maxGoroutineGrowth }, func(o options) float64 { return o.goroutineSlack }},
}

// checkGrowth returns a problem for every process whose end value of a measure exceeds its
// start value times 1+ratio plus the slack.
func checkGrowth(o options, all []sample, start time.Time) []string {
	var problems []string
	byKey := series(all)
	for _, key := range slices.Sorted(mapKeys(byKey)) {
		for _, m := range measures {
			first, last, ok := ends(byKey[key], start, o.warmup, m.value)
			if !ok {
				continue
			}
			if bound := first*(1+m.ratio(o)) + m.slack(o); last > bound {
				problems = append(problems, fmt.Sprintf("%s: %s grew from %.0f to %.0f (bound %.0f)", key, m.name, first, last, bound))
			}
		}
	}
	return problems
}

func growthTable(o options, all []sample, start time.Time) []string {
	byKey := series(all)
	var lines []string
	for _, key := range slices.Sorted(mapKeys(byKey)) {
		var parts []string
		for _, m := range measures {
			first, last, ok := ends(byKey[key], start, o.warmup, m.value)
			if !ok {
				parts = append(parts, m.name+" (too few samples)")
				continue
			}
			if m.name == "rss" {
				parts = append(parts, fmt.Sprintf("rss %.1f -> %.1f MiB", first/(1<<20), last/(1<<20)))
			} else {
				parts = append(parts, fmt.Sprintf("%s %.0f -> %.0f", m.name, first, last))
			}
		}
		lines = append(lines, fmt.Sprintf("  %-70s %s (%d samples)", key, strings.Join(parts, ", "), len(byKey[key])))
	}
	return lines
}

// plot draws one panel per measure, stacked, each line a process, x the minutes since start.
// The panels have no text (the standard library has no fonts): the CSV and summary.txt
// carry the numbers; the picture shows the shapes.
func plot(path string, all []sample, start time.Time) error {
	const width, panelH, margin = 1200, 300, 20
	img := image.NewRGBA(image.Rect(0, 0, width, len(measures)*(panelH+margin)+margin))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})
	byKey := series(all)
	keys := slices.Sorted(mapKeys(byKey))
	var maxT float64
	for _, s := range all {
		maxT = max(maxT, s.At.Sub(start).Minutes())
	}
	maxT = max(maxT, 1)
	for i, m := range measures {
		top := margin + i*(panelH+margin)
		panel := image.Rect(margin, top, width-margin, top+panelH)
		fill(img, panel, color.RGBA{245, 245, 245, 255})
		var maxV float64
		for _, s := range all {
			maxV = max(maxV, m.value(s))
		}
		maxV = max(maxV*1.1, 1)
		// Grid: a line every 10 % of the value range and every 10 minutes.
		for g := 1; g < 10; g++ {
			y := panel.Max.Y - g*panel.Dy()/10
			line(img, panel.Min.X, y, panel.Max.X, y, color.RGBA{220, 220, 220, 255})
		}
		for minute := 10.0; minute < maxT; minute += 10 {
			x := panel.Min.X + int(minute/maxT*float64(panel.Dx()))
			line(img, x, panel.Min.Y, x, panel.Max.Y, color.RGBA{220, 220, 220, 255})
		}
		for k, key := range keys {
			c := palette[k%len(palette)]
			var px, py int
			for j, s := range byKey[key] {
				x := panel.Min.X + int(s.At.Sub(start).Minutes()/maxT*float64(panel.Dx()-1))
				y := panel.Max.Y - 1 - int(m.value(s)/maxV*float64(panel.Dy()-1))
				if j > 0 {
					line(img, px, py, x, y, c)
				}
				fill(img, image.Rect(x-1, y-1, x+2, y+2), c)
				px, py = x, y
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
