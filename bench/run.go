package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// results is everything one run measured.
type results struct {
	Options options       `json:"options"`
	Machine machine       `json:"machine"`
	Runs    []measurement `json:"runs"`
	// Knees per candidate; Steps are the sweep's runs.
	Knees map[string]knee `json:"knees,omitempty"`
	// Hold is each proxy's RSS (MiB) with HoldConns connections open through it.
	Hold map[string][]float64 `json:"hold_rss_mib,omitempty"`
	// PeakRSS is each proxy's VmHWM (MiB) at the end of the run.
	PeakRSS map[string][]float64 `json:"peak_rss_mib,omitempty"`
	// Profiles are the CPU profile files written.
	Profiles []string `json:"profiles,omitempty"`
	Elapsed  float64  `json:"elapsed_s"`
}

type knee struct {
	Rate  float64       `json:"rate"`
	Steps []measurement `json:"steps"`
}

type machine struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Date   string `json:"date"`
	Load   string `json:"loadavg"`
	// Commit is `git describe --always --dirty` of the checkout the proxies were built from.
	Commit string `json:"commit,omitempty"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.Load = strings.Join(f[:3], " ")
		}
	}
	return m
}

// requirements names what is missing to run opts, with what to do about it.
func requirements(opts options) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root (network namespaces, iptables); run it with sudo")
	}
	progs := []string{"ip", "taskset"}
	for _, c := range opts.Candidates {
		switch c {
		case candLightmesh:
			progs = append(progs, "setpriv", "iptables-nft-restore")
		case candHAProxy, candHAProxyTCP:
			progs = append(progs, "haproxy")
		case candHAProxyIPTables:
			progs = append(progs, "haproxy", "setpriv", "iptables-nft-restore")
		case candNginx:
			progs = append(progs, "nginx")
		}
	}
	var missing []string
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing on PATH: %s; install them (hack/ensure-packages.sh haproxy nginx iptables iproute2 util-linux) or leave their candidates out with -candidates", strings.Join(missing, ", "))
	}
	if runtime.NumCPU() <= max(opts.ClientCPU, opts.ServerCPU) {
		return fmt.Errorf("-client-cpu %d and -server-cpu %d need %d CPUs; this machine has %d", opts.ClientCPU, opts.ServerCPU, max(opts.ClientCPU, opts.ServerCPU)+1, runtime.NumCPU())
	}
	return nil
}

// buildBinaries builds mesh-proxy and mesh-proxy-init into dir unless given.
func buildBinaries(ctx context.Context, opts *options, dir string, log io.Writer) error {
	for _, b := range []struct {
		path *string
		name string
		pkg  string
	}{
		{&opts.MeshProxy, "mesh-proxy", "github.com/lightmesh/lightmesh/proxy"},
		{&opts.MeshInit, "mesh-proxy-init", "github.com/lightmesh/lightmesh/proxy-init"},
	} {
		if *b.path != "" {
			continue
		}
		out := filepath.Join(dir, b.name)
		fmt.Fprintf(log, "go build -o %s %s\n", out, b.pkg)
		bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		cmd := exec.CommandContext(bctx, "go", "build", "-trimpath", "-o", out, b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		msg, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("go build %s: %w: %s (run the benchmark from the lightmesh module, or give -mesh-proxy and -mesh-proxy-init)", b.pkg, err, msg)
		}
		*b.path = out
	}
	return nil
}

// run measures every candidate and writes the report to out (progress to log).
func run(ctx context.Context, opts options, self string, out, log io.Writer) (err error) {
	if err := requirements(opts); err != nil {
		return err
	}
	began := time.Now()
	e, err := newEnv(self, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := e.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if err := buildBinaries(ctx, &opts, e.dir, log); err != nil {
		return err
	}
	p, err := newPKI()
	if err != nil {
		return err
	}
	cfg := setupConfig{
		pki: p, meshProxy: opts.MeshProxy, meshInit: opts.MeshInit, threads: opts.Threads,
		clientCPU: opts.ClientCPU, serverCPU: opts.ServerCPU, pprof: opts.ProfileDir != "", proxyLogMode: "warn",
	}
	cands := make([]*candidate, 0, len(opts.Candidates))
	for _, name := range opts.Candidates {
		fmt.Fprintf(log, "setting up %s\n", name)
		c, err := e.setup(name, cfg)
		if err != nil {
			return err
		}
		cands = append(cands, c)
	}
	res := &results{Options: opts, Machine: describeMachine(), Knees: map[string]knee{}, Hold: map[string][]float64{}, PeakRSS: map[string][]float64{}}

	// RSS with many open connections first, on proxies that have seen only the setup's
	// requests: later runs that saturate a proxy leave a Go heap behind.
	if opts.HoldConns > 0 {
		for _, c := range cands {
			if len(c.proxies) == 0 {
				continue
			}
			rss, err := holdRSS(e, c, opts)
			if err != nil {
				return err
			}
			res.Hold[c.name] = rss
			fmt.Fprintf(log, "%s with %d open connections: RSS %s MiB\n", c.name, opts.HoldConns, joinFloats(rss, 1))
		}
	}

	// Interleaved repetitions: every cell runs every candidate back to back, in an order
	// that rotates with the repetition, so slow drifts of the machine hit all alike.
	for rep := range opts.Reps {
		for _, rate := range opts.Rates {
			for _, conns := range opts.Conns {
				for i := range cands {
					c := cands[(i+rep)%len(cands)]
					if err := ctx.Err(); err != nil {
						return err
					}
					spec := loadSpec{Rate: rate, Conns: conns, Duration: opts.durationFor(rate), Drain: opts.Drain, Body: opts.Body}
					m, err := e.load(ctx, c, spec, opts.ClientCPU)
					if err != nil {
						return err
					}
					m.Rep = rep
					res.Runs = append(res.Runs, m)
					fmt.Fprintf(log, "rep %d/%d %5.0f rps %2d conns %-9s %s\n", rep+1, opts.Reps, rate, conns, c.name, brief(m))
				}
			}
		}
	}
	if opts.Knee {
		for _, c := range cands {
			k, err := sweepKnee(ctx, e, c, opts, log)
			if err != nil {
				return err
			}
			res.Knees[c.name] = k
		}
	}
	if opts.ProfileDir != "" {
		for _, c := range cands {
			if c.name == candLightmesh {
				files, err := profile(ctx, e, c, opts, log)
				if err != nil {
					return err
				}
				res.Profiles = files
			}
		}
	}
	for _, c := range cands {
		for _, p := range c.proxies {
			hwm, err := memMiB(p.Pid(), "VmHWM")
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			res.PeakRSS[c.name] = append(res.PeakRSS[c.name], hwm)
		}
	}
	res.Elapsed = time.Since(began).Seconds()
	if opts.RawFile != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(opts.RawFile, b, 0o644); err != nil {
			return err
		}
	}
	writeReport(out, res, opts)
	fmt.Fprintf(log, "done in %s\n", time.Since(began).Round(time.Second))
	return nil
}

func brief(m measurement) string {
	r := m.Result
	s := fmt.Sprintf("p50 %6.0f µs  p99 %7.0f µs  %6.0f rps  late p50 %4.0f µs", r.Latency.P50, r.Latency.P99, r.Achieved(), r.Lateness.P50)
	if len(m.CPUPer1k) > 0 {
		s += "  cpu/1k " + joinFloats(m.CPUPer1k, 3) + "  wakeups/req " + joinFloats(m.WakeupsPerReq, 1)
	}
	if r.Errors > 0 || r.Unfinished > 0 {
		s += fmt.Sprintf("  %d errors %d unfinished %s", r.Errors, r.Unfinished, r.FirstError)
	}
	return s
}

func joinFloats(v []float64, decimals int) string {
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = strconv.FormatFloat(f, 'f', decimals, 64)
	}
	return strings.Join(s, " / ")
}

// report rewrites the report of a raw file written by -raw, measuring nothing.
func report(file string, out io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s is not a -raw file: %w", file, err)
	}
	writeReport(out, &res, res.Options)
	return nil
}

// keptUp says whether a knee step passed.
func keptUp(m measurement, maxP50, maxP99 time.Duration) bool {
	r := m.Result
	return r.Errors == 0 && r.Unfinished == 0 && r.Achieved() >= 0.95*m.Spec.Rate &&
		r.Latency.P50 <= float64(maxP50.Microseconds()) && r.Latency.P99 <= float64(maxP99.Microseconds())
}

// sweepKnee raises the rate by half while the candidate keeps up, then bisects twice
// between the last rate it kept up with and the first it did not. A rate fails only when it
// fails twice in a row, so that one stall of a shared machine does not end the sweep.
func sweepKnee(ctx context.Context, e *env, c *candidate, opts options, log io.Writer) (knee, error) {
	var k knee
	var step func(rate float64) (bool, error)
	retried := false
	step = func(rate float64) (bool, error) {
		spec := loadSpec{Rate: math.Round(rate), Conns: opts.KneeConns, Duration: opts.KneeStep, Drain: opts.Drain, Body: opts.Body}
		m, err := e.load(ctx, c, spec, opts.ClientCPU)
		if err != nil {
			return false, err
		}
		k.Steps = append(k.Steps, m)
		ok := keptUp(m, opts.KneeMaxP50, opts.KneeMaxP99)
		fmt.Fprintf(log, "knee %-9s %6.0f rps: %s kept up: %v\n", c.name, spec.Rate, brief(m), ok)
		if !ok && !retried {
			retried = true
			defer func() { retried = false }()
			return step(rate)
		}
		return ok, nil
	}
	pass, fail := 0.0, 0.0
	for rate := opts.KneeStart; ; rate *= 1.5 {
		rate = min(rate, opts.KneeMax)
		ok, err := step(rate)
		if err != nil {
			return k, err
		}
		if !ok {
			fail = rate
			break
		}
		pass = rate
		if rate >= opts.KneeMax {
			break
		}
	}
	for range 2 {
		if fail == 0 || pass == 0 {
			break
		}
		mid := (pass + fail) / 2
		ok, err := step(mid)
		if err != nil {
			return k, err
		}
		if ok {
			pass = mid
		} else {
			fail = mid
		}
	}
	k.Rate = math.Round(pass)
	return k, nil
}

// holdRSS opens HoldConns connections through the candidate, one request each, and reads
// each proxy's RSS while they are open.
func holdRSS(e *env, c *candidate, opts options) ([]float64, error) {
	h, err := e.startRole(c.name+" hold", "hold", startOpts{ns: c.client, cpu: opts.ClientCPU}, "held",
		c.target, serverIP+":"+appPort, strconv.Itoa(opts.HoldConns))
	if err != nil {
		return nil, err
	}
	defer h.stop()
	var rss []float64
	for _, p := range c.proxies {
		v, err := memMiB(p.Pid(), "VmRSS")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		rss = append(rss, v)
	}
	return rss, nil
}

// profile loads lightmesh at ProfileRate with 16 connections for 12 s and fetches a 10 s CPU
// profile from each mesh-proxy meanwhile.
func profile(ctx context.Context, e *env, c *candidate, opts options, log io.Writer) ([]string, error) {
	if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	files := []string{filepath.Join(opts.ProfileDir, "mesh-proxy-A.pprof"), filepath.Join(opts.ProfileDir, "mesh-proxy-B.pprof")}
	errs := make([]error, 2)
	for i, ns := range []string{c.client, c.server} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Let the load warm up first.
			time.Sleep(time.Second)
			out, err := e.get(ns, adminURL+"/debug/pprof/profile?seconds=10", files[i])
			if err == nil && out != "200" {
				err = fmt.Errorf("pprof answered %s", out)
			}
			errs[i] = err
		}()
	}
	spec := loadSpec{Rate: opts.ProfileRate, Conns: 16, Duration: 13 * time.Second, Drain: opts.Drain, Body: opts.Body}
	m, err := e.load(ctx, c, spec, opts.ClientCPU)
	wg.Wait()
	if err := errors.Join(append(errs, err)...); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	fmt.Fprintf(log, "profiled lightmesh at %.0f rps: %s; go tool pprof -top %s\n", spec.Rate, brief(m), strings.Join(files, " "))
	return files, nil
}

// medianSpread is the median of v and its range.
func medianSpread(v []float64) (median, lo, hi float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}
