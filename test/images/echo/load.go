package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Failure kinds of the load summary.
const (
	failStatus  = "status"  // an answer other than 2xx
	failConnect = "connect" // the connection could not be opened (refused, unreachable, DNS)
	failReset   = "reset"   // the connection broke: reset, EOF before or during the answer
	failTimeout = "timeout" // no whole answer within --timeout
	failOther   = "other"
)

// maxFailureSamples bounds the failures a summary lists one by one.
const maxFailureSamples = 50

// LoadSummary is what load prints at the end and serves at /stats: counters since the start.
type LoadSummary struct {
	URL      string    `json:"url"`
	Rate     float64   `json:"rate"`
	Start    time.Time `json:"start"`
	Now      time.Time `json:"now"`
	Sent     int64     `json:"sent"`
	InFlight int64     `json:"in_flight"`
	OK       int64     `json:"ok"`
	Failed   int64     `json:"failed"`
	// Failures counts failed requests by kind (status, connect, reset, timeout, other).
	Failures map[string]int64 `json:"failures"`
	// Statuses counts the non-2xx answers by status code.
	Statuses map[string]int64 `json:"statuses,omitempty"`
	// Pods are the serving pods (X-Echo-Pod, else the body) of the successful answers.
	Pods map[string]*PodStats `json:"pods"`
	// MaxLatencyMillis is the slowest successful answer.
	MaxLatencyMillis float64 `json:"max_latency_ms"`
	// SendLagPerSecond is, for each second (UTC, RFC 3339) in which a request left more than
	// 100 ms after its schedule, the worst lag in milliseconds: the load generator itself was
	// starved of CPU then, so slow answers in that second say little about the servers.
	SendLagPerSecond map[string]float64 `json:"send_lag_ms_per_second,omitempty"`
	// FailuresPerSecond counts the failures by the second (UTC, RFC 3339) they were recorded in.
	FailuresPerSecond map[string]int64 `json:"failures_per_second,omitempty"`
	// RecentFailures are the last failures, oldest first.
	RecentFailures []FailureSample `json:"recent_failures,omitempty"`
}

// PodStats are the answers of one serving pod.
type PodStats struct {
	Answers int64 `json:"answers"`
	// LatencyMillis is the sum of the answers' latencies (divide by Answers for the mean).
	LatencyMillis float64   `json:"latency_ms"`
	First         time.Time `json:"first"`
	Last          time.Time `json:"last"`
}

// FailureSample is one failed request.
type FailureSample struct {
	At    time.Time `json:"at"`
	Kind  string    `json:"kind"`
	Error string    `json:"error"`
}

// StartsSummary is what load serves at /starts with --record-starts: for each serving pod,
// when each request it answered (successfully) was sent, so that a test can tell which pod
// answered the requests sent in any interval (for example after the pod left a Service).
type StartsSummary struct {
	// Start is when the run started; the offsets are counted from it.
	Start time.Time `json:"start"`
	Now   time.Time `json:"now"`
	// Pods maps each serving pod to the send times of the requests it answered, in
	// microseconds after Start, in the order the answers arrived (not necessarily sorted).
	Pods map[string][]int64 `json:"pods"`
}

// loadRecorder keeps the counters of a load run; safe for concurrent use.
type loadRecorder struct {
	mu sync.Mutex
	s  LoadSummary
	// starts, when not nil (--record-starts), holds per pod the send time of every answered
	// request, in microseconds after s.Start.
	starts map[string][]int64
}

func newLoadRecorder(url string, rate float64, start time.Time) *loadRecorder {
	return &loadRecorder{s: LoadSummary{URL: url, Rate: rate, Start: start,
		Failures: map[string]int64{}, Statuses: map[string]int64{}, Pods: map[string]*PodStats{},
		FailuresPerSecond: map[string]int64{}, SendLagPerSecond: map[string]float64{}}}
}

func (r *loadRecorder) sent(lag time.Duration, at time.Time) {
	r.mu.Lock()
	if lag > 100*time.Millisecond {
		sec := at.UTC().Truncate(time.Second).Format(time.RFC3339)
		r.s.SendLagPerSecond[sec] = max(r.s.SendLagPerSecond[sec], float64(lag.Microseconds())/1000)
	}
	r.s.Sent++
	r.s.InFlight++
	r.mu.Unlock()
}

// success records an answer of pod received at, for a request sent latency earlier.
func (r *loadRecorder) success(pod string, at time.Time, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.starts != nil {
		r.starts[pod] = append(r.starts[pod], at.Add(-latency).Sub(r.s.Start).Microseconds())
	}
	r.s.InFlight--
	r.s.OK++
	p := r.s.Pods[pod]
	if p == nil {
		p = &PodStats{First: at}
		r.s.Pods[pod] = p
	}
	p.Answers++
	p.LatencyMillis += float64(latency.Microseconds()) / 1000
	if at.After(p.Last) {
		p.Last = at
	}
	r.s.MaxLatencyMillis = max(r.s.MaxLatencyMillis, float64(latency.Microseconds())/1000)
}

func (r *loadRecorder) failure(kind string, status int, at time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.InFlight--
	r.s.Failed++
	r.s.Failures[kind]++
	r.s.FailuresPerSecond[at.UTC().Truncate(time.Second).Format(time.RFC3339)]++
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if status != 0 {
		r.s.Statuses[fmt.Sprint(status)]++
		msg = strings.TrimSpace(fmt.Sprintf("status %d %s", status, msg))
	}
	r.s.RecentFailures = append(r.s.RecentFailures, FailureSample{At: at, Kind: kind, Error: msg})
	if len(r.s.RecentFailures) > maxFailureSamples {
		r.s.RecentFailures = slices.Delete(r.s.RecentFailures, 0, len(r.s.RecentFailures)-maxFailureSamples)
	}
}

// snapshot returns a deep copy of the counters at now.
func (r *loadRecorder) snapshot(now time.Time) LoadSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.Now = now
	s.Failures = cloneMap(r.s.Failures)
	s.Statuses = cloneMap(r.s.Statuses)
	s.FailuresPerSecond = cloneMap(r.s.FailuresPerSecond)
	s.SendLagPerSecond = make(map[string]float64, len(r.s.SendLagPerSecond))
	for k, v := range r.s.SendLagPerSecond {
		s.SendLagPerSecond[k] = v
	}
	s.Pods = make(map[string]*PodStats, len(r.s.Pods))
	for k, v := range r.s.Pods {
		c := *v
		s.Pods[k] = &c
	}
	s.RecentFailures = slices.Clone(r.s.RecentFailures)
	return s
}

// startsSnapshot returns a copy of the recorded send times at now.
func (r *loadRecorder) startsSnapshot(now time.Time) StartsSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := StartsSummary{Start: r.s.Start, Now: now, Pods: make(map[string][]int64, len(r.starts))}
	for pod, starts := range r.starts {
		out.Pods[pod] = slices.Clone(starts)
	}
	return out
}

func cloneMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// classify names the kind of a failed request.
func classify(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return failTimeout
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH):
		return failConnect
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return failReset
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return failConnect
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return failConnect
	}
	return failOther
}

type loadOptions struct {
	url       string
	rate      float64
	duration  time.Duration
	timeout   time.Duration
	statsAddr string
	progress  bool
	// recordStarts keeps the send time of every answered request, served at /starts.
	recordStarts bool
}

func load(args []string, out, errOut io.Writer) error {
	o, err := parseLoadFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	summary, err := runLoad(ctx, o, errOut)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(summary)
}

// parseLoadFlags reads load's arguments: the URL first, then the flags.
func parseLoadFlags(args []string) (loadOptions, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var o loadOptions
	fs.Float64Var(&o.rate, "rate", 200, "requests per second, sent on schedule whatever the answers")
	fs.DurationVar(&o.duration, "duration", 0, "how long to send; 0: until SIGTERM or SIGINT")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "deadline of each request, answer included")
	fs.StringVar(&o.statsAddr, "stats-addr", "", "serve the summary so far as JSON at /stats on this address")
	fs.BoolVar(&o.progress, "progress", false, "print a progress line to stderr every second")
	fs.BoolVar(&o.recordStarts, "record-starts", false,
		"keep the send time of every answered request, per serving pod, and serve them at /starts on --stats-addr (8 bytes an answer)")
	if len(args) < 1 || strings.HasPrefix(args[0], "-") {
		return o, errors.New("load needs a URL first: e2e-echo load URL [--rate 200] [--duration 60s]")
	}
	o.url = args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if o.rate <= 0 || o.timeout <= 0 || o.duration < 0 {
		return o, errors.New("load: --rate and --timeout must be positive and --duration not negative")
	}
	if o.recordStarts && o.statsAddr == "" {
		return o, errors.New("load: --record-starts needs --stats-addr, where the send times are served at /starts")
	}
	return o, nil
}

// runLoad sends o.rate GETs a second until ctx ends, waits for the requests in flight and
// returns the summary.
func runLoad(ctx context.Context, o loadOptions, errOut io.Writer) (LoadSummary, error) {
	client := &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: o.timeout}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	rec := newLoadRecorder(o.url, o.rate, start)
	if o.recordStarts {
		rec.starts = map[string][]int64{}
	}

	if o.statsAddr != "" {
		lis, err := net.Listen("tcp", o.statsAddr)
		if err != nil {
			return LoadSummary{}, fmt.Errorf("listen for --stats-addr: %w", err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: statsHandler(rec, o.recordStarts)}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()
		log.Printf("serving the load summary at http://%s/stats", lis.Addr())
	}
	if o.progress {
		go progress(ctx, rec, errOut)
	}

	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / o.rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		// Open loop: request i leaves at start + i*interval, however the others fare.
		next := start.Add(time.Duration(i) * interval)
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			wg.Wait()
			return rec.snapshot(time.Now()), nil
		case <-timer.C:
		}
		now := time.Now()
		rec.sent(now.Sub(next), now)
		wg.Go(func() { fire(client, o.url, rec) })
	}
}

// statsHandler serves the summary so far at every path but /starts, which serves the send
// times of the answered requests (with --record-starts).
func statsHandler(rec *loadRecorder, recordStarts bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/starts" {
			if !recordStarts {
				http.Error(w, "the send times are not recorded: run load with --record-starts", http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(rec.startsSnapshot(time.Now()))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec.snapshot(time.Now()))
	})
}

// fire sends one GET and records its outcome.
func fire(client *http.Client, url string, rec *loadRecorder) {
	begin := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		rec.failure(classify(err), 0, time.Now(), err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	now := time.Now()
	if err != nil {
		rec.failure(classify(err), 0, now, fmt.Errorf("reading the answer: %w", err))
		return
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		rec.failure(failStatus, resp.StatusCode, now, errors.New(strings.TrimSpace(string(body[:min(len(body), 200)]))))
		return
	}
	pod := resp.Header.Get(podHeader)
	if pod == "" {
		pod = strings.TrimSpace(string(body[:min(len(body), 100)]))
	}
	rec.success(pod, now, now.Sub(begin))
}

// progress prints a line every second: totals and the last second's answers per pod.
func progress(ctx context.Context, rec *loadRecorder, errOut io.Writer) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	prev := rec.snapshot(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			cur := rec.snapshot(now)
			var pods []string
			for name, p := range cur.Pods {
				n := p.Answers
				if old, ok := prev.Pods[name]; ok {
					n -= old.Answers
				}
				if n > 0 {
					pods = append(pods, fmt.Sprintf("%s=%d", name, n))
				}
			}
			slices.Sort(pods)
			fmt.Fprintf(errOut, "%5.0fs sent=%d ok=%d failed=%d in-flight=%d last-second: %s\n",
				now.Sub(cur.Start).Seconds(), cur.Sent, cur.OK, cur.Failed, cur.InFlight, strings.Join(pods, " "))
			prev = cur
		}
	}
}
