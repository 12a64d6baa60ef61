// Command bench is lightmesh's side-by-side data-plane benchmark (issue #11): the same
// open-loop HTTP load, in the same run with the same CPU pinning and worker counts, through
// no proxy (direct), two lightmesh proxies with mesh mTLS, two HAProxy instances and two
// nginx instances doing the same mTLS hop, each in its own pair of network namespaces. It
// prints Markdown tables of added latency, CPU per request, peak RSS and throughput knee.
//
// It needs root (network namespaces, iptables) and haproxy and nginx on PATH:
//
//	sudo go run ./bench                 # full run, about 7 minutes
//	sudo go run ./bench -smoke          # a few seconds: every candidate carries traffic
//
// The same program, re-executed with LM_BENCH_ROLE set, is the application server, the load
// generator and the probes inside the namespaces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if code, ok := runRole(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if opts.From != "" {
		if err := report(opts.From, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, self, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// options are the benchmark's settings; defaultOptions gives the full run.
type options struct {
	Candidates []string
	Rates      []float64
	Conns      []int
	Reps       int
	// Duration of each measured run; zero: 2 s, or long enough for 400 requests.
	Duration time.Duration
	Drain    time.Duration
	Body     int
	// Threads is the worker count of every proxy (GOMAXPROCS, nbthread, worker_processes).
	Threads   int
	ClientCPU int
	ServerCPU int
	// Knee sweep: rates from KneeStart, times 1.5 while the candidate keeps up, then
	// bisected twice (a rate fails when it fails twice in a row); keeping up means no errors, at least 95 % of the offered rate
	// completed, p50 at most KneeMaxP50 and p99 at most KneeMaxP99. Saturation shows first in
	// the median (the queue grows without bound); a shared machine's stalls show in the tail
	// of every candidate, hence the loose p99 bound.
	Knee       bool
	KneeConns  int
	KneeStart  float64
	KneeMax    float64
	KneeStep   time.Duration
	KneeMaxP50 time.Duration
	KneeMaxP99 time.Duration
	// HoldConns connections are held open through each proxy pair to read its RSS.
	HoldConns int
	// GoalRate and GoalConns are the cell the goals are judged on.
	GoalRate  float64
	GoalConns int
	// ProfileDir, when set, receives CPU profiles of both mesh-proxies under load.
	ProfileDir  string
	ProfileRate float64
	RawFile     string
	// From, when set, is a -raw file to rewrite the report of; nothing is measured.
	From      string
	MeshProxy string
	MeshInit  string
	Smoke     bool
}

func defaultOptions() options {
	return options{
		Candidates:  defaultCandidates,
		Rates:       []float64{100, 1000, 5000},
		Conns:       []int{1, 16, 64},
		Reps:        3,
		Drain:       time.Second,
		Body:        1024,
		Threads:     1,
		ClientCPU:   0,
		ServerCPU:   1,
		Knee:        true,
		KneeConns:   64,
		KneeStart:   1000,
		KneeMax:     60000,
		KneeStep:    2 * time.Second,
		KneeMaxP50:  5 * time.Millisecond,
		KneeMaxP99:  100 * time.Millisecond,
		HoldConns:   100,
		GoalRate:    1000,
		GoalConns:   16,
		ProfileRate: 5000,
	}
}

// smokeOptions shrink a run to a few seconds of load.
func (o *options) smoke() {
	o.Rates = []float64{100}
	o.Conns = []int{1}
	o.Reps = 1
	o.Duration = time.Second
	o.KneeStart, o.KneeMax, o.KneeStep = 500, 800, time.Second
	o.GoalRate, o.GoalConns = 100, 1
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	cands := fs.String("candidates", strings.Join(o.Candidates, ","), "candidates to run (direct is needed for added latency)")
	rates := fs.String("rates", "100,1000,5000", "offered rates, requests/s")
	conns := fs.String("conns", "1,16,64", "connection counts")
	fs.IntVar(&o.Reps, "reps", o.Reps, "interleaved repetitions")
	fs.DurationVar(&o.Duration, "duration", 0, "measured time per run (0: 2s, or long enough for 400 requests)")
	fs.DurationVar(&o.Drain, "drain", o.Drain, "time queued requests get after a run")
	fs.IntVar(&o.Body, "body", o.Body, "request and response body bytes")
	fs.IntVar(&o.Threads, "threads", o.Threads, "workers per proxy: GOMAXPROCS, HAProxy nbthread, nginx worker_processes")
	fs.IntVar(&o.ClientCPU, "client-cpu", o.ClientCPU, "CPU of the load generator and proxy A")
	fs.IntVar(&o.ServerCPU, "server-cpu", o.ServerCPU, "CPU of proxy B and the application")
	fs.BoolVar(&o.Knee, "knee", o.Knee, "sweep rates for each candidate's throughput knee")
	fs.IntVar(&o.KneeConns, "knee-conns", o.KneeConns, "connections during the knee sweep")
	fs.Float64Var(&o.KneeStart, "knee-start", o.KneeStart, "first rate of the knee sweep")
	fs.Float64Var(&o.KneeMax, "knee-max", o.KneeMax, "highest rate of the knee sweep")
	fs.DurationVar(&o.KneeStep, "knee-step", o.KneeStep, "measured time per knee step")
	fs.DurationVar(&o.KneeMaxP50, "knee-max-p50", o.KneeMaxP50, "a knee step fails above this p50")
	fs.DurationVar(&o.KneeMaxP99, "knee-max-p99", o.KneeMaxP99, "a knee step fails above this p99")
	fs.IntVar(&o.HoldConns, "hold-conns", o.HoldConns, "connections held open to read RSS (0: skip)")
	fs.Float64Var(&o.GoalRate, "goal-rate", o.GoalRate, "rate the goals are judged at")
	fs.IntVar(&o.GoalConns, "goal-conns", o.GoalConns, "connections the goals are judged at")
	fs.StringVar(&o.ProfileDir, "cpuprofile-dir", "", "write CPU profiles of both mesh-proxies under load into this folder")
	fs.Float64Var(&o.ProfileRate, "cpuprofile-rate", o.ProfileRate, "rate while profiling (16 connections)")
	fs.StringVar(&o.RawFile, "raw", "", "write every measurement as JSON to this file")
	fs.StringVar(&o.From, "from", "", "print the report of a -raw file again, measuring nothing")
	fs.StringVar(&o.MeshProxy, "mesh-proxy", "", "mesh-proxy binary (default: built from ./proxy)")
	fs.StringVar(&o.MeshInit, "mesh-proxy-init", "", "mesh-proxy-init binary (default: built from ./proxy-init)")
	fs.BoolVar(&o.Smoke, "smoke", false, "a few seconds: one rate, one connection, one repetition, a two-step knee")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q; flags only", fs.Args())
	}
	o.Candidates = splitList(*cands)
	var err error
	if o.Rates, err = parseList(*rates, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		return o, fmt.Errorf("invalid -rates %q: %w", *rates, err)
	}
	if o.Conns, err = parseList(*conns, strconv.Atoi); err != nil {
		return o, fmt.Errorf("invalid -conns %q: %w", *conns, err)
	}
	if o.Smoke {
		o.smoke()
	}
	return o, o.validate()
}

func (o options) validate() error {
	if len(o.Candidates) == 0 {
		return errors.New("no candidates; name some with -candidates")
	}
	for _, c := range o.Candidates {
		known := false
		for _, k := range allCandidates {
			known = known || c == k
		}
		if !known {
			return fmt.Errorf("unknown candidate %q; known: %s", c, strings.Join(allCandidates, ", "))
		}
	}
	for _, r := range o.Rates {
		if r <= 0 {
			return fmt.Errorf("rate %v is not positive", r)
		}
	}
	for _, c := range o.Conns {
		if c <= 0 {
			return fmt.Errorf("connection count %d is not positive", c)
		}
	}
	if o.Reps < 1 || o.Threads < 1 || o.Body < 0 || o.KneeConns < 1 || o.KneeStart <= 0 || o.HoldConns < 0 {
		return errors.New("-reps, -threads, -knee-conns and -knee-start must be positive, -body and -hold-conns not negative")
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range splitList(s) {
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// durationFor is the measured time of a run at rate.
func (o options) durationFor(rate float64) time.Duration {
	if o.Duration > 0 {
		return o.Duration
	}
	return max(2*time.Second, time.Duration(400/rate*float64(time.Second)))
}
