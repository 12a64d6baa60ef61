package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

func TestSummarizeNearestRank(t *testing.T) {
	var samples []time.Duration
	for i := 1000; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Microsecond)
	}
	got := summarize(samples)
	want := percentiles{P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000, N: 1000}
	if got != want {
		t.Errorf("summarize(1..1000 µs) = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (percentiles{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

// serve answers on a loopback listener with handler until the test ends.
func serve(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A closed-loop generator would report the server's 20 ms; measured from the intended send
// times, the queue that builds behind one connection shows.
func TestRunLoadHasNoCoordinatedOmission(t *testing.T) {
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("Content-Length") != "1024" {
			http.Error(w, "want a 1 KiB body", http.StatusBadRequest)
			return
		}
		time.Sleep(20 * time.Millisecond) // the system under test is slow
		_, _ = w.Write(make([]byte, 1024))
	})
	started := false
	res, err := runLoad(loadSpec{Target: addr, Host: "app", Rate: 100, Conns: 1, Duration: 500 * time.Millisecond, Drain: 5 * time.Second, Body: 1024},
		func() { started = true })
	if err != nil {
		t.Fatal(err)
	}
	if !started {
		t.Error("started was not called")
	}
	if res.Offered != 50 || res.Completed != 50 || res.Errors != 0 || res.Unfinished != 0 {
		t.Fatalf("offered %d completed %d errors %d unfinished %d (%s), want 50 completed", res.Offered, res.Completed, res.Errors, res.Unfinished, res.FirstError)
	}
	// 50 requests of 20 ms on one connection take 1 s; the last was due at 0.49 s.
	if res.Latency.Max < 400e3 || res.Latency.P50 < 100e3 {
		t.Errorf("latency %+v µs: want the queueing behind the slow server (max ≥ 400 ms, p50 ≥ 100 ms)", res.Latency)
	}
	if res.Lateness.N != 50 {
		t.Errorf("lateness has %d samples, want 50", res.Lateness.N)
	}
}

func TestRunLoadCountsErrorsAndUnfinished(t *testing.T) {
	var fail atomic.Bool
	addr := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if fail.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	res, err := runLoad(loadSpec{Target: addr, Host: "app", Rate: 200, Conns: 2, Duration: 100 * time.Millisecond, Drain: time.Second, Body: 10},
		func() { fail.Store(true) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != res.Offered || res.Completed != 0 || !strings.Contains(res.FirstError, "status 502") {
		t.Errorf("got %d errors of %d (first %q), want every request to fail with 502", res.Errors, res.Offered, res.FirstError)
	}

	// A server that never answers: requests are unfinished, with the time they waited.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	if _, err := runLoad(loadSpec{Target: ln.Addr().String(), Host: "app", Rate: 100, Conns: 1, Duration: 100 * time.Millisecond, Drain: 100 * time.Millisecond, Body: 10, WarmupTimeout: 200 * time.Millisecond}, nil); err == nil {
		t.Error("warm-up against a silent server succeeded, want an error")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-smoke", "-candidates", "direct,haproxy"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Rates) != 1 || o.Rates[0] != 100 || o.Reps != 1 || o.Duration != time.Second || strings.Join(o.Candidates, ",") != "direct,haproxy" {
		t.Errorf("smoke options %+v", o)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.durationFor(100) != 4*time.Second || o.durationFor(5000) != 2*time.Second {
		t.Errorf("durations %s and %s, want 4s and 2s", o.durationFor(100), o.durationFor(5000))
	}
	for _, args := range [][]string{{"-candidates", "envoy"}, {"-rates", "100,x"}, {"-conns", "0"}, {"-reps", "0"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted, want an error", args)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestProcReaders(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	cpu, err := cpuSeconds(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("cpuSeconds(self) = %v, %v; want > 0 after spinning", cpu, err)
	}
	for _, field := range []string{"VmRSS", "VmHWM"} {
		if v, err := memMiB(os.Getpid(), field); err != nil || v <= 0 {
			t.Errorf("memMiB(self, %s) = %v, %v; want > 0", field, v, err)
		}
	}
	if n, err := wakeups(os.Getpid()); err != nil || n <= 0 {
		t.Errorf("wakeups(self) = %v, %v; want > 0", n, err)
	}
	if _, err := memMiB(os.Getpid(), "VmNothing"); err == nil {
		t.Error("memMiB of a missing field succeeded")
	}
}

// fakeResults are two repetitions of one cell for every candidate, a knee sweep and RSS.
func fakeResults() *results {
	opts := defaultOptions()
	opts.Rates, opts.Conns, opts.Reps, opts.GoalRate, opts.GoalConns = []float64{1000}, []int{16}, 2, 1000, 16
	opts.Candidates = allCandidates
	res := &results{
		Options: opts,
		Machine: machine{CPUs: 2, Kernel: "6.18.0", Go: "go1.26.8", Date: "2026-11-25 21:00 UTC", Load: "1.00 1.00 1.00"},
		Knees:   map[string]knee{},
		Hold:    map[string][]float64{},
		PeakRSS: map[string][]float64{},
	}
	base := map[string]float64{candDirect: 150, candLightmesh: 450, candHAProxy: 400, candHAProxyIPTables: 430, candHAProxyTCP: 250, candNginx: 380}
	cpu := map[string]float64{candLightmesh: 0.15, candHAProxy: 0.13, candHAProxyIPTables: 0.14, candHAProxyTCP: 0.08, candNginx: 0.11}
	for rep := range 2 {
		for _, c := range allCandidates {
			b := base[c] + float64(rep)*10
			m := measurement{
				Candidate: c, Rep: rep,
				Spec: loadSpec{Rate: 1000, Conns: 16, Duration: 2 * time.Second, Body: 1024},
				Result: loadResult{Offered: 2000, Completed: 2000, Elapsed: 2,
					Latency:  percentiles{P50: b, P90: 2 * b, P99: 4 * b, P999: 8 * b, N: 2000},
					Lateness: percentiles{P50: 40, P99: 300, N: 2000}},
			}
			if c != candDirect {
				m.CPUPer1k = []float64{cpu[c] + float64(rep)*0.01, cpu[c]}
				m.HWM = []float64{12, 14}
				m.WakeupsPerReq = []float64{4 + float64(rep), 6}
			}
			res.Runs = append(res.Runs, m)
		}
	}
	for c, k := range map[string]float64{candDirect: 20000, candLightmesh: 7000, candHAProxy: 8000, candHAProxyIPTables: 7500, candHAProxyTCP: 12000, candNginx: 0} {
		res.Knees[c] = knee{Rate: k}
	}
	for _, c := range []string{candLightmesh, candHAProxy, candHAProxyIPTables, candHAProxyTCP, candNginx} {
		res.Hold[c] = []float64{13.5, 15.25}
		res.PeakRSS[c] = []float64{16, 21}
	}
	return res
}

func TestReportGolden(t *testing.T) {
	res := fakeResults()
	var out bytes.Buffer
	writeReport(&out, res, res.Options)
	golden.Assert(t, "report.md", out.Bytes())
}

func TestReportFromRaw(t *testing.T) {
	res := fakeResults()
	var want bytes.Buffer
	writeReport(&want, res, res.Options)
	file := t.TempDir() + "/raw.json"
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := report(file, &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("-from gives a different report:\n%s\nwant:\n%s", got.String(), want.String())
	}
}

func TestCandidateConfigs(t *testing.T) {
	f := certFiles{Chain: "/d/c.crt", Key: "/d/c.key", CA: "/d/ca.crt", Combined: "/d/c.pem"}
	a, b := haproxyConfig("A", 1, "10.99.0.2:4143", f), haproxyConfig("B", 1, "10.99.0.2:4143", f)
	for _, want := range []string{"nbthread 1", "mode http", "bind 127.0.0.1:4140", "server b 10.99.0.2:4143 ssl", "verify required", "alpn h2", "verifyhost " + serverDNSName, "ssl-min-ver TLSv1.3"} {
		if !strings.Contains(a, want) {
			t.Errorf("HAProxy A lacks %q:\n%s", want, a)
		}
	}
	for _, want := range []string{"bind 10.99.0.2:4143 ssl", "ca-file /d/ca.crt verify required", "server app 10.99.0.2:8080"} {
		if !strings.Contains(b, want) {
			t.Errorf("HAProxy B lacks %q:\n%s", want, b)
		}
	}
	na, nb := nginxConfig("A", "/d", 1, f), nginxConfig("B", "/d", 1, f)
	for _, want := range []string{"master_process off;", "worker_processes 1;", "proxy_pass https://peer;", "proxy_ssl_verify on;", "proxy_ssl_certificate /d/c.crt;", "keepalive 256;"} {
		if !strings.Contains(na, want) {
			t.Errorf("nginx A lacks %q:\n%s", want, na)
		}
	}
	for _, want := range []string{"listen 10.99.0.2:4143 ssl;", "ssl_verify_client on;", "proxy_pass http://app;"} {
		if !strings.Contains(nb, want) {
			t.Errorf("nginx B lacks %q:\n%s", want, nb)
		}
	}
}
