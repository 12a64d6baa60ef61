//go:build e2e

package e2e

// Issue 13's fault scenarios on the local cluster, under steady load from the e2e-echo load
// generator (test/images/echo): a server's proxy container killed, a rolling restart, and a
// backend that answers 500, hangs or resets, with VirtualService timeouts and retries. Outlier
// ejection under a failing endpoint is TestDemo's outlierCheck; the controller outage is
// TestDestinationUnderLoad's (a minute) and the soak's (hack/soak.sh, five minutes).
//
//	make e2e E2E_RUN=TestFaults

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const faultsControlPlane = "h-faults-cp"

// faultStats are the load client's counters with the answers by status code.
type faultStats struct {
	loadStats
	Statuses map[string]int64 `json:"statuses"`
}

// faultsServer is an echo Deployment of two replicas behind Service echo, and a flaky one
// that answers every third request 500 behind Service flaky.
const faultsServer = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
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
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: flaky
spec:
  replicas: 1
  selector:
    matchLabels: {app: flaky}
  template:
    metadata:
      labels: {app: flaky}
    spec:
      containers:
        - name: echo
          image: %[1]s
          imagePullPolicy: Never
          args: [serve, --addr, ":8080", --quiet, --fail-every, "3"]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /ready, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: flaky
spec:
  selector: {app: flaky}
  ports: [{name: http, port: 80, targetPort: http}]
`

// faultsBackend is a one-replica echo Deployment and Service named %[2]s, run with the
// extra serve flags %[3]s (--hang-every N, --reset-every N).
const faultsBackend = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
      containers:
        - name: echo
          image: %[1]s
          imagePullPolicy: Never
          args: [serve, --addr, ":8080", --quiet, %[3]s]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /ready, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: %[2]s
spec:
  selector: {app: %[2]s}
  ports: [{name: http, port: 80, targetPort: http}]
`

// faultsLoad is a load client pod: rate GETs a second to url, counters on 9000.
const faultsLoad = `
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  annotations:
    config.lightmesh.io/skip-inbound-ports: "9000"
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: load
      image: %[2]s
      imagePullPolicy: Never
      args: [load, "%[3]s", --rate, "%[4]d", --timeout, 3s, --stats-addr, ":9000"]
`

func TestFaults(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	phase := phaseLogger(t)
	installOwnControlPlane(t, c, mesh, faultsControlPlane)
	phase("control plane available")

	app := c.namespace(t, "h-faults")
	inject := func(manifest string) string { return injectFor(t, c, mesh, faultsControlPlane, manifest) }
	image := testImage("e2e-echo")
	c.apply(t, app, inject(fmt.Sprintf(faultsServer, image)+"---"+fmt.Sprintf(faultsBackend, image, "hang", `--hang-every, "5"`)+
		"---"+fmt.Sprintf(faultsBackend, image, "reset", `--reset-every, "5"`)))
	for _, d := range []string{"echo", "flaky", "hang", "reset"} {
		if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/"+d, "--timeout=150s"); err != nil {
			t.Fatalf("deployment %s did not roll out: %v\n%s", d, err, c.describe(t, app))
		}
	}
	httpc := &http.Client{Timeout: 5 * time.Second}
	// startLoad runs a load pod and returns a function reading its counters.
	startLoad := func(name, url string, rate int) func() faultStats {
		c.apply(t, app, inject(fmt.Sprintf(faultsLoad, name, image, url, rate)))
		if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=150s"); err != nil {
			t.Fatalf("the load client %s did not become ready: %v\n%s", name, err, c.describe(t, app))
		}
		ip := strings.TrimSpace(c.must(t, "-n", app, "get", "pod", name, "-o", "jsonpath={.status.podIP}"))
		return func() faultStats {
			t.Helper()
			var s faultStats
			var err error
			for range 5 {
				if err = getJSON(httpc, "http://"+ip+":9000/stats", &s); err == nil {
					return s
				}
				time.Sleep(200 * time.Millisecond) // retry pacing, bounded by the attempts
			}
			t.Fatalf("reading %s's counters: %v", name, err)
			return s
		}
	}
	// window returns the counters at least d after from.
	window := func(stats func() faultStats, from faultStats, d time.Duration) faultStats {
		t.Helper()
		var s faultStats
		eventually(t, d+30*time.Second, fmt.Sprintf("%s of load", d), func() (bool, string) {
			s = stats()
			return s.Now.Sub(from.Now) >= d, fmt.Sprintf("%s so far", s.Now.Sub(from.Now))
		})
		return s
	}

	const rate = 100
	stats := startLoad("load", "http://echo/", rate)
	warm := window(stats, stats(), 5*time.Second)
	phase(fmt.Sprintf("load flowing: %d sent, %d failed", warm.Sent, warm.Failed))

	t.Run("proxy container killed", func(t *testing.T) {
		victim := readyPods(t, c, app)[0]
		restarts := func() string {
			return strings.TrimSpace(c.must(t, "-n", app, "get", "pod", victim, "-o", `jsonpath={.status.initContainerStatuses[?(@.name=="mesh-proxy")].restartCount}`))
		}
		before := restarts()
		id := strings.TrimSpace(c.must(t, "-n", app, "get", "pod", victim, "-o", `jsonpath={.status.initContainerStatuses[?(@.name=="mesh-proxy")].containerID}`))
		id = strings.TrimPrefix(id, "containerd://")
		if id == "" {
			t.Fatalf("no container ID for mesh-proxy in %s", victim)
		}
		base := stats()
		if out, err := runHost(t, 30*time.Second, "ctr", "--address", envOr("LIGHTMESH_CONTAINERD_SOCK", "/run/lightmesh-containerd/containerd.sock"),
			"-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
			t.Fatalf("ctr tasks kill %s: %v\n%s", id, err, out)
		}
		killed := time.Now()
		phase("killed the proxy of " + victim)
		eventually(t, 2*time.Minute, victim+"'s proxy restarted and the pod ready again", func() (bool, string) {
			r := restarts()
			ready := strings.TrimSpace(c.must(t, "-n", app, "get", "pod", victim, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`))
			return r != before && ready == "True", fmt.Sprintf("restarts %s (was %s), ready %s", r, before, ready)
		})
		readyAgain := stats()
		phase(fmt.Sprintf("%s ready again %v after the kill", victim, time.Since(killed).Round(100*time.Millisecond)))
		during := readyAgain.Failed - base.Failed
		sent := readyAgain.Sent - base.Sent
		t.Logf("while the proxy was down and restarting: %d of %d requests failed", during, sent)
		// Only requests in flight on the dead proxy may fail; idempotent GETs refused by a
		// dead endpoint are retried (connect-failure is in the default retry policy). At 100
		// requests a second of a few milliseconds each, a handful is in flight at any time.
		if bound := max(int64(5), sent/100); during > bound {
			t.Errorf("%d of %d requests failed while the proxy was down, want at most %d:\n%s", during, sent, bound, readyAgain.failuresSince(base.loadStats))
		}
		// Nothing is lost once the pod is ready again: the killed pod answers again and nothing fails.
		after := window(stats, readyAgain, 15*time.Second)
		if msg := after.failuresSince(readyAgain.loadStats); msg != "" {
			t.Errorf("after the pod was ready again: %s", msg)
		}
		if after.answers(victim) == readyAgain.answers(victim) {
			t.Errorf("%s got no traffic in the 15 s after it was ready again", victim)
		}
	})

	t.Run("rolling restart", func(t *testing.T) {
		base := stats()
		c.must(t, "-n", app, "rollout", "restart", "deployment/echo")
		if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
			t.Fatalf("the rolling restart did not finish: %v\n%s", err, c.describe(t, app))
		}
		after := window(stats, stats(), 10*time.Second)
		phase(fmt.Sprintf("rolling restart: %d requests, %d failed", after.Sent-base.Sent, after.Failed-base.Failed))
		if msg := after.failuresSince(base.loadStats); msg != "" {
			t.Errorf("a rolling restart under load: %s", msg)
		}
	})

	t.Run("backend answering 500, then retries", func(t *testing.T) {
		flaky := startLoad("load-flaky", "http://flaky/", 50)
		// Without a VirtualService: Istio's default retries cover 503 only, so a third fail.
		from := window(flaky, flaky(), 2*time.Second)
		to := window(flaky, from, 10*time.Second)
		share := float64(to.Failed-from.Failed) / float64(max(1, to.Sent-from.Sent))
		t.Logf("without retries on 5xx: %d of %d failed (%.0f%%)", to.Failed-from.Failed, to.Sent-from.Sent, 100*share)
		if share < 0.25 || share > 0.42 {
			t.Errorf("without retries %.0f%% of requests failed, want about a third (--fail-every 3)", 100*share)
		}
		c.apply(t, app, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky]
  http:
  - route: [{destination: {host: flaky}}]
    timeout: 2s
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: 5xx}
`)
		// The route reaches the proxy: a 5 s window without a failure. It usually takes
		// seconds; twice in about seven runs it took over 90 s (not diagnosed, see
		// RELIABILITY.md), so the wait is 4 minutes and the delay is logged.
		applied := time.Now()
		eventually(t, 4*time.Minute, "the retry policy to reach the client's proxy", func() (bool, string) {
			a := flaky()
			b := window(flaky, a, 5*time.Second)
			return b.Failed == a.Failed, fmt.Sprintf("%d failed in 5 s", b.Failed-a.Failed)
		})
		if took := time.Since(applied); took > 30*time.Second {
			t.Logf("WARNING: the VirtualService took %s to reach the client's proxy (usually seconds)", took.Round(time.Second))
		} else {
			phase(fmt.Sprintf("the VirtualService reached the client's proxy within %s", took.Round(time.Second)))
		}
		a := flaky()
		b := window(flaky, a, 20*time.Second)
		phase(fmt.Sprintf("flaky backend with retries: %d requests, %d failed", b.Sent-a.Sent, b.Failed-a.Failed))
		if msg := b.failuresSince(a.loadStats); msg != "" {
			t.Errorf("with retries on 5xx (attempts 2), requests failed: %s", msg)
		}
	})

	// share is the fraction of the requests between two snapshots that failed.
	share := func(a, b faultStats) float64 { return float64(b.Failed-a.Failed) / float64(max(1, b.Sent-a.Sent)) }
	// applyAndSettle applies a VirtualService and waits for a 5 s window where check holds.
	applyAndSettle := func(t *testing.T, stats func() faultStats, vs, what string, check func(a, b faultStats) (bool, string)) {
		t.Helper()
		c.apply(t, app, vs)
		eventually(t, 90*time.Second, what+" to reach the client's proxy", func() (bool, string) {
			a := stats()
			return check(a, window(stats, a, 5*time.Second))
		})
	}

	t.Run("backend hanging, then timeout and per-try timeout", func(t *testing.T) {
		hang := startLoad("load-hang", "http://hang/", 20)
		// Without a route policy every fifth request waits until the client's 3 s timeout.
		a := window(hang, hang(), 2*time.Second)
		b := window(hang, a, 10*time.Second)
		t.Logf("no timeout configured: %d of %d failed (%.0f%%), %d client timeouts", b.Failed-a.Failed, b.Sent-a.Sent, 100*share(a, b), b.Failures["timeout"]-a.Failures["timeout"])
		if share(a, b) < 0.1 || b.Failures["timeout"] == a.Failures["timeout"] {
			t.Errorf("without a timeout %.0f%% of the requests failed (%v), want about a fifth by the client's timeout", 100*share(a, b), b.Failures)
		}
		// timeout 1s, no retries: the hanging fifth is answered 504 at 1 s, none waits 3 s.
		applyAndSettle(t, hang, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hang}
spec:
  hosts: [hang]
  http:
  - route: [{destination: {host: hang}}]
    timeout: 1s
    retries: {attempts: 0}
`, "the 1 s timeout", func(a, b faultStats) (bool, string) {
			return b.Statuses["504"] > a.Statuses["504"] && b.Failures["timeout"] == a.Failures["timeout"],
				fmt.Sprintf("504s %d, client timeouts %d", b.Statuses["504"]-a.Statuses["504"], b.Failures["timeout"]-a.Failures["timeout"])
		})
		a = hang()
		b = window(hang, a, 10*time.Second)
		gateway, timeouts := b.Statuses["504"]-a.Statuses["504"], b.Failures["timeout"]-a.Failures["timeout"]
		phase(fmt.Sprintf("hanging backend, timeout 1s: %d requests, %d answered 504, %d client timeouts", b.Sent-a.Sent, gateway, timeouts))
		if timeouts > 0 || share(a, b) > 0.35 || share(a, b) < 0.1 || gateway != b.Failed-a.Failed {
			t.Errorf("with timeout 1s: %d of %d failed, %d by 504, %d waited past the client's 3 s; want the hanging fifth answered 504:\n%s",
				b.Failed-a.Failed, b.Sent-a.Sent, gateway, timeouts, b.failuresSince(a.loadStats))
		}
		// perTryTimeout 300ms and 4 retries: a hanging attempt is abandoned and retried. (Concurrent
		// requests share the backend's counter, so any try hangs with probability 1/5: all five
		// hang once in 3,000 requests.)
		applyAndSettle(t, hang, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hang}
spec:
  hosts: [hang]
  http:
  - route: [{destination: {host: hang}}]
    timeout: 2s
    retries: {attempts: 4, perTryTimeout: 300ms, retryOn: "5xx,reset"}
`, "the per-try timeout", func(a, b faultStats) (bool, string) {
			return b.Failed == a.Failed, fmt.Sprintf("%d failed in 5 s", b.Failed-a.Failed)
		})
		a = hang()
		b = window(hang, a, 15*time.Second)
		phase(fmt.Sprintf("hanging backend, perTryTimeout 300ms, 4 retries: %d requests, %d failed", b.Sent-a.Sent, b.Failed-a.Failed))
		if msg := b.failuresSince(a.loadStats); msg != "" {
			t.Errorf("with per-try timeouts and retries: %s", msg)
		}
	})

	t.Run("backend resetting, then retries on reset", func(t *testing.T) {
		reset := startLoad("load-reset", "http://reset/", 20)
		a := window(reset, reset(), 2*time.Second)
		b := window(reset, a, 10*time.Second)
		t.Logf("default retries (no reset): %d of %d failed (%.0f%%): %v", b.Failed-a.Failed, b.Sent-a.Sent, 100*share(a, b), b.Statuses)
		if b.Failed == a.Failed {
			t.Errorf("a backend resetting every fifth request caused no failure without retries on reset")
		}
		applyAndSettle(t, reset, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reset}
spec:
  hosts: [reset]
  http:
  - route: [{destination: {host: reset}}]
    retries: {attempts: 4, retryOn: "reset,connect-failure"}
`, "retries on reset", func(a, b faultStats) (bool, string) {
			return b.Failed == a.Failed, fmt.Sprintf("%d failed in 5 s", b.Failed-a.Failed)
		})
		a = reset()
		b = window(reset, a, 15*time.Second)
		phase(fmt.Sprintf("resetting backend, 4 retries on reset: %d requests, %d failed", b.Sent-a.Sent, b.Failed-a.Failed))
		if msg := b.failuresSince(a.loadStats); msg != "" {
			t.Errorf("with retries on reset: %s", msg)
		}
	})
}

// runHost runs a command on the host (the node), bounded by timeout.
func runHost(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runBounded(cmd, timeout)
	return out.String(), err
}
