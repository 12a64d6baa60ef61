//go:build integration

// The benchmark's smoke mode, in the integration layer (root; `make integration`): every
// candidate is set up in its own network namespaces, carries a second of load, and the
// report is produced. It skips loudly without root or without haproxy (after trying to
// install it):
//
//	sudo go test -tags integration ./bench/
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the benchmark's roles inside the namespaces.
func TestMain(m *testing.M) {
	if code, ok := runRole(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED (NOT ROOT): the benchmark smoke test needs root (network namespaces, iptables); run it as root, e.g. sudo go test -tags integration ./bench/")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "../hack/ensure-packages.sh", "haproxy", "nginx").CombinedOutput(); err != nil {
		t.Logf("hack/ensure-packages.sh haproxy nginx: %v\n%s", err, out)
	}
	for _, p := range []string{"ip", "taskset", "setpriv", "iptables-nft-restore", "haproxy"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("SKIPPED (MISSING %s): the benchmark smoke test needs it and it could not be installed; run hack/ensure-packages.sh haproxy nginx iptables iproute2 as root", p)
		}
	}
	opts := defaultOptions()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Log("!!! nginx is missing: the smoke test runs without the nginx candidate")
		opts.Candidates = []string{candDirect, candLightmesh, candHAProxy}
	}
	// The controls too, so that they keep working though no default run names them.
	opts.Candidates = append(opts.Candidates, candHAProxyIPTables, candHAProxyTCP)
	opts.smoke()
	opts.RawFile = filepath.Join(t.TempDir(), "raw.json")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before := benchNamespaces(t)

	var out, log bytes.Buffer
	runCtx, runCancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer runCancel()
	if err := run(runCtx, opts, self, &out, &log); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, log.String())
	}
	t.Logf("report:\n%s\nprogress:\n%s", out.String(), log.String())

	b, err := os.ReadFile(opts.RawFile)
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	for _, cand := range opts.Candidates {
		var runs []measurement
		for _, m := range res.Runs {
			if m.Candidate == cand {
				runs = append(runs, m)
			}
		}
		if len(runs) == 0 {
			t.Errorf("%s: no measurement", cand)
			continue
		}
		for _, m := range runs {
			r := m.Result
			if r.Completed == 0 || r.Errors != 0 || r.Completed+r.Unfinished != r.Offered {
				t.Errorf("%s carried no clean traffic: %+v", cand, r)
			}
			if r.Latency.N != r.Offered || r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 {
				t.Errorf("%s: implausible latencies %+v for %d requests", cand, r.Latency, r.Offered)
			}
			if cand == candDirect {
				continue
			}
			if len(m.CPUPer1k) != 2 || len(m.HWM) != 2 || m.HWM[0] <= 0 || m.HWM[1] <= 0 {
				t.Errorf("%s: want CPU and peak RSS of two proxies, got %v and %v", cand, m.CPUPer1k, m.HWM)
			}
			if len(res.Hold[cand]) != 2 || len(res.PeakRSS[cand]) != 2 {
				t.Errorf("%s: want held and peak RSS of two proxies, got %v and %v", cand, res.Hold[cand], res.PeakRSS[cand])
			}
		}
		if k, ok := res.Knees[cand]; !ok || len(k.Steps) == 0 {
			t.Errorf("%s: no knee sweep", cand)
		}
		if !strings.Contains(out.String(), "| 1 | "+cand+" ") && !strings.Contains(out.String(), "| 1 | "+cand+" (") {
			t.Errorf("the report has no row for %s:\n%s", cand, out.String())
		}
	}
	for _, want := range []string{"### 100 requests/s", "### Per candidate", "### Goals"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
	after := benchNamespaces(t)
	for ns := range after {
		if !before[ns] {
			t.Errorf("network namespace %s left behind", ns)
		}
	}
}

// benchNamespaces lists the benchmark's network namespaces (lmb-...).
func benchNamespaces(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "lmb-") {
			set[f[0]] = true
		}
	}
	return set
}
