package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// cellKey names one table row's measurements.
type cellKey struct {
	cand  string
	rate  float64
	conns int
}

// cell gathers a candidate's repetitions of one rate and connection count.
type cell struct {
	runs []measurement
	// added[q] are the per-repetition percentile q minus direct's in the same repetition
	// (absolute latencies for direct, or when direct did not run).
	added [4][]float64
	// cpu[i] are proxy i's CPU-seconds per 1,000 requests, per repetition.
	cpu [][]float64
	// sys[i] are proxy i's wake-ups (voluntary context switches) per request, per repetition.
	sys [][]float64
}

func pcts(p percentiles) [4]float64 { return [4]float64{p.P50, p.P90, p.P99, p.P999} }

func gather(res *results) map[cellKey]*cell {
	direct := map[[3]float64]measurement{}
	for _, m := range res.Runs {
		if m.Candidate == candDirect {
			direct[[3]float64{m.Spec.Rate, float64(m.Spec.Conns), float64(m.Rep)}] = m
		}
	}
	cells := map[cellKey]*cell{}
	for _, m := range res.Runs {
		k := cellKey{m.Candidate, m.Spec.Rate, m.Spec.Conns}
		c := cells[k]
		if c == nil {
			c = &cell{cpu: make([][]float64, len(m.CPUPer1k)), sys: make([][]float64, len(m.WakeupsPerReq))}
			cells[k] = c
		}
		c.runs = append(c.runs, m)
		got := pcts(m.Result.Latency)
		var base [4]float64
		if d, ok := direct[[3]float64{m.Spec.Rate, float64(m.Spec.Conns), float64(m.Rep)}]; ok && m.Candidate != candDirect {
			base = pcts(d.Result.Latency)
		}
		for q := range got {
			c.added[q] = append(c.added[q], got[q]-base[q])
		}
		for i, v := range m.CPUPer1k {
			if i < len(c.cpu) {
				c.cpu[i] = append(c.cpu[i], v)
			}
		}
		for i, v := range m.WakeupsPerReq {
			if i < len(c.sys) {
				c.sys[i] = append(c.sys[i], v)
			}
		}
	}
	return cells
}

// spread formats the median of v with its range when there are several values.
func spread(v []float64, decimals int) string {
	med, lo, hi := medianSpread(v)
	if math.IsNaN(med) {
		return "—"
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', decimals, 64) }
	if len(v) == 1 || lo == hi {
		return f(med)
	}
	return f(med) + " (" + f(lo) + "–" + f(hi) + ")"
}

func median(v []float64) float64 {
	m, _, _ := medianSpread(v)
	return m
}

// ratio formats a/b, or "—" when it means nothing.
func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 || a < 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// cpuTotals are the per-repetition CPU-seconds per 1,000 requests of both proxies together.
func (c *cell) cpuTotals() []float64 {
	if c == nil || len(c.cpu) == 0 {
		return nil
	}
	out := make([]float64, len(c.cpu[0]))
	for _, per := range c.cpu {
		for i, v := range per {
			out[i] += v
		}
	}
	return out
}

// notes says what went wrong in a cell: errors, unfinished requests, a missed rate.
func (c *cell) notes() string {
	var errs, unfinished int
	worst := math.Inf(1)
	for _, m := range c.runs {
		errs += m.Result.Errors
		unfinished += m.Result.Unfinished
		worst = math.Min(worst, m.Result.Achieved()/m.Spec.Rate)
	}
	var n []string
	if worst < 0.95 {
		n = append(n, fmt.Sprintf("saturated (%.0f %% of the rate)", worst*100))
	}
	if errs > 0 {
		n = append(n, fmt.Sprintf("%d errors", errs))
	}
	if unfinished > 0 {
		n = append(n, fmt.Sprintf("%d unfinished", unfinished))
	}
	return strings.Join(n, ", ")
}

// writeReport writes the Markdown tables.
func writeReport(w io.Writer, res *results, opts options) {
	cells := gather(res)
	m := res.Machine
	fmt.Fprintf(w, "Machine: %d CPUs, kernel %s, %s; %s; load average at the end %s.", m.CPUs, m.Kernel, m.Go, m.Date, m.Load)
	if m.Commit != "" {
		fmt.Fprintf(w, " Proxies built from %s.", m.Commit)
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintf(w, "Open loop, %d-byte request and response bodies, HTTP/1.1 keep-alive from the client; "+
		"latency from each request's intended send time. Client and proxy A on CPU %d, proxy B and the server on CPU %d; "+
		"%d worker(s) per proxy. %d interleaved repetition(s): medians, with (min–max) across repetitions. "+
		"Latency columns are added latency over direct in the same repetition, µs; direct's row is absolute. "+
		"A negative added latency means the machine's noise (direct's own tail moves by more than the proxies cost) drowned the proxies' cost: "+
		"compare the spreads, and measure on a quiet machine. p99.9 needs 1,000 requests or more per run to mean anything. "+
		"Wake-ups per request are voluntary context switches of all the proxy's threads (`/proc/PID/task/*/status`): how often it went to sleep.\n\n",
		opts.Body, opts.ClientCPU, opts.ServerCPU, opts.Threads, opts.Reps)

	for _, rate := range opts.Rates {
		fmt.Fprintf(w, "### %.0f requests/s\n\n", rate)
		fmt.Fprintln(w, "| conns | candidate | p50 | p90 | p99 | p99.9 | achieved rps | CPU-s per 1k req (A / B) | wake-ups per req (A / B) | p99 vs HAProxy | CPU vs HAProxy | notes |")
		fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, conns := range opts.Conns {
			ha := cells[cellKey{candHAProxy, rate, conns}]
			for _, cand := range opts.Candidates {
				c := cells[cellKey{cand, rate, conns}]
				if c == nil {
					continue
				}
				var achieved []float64
				var late50, late99 []float64
				for _, r := range c.runs {
					achieved = append(achieved, r.Result.Achieved())
					late50 = append(late50, r.Result.Lateness.P50)
					late99 = append(late99, r.Result.Lateness.P99)
				}
				name := cand
				cpu, sys, p99r, cpur := "—", "—", "—", "—"
				notes := c.notes()
				if cand == candDirect {
					name = "direct (absolute)"
					g := fmt.Sprintf("generator late p50 %s, p99 %s µs", spread(late50, 0), spread(late99, 0))
					notes = strings.TrimPrefix(notes+"; "+g, "; ")
				}
				if len(c.cpu) > 0 {
					per := make([]string, len(c.cpu))
					for i, v := range c.cpu {
						per[i] = spread(v, 3)
					}
					cpu = strings.Join(per, " / ")
				}
				if len(c.sys) > 0 {
					per := make([]string, len(c.sys))
					for i, v := range c.sys {
						per[i] = strconv.FormatFloat(median(v), 'f', 1, 64)
					}
					sys = strings.Join(per, " / ")
				}
				if ha != nil && cand != candDirect {
					p99r = ratio(median(c.added[2]), median(ha.added[2]))
					cpur = ratio(median(c.cpuTotals()), median(ha.cpuTotals()))
				}
				fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", conns, name,
					spread(c.added[0], 0), spread(c.added[1], 0), spread(c.added[2], 0), spread(c.added[3], 0),
					spread(achieved, 0), cpu, sys, p99r, cpur, notes)
			}
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintln(w, "### Per candidate")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Knee: the highest rate (%d connections, %s per step) with no errors, at least 95 %% of it completed, p50 at most %s and p99 at most %s (a rate fails when it fails twice in a row). "+
		"Peak RSS is VmHWM at the end of the run; held RSS is VmRSS with %d connections open through the pair.\n\n",
		opts.KneeConns, opts.KneeStep, opts.KneeMaxP50, opts.KneeMaxP99, opts.HoldConns)
	fmt.Fprintf(w, "| candidate | knee (rps) | knee vs HAProxy | peak RSS A / B (MiB) | RSS with %d conns A / B (MiB) |\n", opts.HoldConns)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	haKnee, haHasKnee := res.Knees[candHAProxy]
	for _, cand := range opts.Candidates {
		kn, kr := "—", "—"
		if k, ok := res.Knees[cand]; ok {
			kn = kneeString(k, opts)
			if haHasKnee && cand != candHAProxy && cand != candDirect && k.Rate > 0 {
				kr = ratio(k.Rate, haKnee.Rate)
			}
		}
		peak, hold := "—", "—"
		if v := res.PeakRSS[cand]; len(v) > 0 {
			peak = joinFloats(v, 1)
		}
		if v := res.Hold[cand]; len(v) > 0 {
			hold = joinFloats(v, 1)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", cand, kn, kr, peak, hold)
	}
	fmt.Fprintln(w)
	writeGoals(w, res, cells, opts)
}

func kneeString(k knee, opts options) string {
	switch {
	case k.Rate == 0:
		return fmt.Sprintf("< %.0f", opts.KneeStart)
	case k.Rate >= opts.KneeMax:
		return fmt.Sprintf("≥ %.0f", opts.KneeMax)
	}
	return fmt.Sprintf("%.0f", k.Rate)
}

// writeGoals judges lightmesh against issue #11's goals (relative to HAProxy) and issue #5's
// absolute targets, at GoalRate and GoalConns.
func writeGoals(w io.Writer, res *results, cells map[cellKey]*cell, opts options) {
	lm := cells[cellKey{candLightmesh, opts.GoalRate, opts.GoalConns}]
	ha := cells[cellKey{candHAProxy, opts.GoalRate, opts.GoalConns}]
	if lm == nil {
		return
	}
	fmt.Fprintf(w, "### Goals (lightmesh at %.0f requests/s, %d connections)\n\n", opts.GoalRate, opts.GoalConns)
	fmt.Fprintln(w, "| goal | lightmesh | target | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	row := func(goal, got, target string, met bool, known bool) {
		verdict := "no"
		switch {
		case !known:
			verdict = "not measured"
		case strings.HasPrefix(got, "-") || strings.HasPrefix(target, "≤ -"):
			verdict = "no verdict: negative added latency is noise; re-run on a quiet machine"
		case met:
			verdict = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", goal, got, target, verdict)
	}
	lmP99, lmP50 := median(lm.added[2]), median(lm.added[0])
	lmCPU := lm.cpuTotals()
	if ha != nil {
		haP99 := median(ha.added[2])
		row("#11 p99 added latency no worse than HAProxy's", fmt.Sprintf("%.0f µs", lmP99), fmt.Sprintf("≤ %.0f µs", haP99), lmP99 <= haP99, true)
		haCPU := median(ha.cpuTotals())
		row("#11 CPU per request at most 1.2× HAProxy's", fmt.Sprintf("%.3f CPU-s/1k req", median(lmCPU)), fmt.Sprintf("≤ %.3f", 1.2*haCPU), median(lmCPU) <= 1.2*haCPU, len(lmCPU) > 0 && haCPU > 0)
	} else {
		row("#11 relative to HAProxy", "", "", false, false)
	}
	peak := res.PeakRSS[candLightmesh]
	row("#11 peak RSS per proxy ≤ 20 MiB", joinFloats(peak, 1)+" MiB", "≤ 20 MiB", maxOf(peak) <= 20, len(peak) > 0)
	lk, lok := res.Knees[candLightmesh]
	hk, hok := res.Knees[candHAProxy]
	if lok && hok {
		row("#11 knee at least 80 % of HAProxy's", kneeString(lk, opts)+" rps", fmt.Sprintf("≥ 0.8 × %s rps", kneeString(hk, opts)), lk.Rate >= 0.8*hk.Rate, hk.Rate > 0 && hk.Rate < opts.KneeMax)
	} else {
		row("#11 knee at least 80 % of HAProxy's", "", "", false, false)
	}
	row("#5 p50 added latency ≤ 150 µs", fmt.Sprintf("%.0f µs", lmP50), "≤ 150 µs", lmP50 <= 150, true)
	row("#5 p99 added latency ≤ 500 µs", fmt.Sprintf("%.0f µs", lmP99), "≤ 500 µs", lmP99 <= 500, true)
	perProxy := make([]float64, len(lm.cpu))
	for i, v := range lm.cpu {
		perProxy[i] = median(v)
	}
	row("#5 ≤ 0.1 core per 1,000 requests/s per proxy", joinFloats(perProxy, 3)+" CPU-s/1k req", "≤ 0.100", maxOf(perProxy) <= 0.1, len(perProxy) > 0)
	hold := res.Hold[candLightmesh]
	row(fmt.Sprintf("#5 RSS per proxy with %d open connections ≤ 20 MiB", opts.HoldConns), joinFloats(hold, 1)+" MiB", "≤ 20 MiB", maxOf(hold) <= 20, len(hold) > 0)
	fmt.Fprintln(w)
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
