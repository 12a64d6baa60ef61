//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clusterComponents are the processes hack/cluster.sh starts and keeps PID files for.
var clusterComponents = []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager",
	"kube-scheduler", "kubelet", "kube-proxy"}

// clusterUp runs `hack/cluster.sh up` with a deadline and returns what it printed.
func clusterUp(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "hack", "cluster.sh"), "up")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/cluster.sh up: %v\n%s", err, out)
	}
	return string(out)
}

func (c *cluster) pids(t *testing.T) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, name := range clusterComponents {
		b, err := os.ReadFile(filepath.Join(c.dir, "pids", name+".pid"))
		if err != nil {
			t.Fatalf("reading %s's PID file: %v", name, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !alive(pid) {
			t.Fatalf("%s's PID file holds %q, which is not a live process", name, b)
		}
		pids[name] = pid
	}
	return pids
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// A second `up` on a healthy cluster changes nothing: every component keeps its process.
func TestClusterUpTwiceIsNoOp(t *testing.T) {
	c := localCluster(t)
	before := c.pids(t)
	out := clusterUp(t)
	after := c.pids(t)
	for _, name := range clusterComponents {
		if before[name] != after[name] {
			t.Errorf("%s was restarted by a second up: pid %d, then %d", name, before[name], after[name])
		}
		if !strings.Contains(out, name+" is running and healthy") {
			t.Errorf("second up did not report %s as running and healthy:\n%s", name, out)
		}
	}
	if strings.Contains(out, "starting ") {
		t.Errorf("second up started something:\n%s", out)
	}
}

// `up` repairs a dead component: kill the scheduler, run up, and a new scheduler runs and
// schedules pods again.
func TestClusterUpRepairsDeadComponent(t *testing.T) {
	c := localCluster(t)
	old := c.pids(t)["kube-scheduler"]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatalf("killing kube-scheduler (pid %d): %v", old, err)
	}
	eventually(t, 30*time.Second, "the killed scheduler to exit", func() (bool, string) {
		return !alive(old) || isZombie(old), "still alive"
	})
	out := clusterUp(t)
	if !strings.Contains(out, "starting kube-scheduler") {
		t.Errorf("up did not restart the dead scheduler:\n%s", out)
	}
	now := c.pids(t)["kube-scheduler"]
	if now == old {
		t.Fatalf("kube-scheduler still has the killed pid %d", old)
	}
	ns := c.namespace(t, "e2e-repair")
	c.apply(t, ns, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"restartPolicy":"Never",`+
		`"containers":[{"name":"c","image":"`+testImage("mesh-proxy")+`","imagePullPolicy":"Never","args":["version"]}]}}`)
	if phase := c.waitPodDone(t, ns, "p", 2*time.Minute); phase != "Succeeded" {
		t.Fatalf("a pod created after the repair ended %s\n%s", phase, c.describe(t, ns))
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] == "Z"
}
