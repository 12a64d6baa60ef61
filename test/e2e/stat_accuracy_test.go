//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// statAccuracyManifests: one meshed echo replica that answers every 10th request with 500
// and a meshed load generator sending it 50 requests a second, open loop, whose own counts
// are served on loopback (not intercepted) for the test to compare with.
const statAccuracyManifests = `
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
      containers:
        - name: echo
          image: %[1]s
          imagePullPolicy: Never
          args: [serve, --quiet, --fail-every, "10"]
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: load
spec:
  replicas: 1
  selector:
    matchLabels: {app: load}
  template:
    metadata:
      labels: {app: load}
    spec:
      containers:
        - name: load
          image: %[1]s
          imagePullPolicy: Never
          args: [load, "http://echo.%[2]s.svc.cluster.local/", --rate, "50", --timeout, 5s, --stats-addr, "127.0.0.1:9000"]
`

// The accuracy test: `mesh stat` on the local cluster agrees with the traffic the test
// generates. A client sends 50 requests/s to a server failing exactly every 10th; over a
// 1-minute window `mesh stat -o json` shows 90 % success within one point and 50 RPS within
// 10 %, at three successive readings once the window is full.
func TestStatAccuracy(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)

	controlPlane := installControlPlane(t, c, mesh, "e2e-statacc-cp")

	s := startStatTraffic(t, c, mesh, controlPlane, "e2e-statacc")
	// The window (1m) plus two scrape intervals (10s) must be covered by the load.
	const window = time.Minute
	s.waitSending(t, window+20*time.Second)
	// Three readings, each after the stats service had time for another scrape (10s).
	s.checkReadings(t, window, 3, 11*time.Second)
}

// statTraffic is the accuracy scenario running in a namespace of its own: the workloads of
// statAccuracyManifests, meshed by the control plane of controlPlane.
type statTraffic struct {
	c            *cluster
	mesh         string
	controlPlane string
	app          string
}

// startStatTraffic creates a namespace named after prefix (removed when the test ends),
// injects the scenario's workloads for controlPlane into it and waits until they are ready.
func startStatTraffic(t *testing.T, c *cluster, mesh, controlPlane, prefix string) *statTraffic {
	t.Helper()
	s := &statTraffic{c: c, mesh: mesh, controlPlane: controlPlane, app: c.namespace(t, prefix)}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(fmt.Sprintf(statAccuracyManifests, testImage("e2e-echo"), s.app)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.apply(t, s.app, runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, dir))
	for _, d := range []string{"echo", "load"} {
		if _, err := c.run(t, 3*time.Minute, "-n", s.app, "rollout", "status", "deployment/"+d, "--timeout=150s"); err != nil {
			t.Fatalf("the meshed deployment %s did not become ready: %v\n%s", d, err, c.describe(t, s.app))
		}
	}
	return s
}

// loadView is the load generator's own view: how long it has been sending and what it got
// back.
type loadView struct {
	Start    time.Time        `json:"start"`
	Now      time.Time        `json:"now"`
	Sent     int64            `json:"sent"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Failures map[string]int64 `json:"failures"`
}

// loadStats asks the load generator for its counts.
func (s *statTraffic) loadStats(t *testing.T) (loadView, error) {
	t.Helper()
	var v loadView
	out, err := s.c.run(t, time.Minute, "-n", s.app, "exec", "deploy/load", "-c", "load", "--",
		"e2e-echo", "get", "http://127.0.0.1:9000/stats", "--print", "--timeout", "10s")
	if err != nil {
		return v, fmt.Errorf("%w: %s", err, out)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &v); err != nil {
		return v, fmt.Errorf("%w: %s", err, out)
	}
	return v, nil
}

// waitSending waits until the load generator has been sending for d.
func (s *statTraffic) waitSending(t *testing.T, d time.Duration) {
	t.Helper()
	eventually(t, d+3*time.Minute, fmt.Sprintf("the load generator to have sent for %s", d), func() (bool, string) {
		v, err := s.loadStats(t)
		if err != nil {
			return false, err.Error()
		}
		return v.Now.Sub(v.Start) >= d, fmt.Sprintf("%+v", v)
	})
}

// statRow is the part of a `mesh stat -o json` row the accuracy checks read.
type statRow struct {
	Name              string   `json:"name"`
	MeshedPods        int      `json:"meshedPods"`
	SuccessRate       *float64 `json:"successRate"`
	RequestsPerSecond *float64 `json:"requestsPerSecond"`
}

// stat is `mesh stat deploy echo -o json` over window: its one row.
func (s *statTraffic) stat(t *testing.T, window time.Duration) statRow {
	t.Helper()
	var r struct {
		Rows []statRow `json:"rows"`
	}
	out := runMesh(t, s.mesh, "--kubeconfig", s.c.kubeconfig, "stat", "deploy", "echo", "-n", s.app,
		"--control-plane-namespace", s.controlPlane, "-t", window.String(), "-o", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("mesh stat -o json: %v\n%s", err, out)
	}
	if len(r.Rows) != 1 || r.Rows[0].Name != "echo" || r.Rows[0].MeshedPods != 1 {
		t.Fatalf("mesh stat deploy echo: want one row, echo with 1 meshed pod:\n%s", out)
	}
	return r.Rows[0]
}

// checkReadings reads `mesh stat` over window n times, interval apart, and checks each
// reading: 90 % success within one point and 50 RPS within 10 %.
func (s *statTraffic) checkReadings(t *testing.T, window time.Duration, n int, interval time.Duration) {
	t.Helper()
	for i := range n {
		if i > 0 {
			prev := time.Now()
			eventually(t, interval+time.Minute, "the next scrape interval", func() (bool, string) {
				return time.Since(prev) >= interval, ""
			})
		}
		row := s.stat(t, window)
		before, err := s.loadStats(t)
		if err != nil {
			t.Fatalf("the load generator's counts: %v", err)
		}
		sr, rps := math.NaN(), math.NaN()
		if row.SuccessRate != nil {
			sr = *row.SuccessRate
		}
		if row.RequestsPerSecond != nil {
			rps = *row.RequestsPerSecond
		}
		sent := float64(before.Sent) / before.Now.Sub(before.Start).Seconds()
		t.Logf("reading %d: mesh stat success %.4f rps %.3f; the load generator sent %.2f/s since its start: %+v", i+1, sr, rps, sent, before)
		if math.IsNaN(sr) || math.Abs(sr-0.90) > 0.01 {
			t.Errorf("reading %d: mesh stat success rate %.4f, want 0.90 ± 0.01 (every 10th request fails)", i+1, sr)
		}
		if math.IsNaN(rps) || math.Abs(rps-50) > 5 {
			t.Errorf("reading %d: mesh stat RPS %.3f, want 50 ± 5 (the load generator sends 50/s)", i+1, rps)
		}
	}
}
