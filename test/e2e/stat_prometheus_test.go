//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/install"
)

// promScrapeInterval is how often the test's Prometheus scrapes the proxies.
const promScrapeInterval = 5 * time.Second

// prometheusServer is a real Prometheus (built from its Go module by
// hack/build-prometheus.sh) running on this machine, listening on every address: the test
// reaches it on loopback, pods on the node's IP.
type prometheusServer struct {
	url        string // for the test
	podURL     string // for the stats service, in a pod
	configFile string
	kubeconfig string
	client     *http.Client
}

// startPrometheus runs Prometheus on a free port with its own storage and a configuration
// that scrapes nothing yet (see scrapeProxies); it is stopped by PID when the test ends.
func startPrometheus(t *testing.T, c *cluster, root string) *prometheusServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "hack/build-prometheus.sh")
	build.Dir = root
	out, err := build.Output()
	if err != nil {
		t.Fatalf("hack/build-prometheus.sh: %v", err)
	}
	bin := strings.TrimSpace(string(out))

	dir := t.TempDir()
	p := &prometheusServer{configFile: filepath.Join(dir, "prometheus.yml"), kubeconfig: c.kubeconfig, client: &http.Client{Timeout: 10 * time.Second}}
	if err := os.WriteFile(p.configFile, []byte("global:\n  scrape_interval: "+promScrapeInterval.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A free port: taken from the kernel, released, and bound again by Prometheus at once
	// (if another process took it meanwhile, Prometheus exits and the test says so).
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+p.configFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=0.0.0.0:"+port,
		"--web.enable-lifecycle") // POST /-/reload
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("Prometheus (pid %d) exited with %v after SIGTERM", cmd.Process.Pid, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("Prometheus, killed: %v", <-exited)
			t.Errorf("Prometheus (pid %d) did not stop within 30s of SIGTERM; killed it", cmd.Process.Pid)
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("the end of Prometheus's log:\n%s", tail(logPath, 40))
		}
	})
	p.url = "http://127.0.0.1:" + port
	eventually(t, time.Minute, "Prometheus to be ready", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("Prometheus exited early (%v):\n%s", err, tail(logPath, 40))
		default:
		}
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	nodeIP := strings.TrimSpace(c.must(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`))
	if nodeIP == "" {
		t.Fatal("the node has no InternalIP")
	}
	p.podURL = "http://" + net.JoinHostPort(nodeIP, port)
	return p
}

// tail is the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// scrapeProxies makes Prometheus scrape the proxies of controlPlane's installation with the
// add-on's own scrape configuration (install.PrometheusConfig: the pods' proxy admin port,
// namespace and pod labels), every promScrapeInterval, its pod discovery going through the
// cluster's kubeconfig file since this Prometheus runs outside the cluster.
func (p *prometheusServer) scrapeProxies(t *testing.T, controlPlane string) {
	t.Helper()
	v := install.DefaultValues()
	v.Namespace = controlPlane
	addon, err := install.PrometheusConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]any
	if err := yaml.Unmarshal(addon, &config); err != nil {
		t.Fatalf("the add-on's prometheus.yml: %v\n%s", err, addon)
	}
	global, _ := config["global"].(map[string]any)
	scrapes, _ := config["scrape_configs"].([]any)
	if global == nil || len(scrapes) != 1 {
		t.Fatalf("the add-on's prometheus.yml has no global section or not one scrape config:\n%s", addon)
	}
	global["scrape_interval"] = promScrapeInterval.String()
	job, _ := scrapes[0].(map[string]any)
	sds, _ := job["kubernetes_sd_configs"].([]any)
	if len(sds) != 1 {
		t.Fatalf("the add-on's scrape config has not one kubernetes_sd_configs entry:\n%s", addon)
	}
	sds[0].(map[string]any)["kubeconfig_file"] = p.kubeconfig
	b, err := yaml.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.configFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("Prometheus configuration:\n%s", b)
	resp, err := p.client.Post(p.url+"/-/reload", "", nil)
	if err != nil {
		t.Fatalf("reload Prometheus's configuration: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		var body [4096]byte
		n, _ := resp.Body.Read(body[:])
		t.Fatalf("Prometheus refused the configuration: %s: %s", resp.Status, body[:n])
	}
}

// waitTargetsUp waits until Prometheus scrapes the pods of namespace ns whose names start
// with each of prefixes, each as one healthy target labelled with its namespace and pod.
func (p *prometheusServer) waitTargetsUp(t *testing.T, ns string, prefixes ...string) {
	t.Helper()
	eventually(t, 90*time.Second, "Prometheus to scrape the proxies of "+strings.Join(prefixes, ", ")+" in "+ns, func() (bool, string) {
		resp, err := p.client.Get(p.url + "/api/v1/targets?state=active")
		if err != nil {
			return false, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					ScrapeURL string            `json:"scrapeUrl"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return false, err.Error()
		}
		up := map[string]int{}
		var seen []string
		for _, tg := range r.Data.ActiveTargets {
			seen = append(seen, fmt.Sprintf("%s %s/%s %s %s", tg.ScrapeURL, tg.Labels["namespace"], tg.Labels["pod"], tg.Health, tg.LastError))
			if tg.Labels["namespace"] != ns || tg.Health != "up" {
				continue
			}
			for _, prefix := range prefixes {
				if strings.HasPrefix(tg.Labels["pod"], prefix+"-") {
					up[prefix]++
				}
			}
		}
		for _, prefix := range prefixes {
			if up[prefix] != 1 {
				return false, fmt.Sprintf("targets: %q", seen)
			}
		}
		return true, ""
	})
}

// queries is how many instant queries Prometheus has answered, from its own metrics.
func (p *prometheusServer) queries(t *testing.T) float64 {
	t.Helper()
	resp, err := p.client.Get(p.url + "/metrics")
	if err != nil {
		t.Fatalf("Prometheus's metrics: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	n := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "prometheus_http_requests_total{") || !strings.Contains(line, `handler="/api/v1/query"`) {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			n += v
		}
	}
	return n
}

// TestStatFromPrometheus is the accuracy scenario of TestStatAccuracy answered through a real
// Prometheus: Prometheus (on this machine) scrapes the proxies with the install add-on's
// scrape configuration, the stats service is installed with stats.prometheusUrl pointing at
// it, and `mesh stat -o json` shows 90 % success within one point and 50 RPS within 10 %, at
// two readings a scrape interval apart; `mesh edges` shows the load generator -> echo edge,
// over mTLS, with the same rate and success; the answers came from Prometheus's query API.
func TestStatFromPrometheus(t *testing.T) {
	c := localCluster(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mesh := buildMesh(t)
	prom := startPrometheus(t, c, root)
	controlPlane := installControlPlane(t, c, mesh, "e2e-statprom-cp", "--set", "stats.prometheusUrl="+prom.podURL)
	prom.scrapeProxies(t, controlPlane)
	s := startStatTraffic(t, c, mesh, controlPlane, "e2e-statprom")
	prom.waitTargetsUp(t, s.app, "echo", "load")

	// increase() over the window needs the series to span it: the window plus two scrape
	// intervals of load.
	const window = time.Minute
	s.waitSending(t, window+2*promScrapeInterval+2*time.Second)
	before := prom.queries(t)
	s.checkReadings(t, window, 2, promScrapeInterval+time.Second)
	if after := prom.queries(t); after <= before {
		t.Errorf("Prometheus answered no query during mesh stat (%v then %v): the stats service did not read it", before, after)
	}

	out := runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "edges", "deploy", "-n", s.app,
		"--control-plane-namespace", controlPlane, "-t", window.String(), "-o", "json")
	var r struct {
		Edges []struct {
			Src               string   `json:"src"`
			SrcNamespace      string   `json:"srcNamespace"`
			Dst               string   `json:"dst"`
			DstNamespace      string   `json:"dstNamespace"`
			ClientID          string   `json:"clientId"`
			Secured           bool     `json:"secured"`
			RequestsPerSecond *float64 `json:"requestsPerSecond"`
			SuccessRate       *float64 `json:"successRate"`
		} `json:"edges"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("mesh edges -o json: %v\n%s", err, out)
	}
	found := false
	for _, e := range r.Edges {
		if e.Dst != "echo" || e.DstNamespace != s.app || e.SrcNamespace != s.app || !slices.Contains(strings.Split(e.Src, ","), "load") {
			continue
		}
		found = true
		if !e.Secured || !strings.HasSuffix(e.ClientID, "/ns/"+s.app+"/sa/default") {
			t.Errorf("the load -> echo edge is not over mTLS from %s's default ServiceAccount:\n%s", s.app, out)
		}
		if e.RequestsPerSecond == nil || math.Abs(*e.RequestsPerSecond-50) > 5 {
			t.Errorf("the load -> echo edge's RPS is not 50 ± 5:\n%s", out)
		}
		if e.SuccessRate == nil || math.Abs(*e.SuccessRate-0.90) > 0.01 {
			t.Errorf("the load -> echo edge's success rate is not 0.90 ± 0.01:\n%s", out)
		}
	}
	if !found {
		t.Errorf("mesh edges deploy shows no load -> echo edge in %s:\n%s", s.app, out)
	}
}
