//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo is the acceptance test of the whole product: `make demo` (hack/demo.sh up) on the
// local cluster succeeds step by step, a second run reuses what is there, `mesh stat` shows
// the three services meshed with traffic, and the seed's policies are in force, each spot
// checked by the demo's own traffic or a request from an unmeshed pod. With tracing turned on
// at install, a real Jaeger receives the proxies' spans as whole traces; the dashboard shows
// the traffic in headless Chromium. `make demo-down` removes it all.
func TestDemo(t *testing.T) {
	c := localCluster(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	// The proxies report their spans to a real Jaeger on this machine.
	tracer := startJaeger(t, c, root)
	installArgs := "--set tracing.enabled=true --set tracing.reporter.localAgentHostPort=" + tracer.agentAddr
	demo := func(action string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "hack/demo.sh", action)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig, "DEMO_LOG_DIR="+logDir, "DEMO_INSTALL_ARGS="+installArgs)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("hack/demo.sh %s: %v\n%s", action, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		out := demo("down")
		if _, err := c.run(t, 30*time.Second, "get", "namespace", "microservices"); err == nil {
			t.Errorf("make demo-down left namespace microservices:\n%s", out)
		}
	})

	first := demo("up")
	for _, step := range []string{"cluster", "build", "install", "check", "inject-demo", "wait-demo", "seed-istio-policies", "traffic"} {
		if !regexp.MustCompile(`==> ` + step + `\s+ok \(\d+s, total \d+s\)`).MatchString(first) {
			t.Errorf("make demo did not report step %q as done with its time:\n%s", step, first)
		}
	}
	second := demo("up")
	if !strings.Contains(second, "==> traffic") || strings.Contains(second, "FAILED") {
		t.Errorf("a second make demo did not reuse what is there:\n%s", second)
	}

	// mesh stat: every demo workload meshed, the three services with traffic.
	mesh := buildMesh(t)
	var stat struct {
		Rows []struct {
			Name              string   `json:"name"`
			MeshedPods        int      `json:"meshedPods"`
			TotalPods         int      `json:"totalPods"`
			RequestsPerSecond *float64 `json:"requestsPerSecond"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "stat", "deploy", "-n", "microservices", "-o", "json")), &stat); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range stat.Rows {
		seen[r.Name] = true
		if r.MeshedPods == 0 || r.MeshedPods != r.TotalPods {
			t.Errorf("mesh stat: %s has %d of %d pods meshed", r.Name, r.MeshedPods, r.TotalPods)
		}
		if r.Name != "traffic" && (r.RequestsPerSecond == nil || *r.RequestsPerSecond <= 0) {
			t.Errorf("mesh stat: %s has no traffic", r.Name)
		}
	}
	for _, want := range []string{"user-service-v1", "user-service-v2", "order-service", "traffic"} {
		if !seen[want] {
			t.Errorf("mesh stat does not list deployment %s: %+v", want, stat.Rows)
		}
	}

	// The traffic generator's counts: the 90/10 split (traffic-splitting.yaml) shows in which
	// user-service version served each order, and the AuthorizationPolicy (mtls-policy.yaml)
	// denies its direct requests to user-service (principal .../sa/traffic) while orders,
	// which order-service's identity fetches, keep succeeding.
	var counts trafficCounts
	eventually(t, 3*time.Minute, "the traffic generator to report 300 orders", func() (bool, string) {
		logs, err := c.run(t, 30*time.Second, "-n", "microservices", "logs", "deploy/traffic", "--tail", "3")
		if err != nil {
			return false, err.Error()
		}
		counts, err = lastTrafficLine(logs)
		if err != nil {
			return false, err.Error()
		}
		o := counts["order-service"]
		return o["v1"]+o["v2"] >= 300, fmt.Sprint(counts)
	})
	orders, users := counts["order-service"], counts["user-service"]
	if share := float64(orders["v2"]) / float64(orders["v1"]+orders["v2"]); share < 0.04 || share > 0.18 {
		t.Errorf("user-service v2 served %.1f %% of the orders, want about 10 %% (the seed's 90/10 split): %v", 100*share, orders)
	}
	// A second make demo restarts order-service, which keeps orders in memory: the
	// generator's GETs of orders made before answer 404 then. Anything else is a failure.
	if orders["fail"]-orders["404"] > orders["ok"]/50 {
		t.Errorf("orders failed: %v", orders)
	}
	if users["403"] == 0 || users["ok"] > users["403"]/10 {
		t.Errorf("the traffic generator's direct requests to user-service should be denied with 403 by the seed's AuthorizationPolicy: %v", users)
	}

	seedChecks(t, c)
	t.Run("Gateway", func(t *testing.T) { gatewayCheck(t, c) })
	t.Run("OutlierDetection", func(t *testing.T) { outlierCheck(t, c) })
	t.Run("Dashboard", func(t *testing.T) { dashboardCheck(t, c, mesh) })
	t.Run("Tracing", func(t *testing.T) { tracingCheck(t, tracer) })

	// PeerAuthentication STRICT: a plain-text request from an unmeshed pod is refused. It goes
	// to order-service, which no AuthorizationPolicy selects, for an order the traffic
	// generator made: without STRICT it would be answered 200.
	plain := c.namespace(t, "e2e-demo-plain")
	c.apply(t, plain, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: plain
spec:
  restartPolicy: Never
  containers:
  - name: get
    image: %s
    imagePullPolicy: IfNotPresent
    args: ["get", "http://order-service.microservices.svc.cluster.local/api/orders/1", "--timeout", "15s"]
`, testImage("e2e-echo")))
	phase := c.waitPodDone(t, plain, "plain", 2*time.Minute)
	logs := c.must(t, "-n", plain, "logs", "plain")
	refused := strings.Contains(logs, "status 403") || strings.Contains(logs, "EOF") || strings.Contains(logs, "connection reset")
	if phase != "Failed" || strings.Contains(logs, "answer:") || !refused {
		t.Errorf("an unmeshed pod's plain-text request to order-service should be refused under STRICT mTLS (pod %s):\n%s", phase, logs)
	}
}

// seedChecks tries the seed's policies from meshed pods in namespace microservices, each
// a one-shot run of the demo's traffic program with the ServiceAccount it needs.
func seedChecks(t *testing.T, c *cluster) {
	users := "http://user-service.microservices.svc.cluster.local"

	t.Run("AuthorizationPolicy", func(t *testing.T) {
		// mtls-policy.yaml: only order-service may GET and POST /api/users/*. User 42 does
		// not exist: allowed GETs reach user-service and get its 404; POST its 405.
		lines := requestsFrom(t, c, "order-service", false,
			"GET "+users+"/api/users/42", "POST "+users+"/api/users/42", "PUT "+users+"/api/users/42",
			"GET "+users+"/api/users", "GET "+users+"//api/users/42", "GET "+users+"/api/%75sers/42",
			"GET "+users+"/api/x/../users/42", "GET "+users+"/api/users/1")
		want := []string{"404", "405", "403 denied", "403 denied", "404", "404", "404", "200"}
		for i, line := range lines {
			got := statusOf(line)
			if want[i] == "403 denied" {
				if got != "403" || strings.Contains(line, "proxy-error=-") {
					t.Errorf("%s: want 403 from the proxy (RBAC), got %s", line, got)
				}
				continue
			}
			if got != want[i] || !strings.Contains(line, "proxy-error=-") {
				t.Errorf("%s: want %s from user-service itself", line, want[i])
			}
		}
		other := requestsFrom(t, c, "traffic", false, "GET "+users+"/api/users/1")
		if statusOf(other[0]) != "403" {
			t.Errorf("another ServiceAccount: %s, want 403", other[0])
		}
	})

	t.Run("TrafficSplit", func(t *testing.T) {
		// traffic-splitting.yaml: 90/10 between user-service and user-service-v2, over 2,000
		// requests within 3 points.
		out := runTrafficPod(t, c, "order-service", []string{"--order-url=", "--user-url=" + users,
			"--rps=200", "--duration=10s", "--report-every=1h", "--timeout=5s"})
		counts, err := lastTrafficLine(out)
		if err != nil {
			t.Fatal(err)
		}
		u := counts["user-service"]
		total := u["v1"] + u["v2"]
		if total < 1900 || u["fail"] > 0 {
			t.Fatalf("the split run did not get ~2,000 answers without failures: %v", u)
		}
		if share := 100 * float64(u["v2"]) / float64(total); share < 7 || share > 13 {
			t.Errorf("user-service-v2 got %.1f %% of %d requests, want 10 ± 3", share, total)
		}
	})

	t.Run("CircuitBreaker", func(t *testing.T) {
		// circuit-breaker.yaml: maxConnections 10 and http1MaxPendingRequests 10 on host
		// user-service. 26 requests held at user-service at once: those beyond 10 in flight
		// and 10 pending are answered 503 at once by the client's proxy. (The 90/10 split
		// sends some to user-service-v2, which has no limits.)
		var reqs []string
		for range 26 {
			reqs = append(reqs, "GET "+users+"/api/users/1?delay=8s")
		}
		lines := requestsFrom(t, c, "order-service", true, reqs...)
		overflow, v1ok := 0, 0
		for _, line := range lines {
			switch {
			case strings.Contains(line, "-> 503") && strings.Contains(line, "proxy-error=overflow"):
				overflow++
			case strings.Contains(line, "-> 200 version=v1"):
				v1ok++
			}
		}
		if overflow == 0 || v1ok > 20 {
			t.Errorf("want at least one 503 overflow and at most 20 answers from v1; got %d overflows, %d from v1:\n%s", overflow, v1ok, strings.Join(lines, "\n"))
		}
	})
}

// outlierCheck: circuit-breaker.yaml's outlierDetection (consecutive5xxErrors 3, interval
// 30s, baseEjectionTime 30s, maxEjectionPercent 50) on user-service. A second v1 endpoint
// that answers 500 to everything joins the Service; a client proxy sending a steady 5
// requests a second sees at most 3 of its 500s in a row, then none while it is ejected (at
// least 20 s), then the endpoint comes back after baseEjectionTime and is ejected again.
func outlierCheck(t *testing.T, c *cluster) {
	c.apply(t, "microservices", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: user-service-failing
  labels: {app: user-service, version: v1}
spec:
  serviceAccountName: user-service
  containers:
  - name: user-service
    image: %s
    imagePullPolicy: IfNotPresent
    env: [{name: VERSION, value: v1}, {name: FAIL_EVERY, value: "1"}]
    ports: [{name: http, containerPort: 8080}, {name: grpc, containerPort: 9090}]
    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 2}
`, testImage("demo-user-service")))
	defer func() {
		_, _ = c.run(t, time.Minute, "-n", "microservices", "delete", "pod", "user-service-failing", "--wait=false")
	}()
	if _, err := c.run(t, 3*time.Minute, "-n", "microservices", "wait", "--for=condition=Ready", "pod/user-service-failing", "--timeout=150s"); err != nil {
		t.Fatalf("the failing endpoint did not become ready: %v", err)
	}
	out := runTrafficPod(t, c, "order-service", []string{"--order-url=", "--user-url=http://user-service.microservices.svc.cluster.local",
		"--rps=5", "--duration=100s", "--report-every=5s", "--timeout=5s"})
	var fails []int
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "traffic ") {
			continue
		}
		counts, err := lastTrafficLine(line)
		if err != nil {
			t.Fatal(err)
		}
		fails = append(fails, counts["user-service"]["500"])
	}
	// fails[i] is the cumulative count of 500s at 5 s intervals; the endpoint is ejected
	// where the count stops growing.
	first := -1
	for i := 0; i+1 < len(fails); i++ {
		if fails[i] > 0 && fails[i+1] == fails[i] {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatalf("the failing endpoint was never ejected: 500s at 5 s intervals %v", fails)
	}
	if fails[first] > 3 {
		t.Errorf("%d answers of 500 before the endpoint was ejected, want at most 3 (consecutive5xxErrors): %v", fails[first], fails)
	}
	flat := 0
	for i := first + 1; i < len(fails) && fails[i] == fails[first]; i++ {
		flat++
	}
	if flat < 4 {
		t.Errorf("the ejected endpoint was back within %d s, want at least 20 (baseEjectionTime 30s): %v", 5*flat, fails)
	}
	if fails[len(fails)-1] == fails[first] {
		t.Errorf("the endpoint never came back after baseEjectionTime: %v", fails)
	}
}

// gatewayCheck: the seed's Gateway and VirtualService (istio-gateway.yaml) on the ingress
// gateway (mesh install --ingress): from outside the cluster, /api/orders/... reaches
// order-service and /api/users/... user-service, each over mTLS from the gateway's identity;
// user-service's AuthorizationPolicy (mtls-policy.yaml) lets only order-service in, so the
// gateway's requests get its RBAC 403, which proves they were routed there; any other path
// gets the gateway's 404.
func gatewayCheck(t *testing.T, c *cluster) {
	nodeIP := strings.TrimSpace(c.must(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`))
	nodePort := strings.TrimSpace(c.must(t, "-n", "lightmesh", "get", "service", "lightmesh-ingress", "-o", "jsonpath={.spec.ports[0].nodePort}"))
	base := "http://" + nodeIP + ":" + nodePort
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, err.Error(), ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body), resp.Header.Get("Lightmesh-Proxy-Error")
	}
	// The gateway learns its Gateway from the controller: poll until it routes.
	eventually(t, 2*time.Minute, "the ingress gateway to route /api/orders/1 to order-service", func() (bool, string) {
		code, body, reason := get("/api/orders/1")
		return code == http.StatusOK && strings.Contains(body, `"userId"`), fmt.Sprintf("%d %s %q", code, reason, body)
	})
	if code, body, reason := get("/api/users/1"); code != http.StatusForbidden || reason != "forbidden" || !strings.Contains(body, "RBAC: access denied") {
		t.Errorf("/api/users/1 through the gateway: %d %q %q, want user-service's RBAC 403 (the gateway is not order-service)", code, reason, body)
	}
	if code, _, reason := get("/admin"); code != http.StatusNotFound || reason != "no-route" {
		t.Errorf("/admin through the gateway: %d %q, want 404 no-route", code, reason)
	}
}

// dashboardCheck serves the dashboard with `mesh dashboard` and loads its pages in headless
// Chromium (Debian's): with the demo's traffic running, the namespace page shows the demo's
// workloads with non-zero request rates, and the workload page's script draws its chart from
// the live API. A screenshot of each page is kept in $E2E_ARTIFACTS (default
// $TMPDIR/lightmesh-e2e-artifacts).
func dashboardCheck(t *testing.T, c *cluster, mesh string) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is missing: hack/test-e2e.sh installs it (apt-get install chromium)")
	}
	artifacts := envOr("E2E_ARTIFACTS", filepath.Join(os.TempDir(), "lightmesh-e2e-artifacts"))
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mesh, "--kubeconfig", c.kubeconfig, "dashboard", "--port", "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	urlLine := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		urlLine <- strings.TrimSpace(line)
	}()
	var base string
	select {
	case base = <-urlLine:
	case <-time.After(30 * time.Second):
		t.Fatal("mesh dashboard did not print its URL within 30s")
	}
	if !strings.HasPrefix(base, "http://localhost:") {
		t.Fatalf("mesh dashboard printed %q", base)
	}
	browse := func(page, shot string) string {
		t.Helper()
		profile := t.TempDir()
		common := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir=" + profile, "--window-size=1280,900", "--virtual-time-budget=15000"}
		run := func(args ...string) string {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, chromium, append(common, args...)...).Output()
			if err != nil {
				t.Fatalf("chromium %v: %v", args, err)
			}
			return string(out)
		}
		run("--screenshot="+filepath.Join(artifacts, shot), base+page)
		return run("--dump-dom", base+page)
	}

	if dom := browse("/", "dashboard-namespaces.png"); !strings.Contains(dom, `href="/namespaces/microservices"`) {
		t.Errorf("the namespaces page does not list microservices:\n%s", dom)
	}
	dom := browse("/namespaces/microservices", "dashboard-namespace.png")
	rowRPS := regexp.MustCompile(`data-name="([\w-]+)">.*?<td class="rps">([^<]*)</td>`)
	rates := map[string]string{}
	for _, m := range rowRPS.FindAllStringSubmatch(strings.ReplaceAll(dom, "\n", ""), -1) {
		rates[m[1]] = m[2]
	}
	for _, name := range []string{"user-service-v1", "user-service-v2", "order-service"} {
		if r := rates[name]; r == "" || r == "-" || r == "0.0rps" {
			t.Errorf("the namespace page shows %s with RPS %q, want a non-zero rate (rows: %v)", name, r, rates)
		}
	}
	if dom := browse("/namespaces/microservices/deployment/order-service", "dashboard-workload.png"); !strings.Contains(dom, "<polyline") {
		t.Errorf("the workload page's chart has no line: its script did not draw from the live API:\n%s", dom)
	}
	dashboardPagesCheck(t, browse) // topology, routes, check and tap (dashboard_test.go)
	t.Logf("dashboard screenshots in %s", artifacts)
}

// requestsFrom sends requests ("METHOD URL") from a meshed pod with ServiceAccount sa and
// returns one line per request ("METHOD URL -> STATUS version=V proxy-error=R").
func requestsFrom(t *testing.T, c *cluster, sa string, parallel bool, requests ...string) []string {
	t.Helper()
	return requestsFromIn(t, c, "microservices", sa, parallel, requests...)
}

// requestsFromIn is requestsFrom in namespace ns.
func requestsFromIn(t *testing.T, c *cluster, ns, sa string, parallel bool, requests ...string) []string {
	t.Helper()
	args := []string{"--timeout=30s"}
	if parallel {
		args = append(args, "--parallel")
	}
	for _, r := range requests {
		args = append(args, "--request="+r)
	}
	out := strings.TrimSpace(runTrafficPodIn(t, c, ns, sa, args))
	lines := strings.Split(out, "\n")
	if len(lines) != len(requests) {
		t.Fatalf("want %d answers, got:\n%s", len(requests), out)
	}
	return lines
}

// statusOf returns the status of a requestsFrom line.
func statusOf(line string) string {
	_, after, _ := strings.Cut(line, " -> ")
	status, _, _ := strings.Cut(after, " ")
	return status
}

// runTrafficPod runs the demo's traffic program with args in a pod of namespace
// microservices (injected by the webhook) as ServiceAccount sa, and returns its output.
func runTrafficPod(t *testing.T, c *cluster, sa string, args []string) string {
	t.Helper()
	return runTrafficPodIn(t, c, "microservices", sa, args)
}

// runTrafficPodIn is runTrafficPod in namespace ns.
func runTrafficPodIn(t *testing.T, c *cluster, ns, sa string, args []string) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%s-%d", sa, time.Now().UnixNano()%1_000_000)
	quoted, _ := json.Marshal(args)
	c.apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  serviceAccountName: %s
  restartPolicy: Never
  containers:
  - name: client
    image: %s
    imagePullPolicy: IfNotPresent
    args: %s
`, name, sa, testImage("demo-traffic"), quoted))
	defer func() { _, _ = c.run(t, time.Minute, "-n", ns, "delete", "pod", name, "--wait=false") }()
	if phase := c.waitPodDone(t, ns, name, 3*time.Minute); phase != "Succeeded" {
		t.Fatalf("pod %s %s:\n%s", name, phase, c.describe(t, ns))
	}
	return c.must(t, "-n", ns, "logs", name, "-c", "client")
}

// trafficCounts are one line of the traffic generator: per target, ok, fail, the counts by
// status code and by version.
type trafficCounts map[string]map[string]int

var trafficField = regexp.MustCompile(`([\w-]+)[=:](\d+)`)

// lastTrafficLine parses the last summary line of the traffic generator, such as
// "traffic elapsed=10s sent=100 dropped=0 | order-service ok=66 fail=1 [502:1] v1=60 v2=7 |
// user-service ok=30 fail=3 [500:3] v1=29 v2=4".
func lastTrafficLine(logs string) (trafficCounts, error) {
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "traffic ") {
			continue
		}
		out := trafficCounts{}
		for _, part := range strings.Split(lines[i], " | ")[1:] {
			name, rest, _ := strings.Cut(part, " ")
			fields := map[string]int{}
			for _, m := range trafficField.FindAllStringSubmatch(rest, -1) {
				fields[m[1]], _ = strconv.Atoi(m[2])
			}
			out[name] = fields
		}
		return out, nil
	}
	return nil, fmt.Errorf("no summary line in %q", logs)
}
