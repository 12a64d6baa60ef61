//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/controller/stats"
)

// startStats runs `mesh-controller stats` as a local process against the cluster (the host
// reaches pod IPs directly) and returns the address of its API; it is stopped by PID when the
// test ends.
func startStats(t *testing.T, bin, kubeconfig string) string {
	t.Helper()
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "stats", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--scrape-interval", "2s", "--scrape-timeout", "2s", "--kubeconfig", kubeconfig, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logs, logs
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
				t.Errorf("the stats service (pid %d) exited with %v after SIGTERM", cmd.Process.Pid, err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("the stats service, killed: %v", <-exited)
			t.Errorf("the stats service (pid %d) did not stop within 15s of SIGTERM; killed it", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("stats service logs:\n%s", logs.String())
		}
	})
	re := regexp.MustCompile(`msg="stats service listening" .*?addr=(\S+)`)
	addr := ""
	eventually(t, 90*time.Second, "the stats service to listen", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the stats service exited early: %v\nlogs:\n%s", err, logs.String())
		default:
		}
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != "", "logs: " + logs.String()
	})
	return addr
}

// The stats service scrapes the meshed echo replicas' proxies and reports the deployment as
// fully meshed, receiving traffic, all of it successful.
func TestStatsServiceReportsMeshedDeployment(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	controller := buildController(t)

	controlPlane := c.namespace(t, "e2e-stat-cp")
	install := runMesh(t, mesh, "install", "--ignore-cluster", "--set", "namespace="+controlPlane)
	if _, err := c.runWithInput(t, 2*time.Minute, install, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	t.Cleanup(func() {
		_, _ = c.runWithInput(t, 2*time.Minute, withoutCRDs(install), "delete", "--ignore-not-found", "--wait=false", "-f", "-") // the CRDs are shared
	})
	if _, err := c.run(t, 3*time.Minute, "-n", controlPlane, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, controlPlane))
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(fmt.Sprintf(meshedAppManifests, testImage("e2e-echo"))), 0o644); err != nil {
		t.Fatal(err)
	}
	app := c.namespace(t, "e2e-stat")
	c.apply(t, app, runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, dir))
	if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed deployment did not become ready: %v\n%s", err, c.describe(t, app))
	}
	if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod/client", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed client did not become ready: %v\n%s", err, c.describe(t, app))
	}

	addr := startStats(t, controller, c.kubeconfig)
	query := "http://" + addr + stats.APIPath + "?resource=deployment&namespace=" + app + "&window=1m"
	last := ""
	eventually(t, 3*time.Minute, "the stats API to show echo 2/2 meshed with traffic, all successful", func() (bool, string) {
		// Traffic from the meshed client through both proxies, in every round, so the window
		// sees requests between two scrapes; the rate and success rate are over the whole
		// deployment, so which replica answers does not matter.
		traffic := ""
		if out, err := c.run(t, time.Minute, "-n", app, "exec", "client", "-c", "client", "--",
			"e2e-echo", "get", "http://echo."+app+".svc.cluster.local/", "--timeout", "20s"); err != nil {
			traffic = fmt.Sprintf(" (traffic failed: %v %s)", err, out)
		}
		resp, err := http.Get(query)
		if err != nil {
			return false, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		var r stats.Response
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return false, err.Error()
		}
		b, _ := json.Marshal(r)
		last = string(b) + traffic
		for _, row := range r.Rows {
			if row.Name != "echo" {
				continue
			}
			return row.MeshedPods == 2 && row.TotalPods == 2 &&
				row.RequestsPerSecond != nil && *row.RequestsPerSecond > 0 &&
				row.SuccessRate != nil && *row.SuccessRate == 1, last
		}
		return false, last
	})
	t.Logf("stats: %s", last)
}
