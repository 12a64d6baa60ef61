//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/version"
)

// cluster is how a test reaches the local cluster: kubectl with the cluster's kubeconfig.
type cluster struct {
	kubectl    string
	kubeconfig string
	// dir is the cluster's state directory (PID files, logs), as hack/cluster.sh keeps it.
	dir string
}

// localCluster skips the test loudly when not root, and fails it when the cluster the
// Makefile should have started does not answer.
func localCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("!!! SKIPPED: end-to-end tests need root to run the local cluster; CI runs them as root")
	}
	c := &cluster{
		kubectl:    envOr("KUBECTL", "kubectl"),
		kubeconfig: os.Getenv("KUBECONFIG"),
		dir:        envOr("LIGHTMESH_CLUSTER_DIR", "/var/lib/lightmesh-cluster"),
	}
	if c.kubeconfig == "" {
		t.Fatal("KUBECONFIG is not set: run the end-to-end tests with `make e2e`, which starts the local cluster")
	}
	if _, err := c.run(t, 30*time.Second, "get", "--raw", "/readyz"); err != nil {
		t.Fatalf("the cluster does not answer (%v): run `make cluster` and read its logs in %s/logs", err, c.dir)
	}
	return c
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// run runs kubectl with a deadline and returns its standard output.
func (c *cluster) run(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	return c.runWithInput(t, timeout, "", args...)
}

func (c *cluster) runWithInput(t *testing.T, timeout time.Duration, input string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// must runs kubectl and fails the test on error.
func (c *cluster) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(t, 2*time.Minute, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply applies manifest in namespace ns.
func (c *cluster) apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if _, err := c.runWithInput(t, time.Minute, manifest, "-n", ns, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// namespace creates a namespace with a random name, deleted when the test ends.
func (c *cluster) namespace(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := prefix + "-" + hex.EncodeToString(b)
	c.must(t, "create", "namespace", ns)
	t.Cleanup(func() {
		if _, err := c.run(t, 2*time.Minute, "delete", "namespace", ns, "--wait=true", "--timeout=90s"); err != nil {
			t.Logf("deleting namespace %s: %v", ns, err)
		}
	})
	return ns
}

// eventually polls check every half second until it returns true or timeout passes; then it
// fails the test with the last description check gave.
func eventually(t *testing.T, timeout time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, desc := check()
		if ok {
			return
		}
		last = desc
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(500 * time.Millisecond) // polling interval, bounded by the deadline above
	}
}

// waitPodDone waits until a pod has succeeded or failed and returns that phase.
func (c *cluster) waitPodDone(t *testing.T, ns, pod string, timeout time.Duration) string {
	t.Helper()
	var phase string
	eventually(t, timeout, "pod "+ns+"/"+pod+" to finish", func() (bool, string) {
		out, err := c.run(t, 20*time.Second, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		phase = strings.TrimSpace(out)
		if err != nil {
			return false, err.Error()
		}
		return phase == "Succeeded" || phase == "Failed", "phase " + phase
	})
	return phase
}

// describe returns what kubectl says of a namespace's pods and events, for failure messages.
func (c *cluster) describe(t *testing.T, ns string) string {
	t.Helper()
	pods, _ := c.run(t, 30*time.Second, "-n", ns, "get", "pods", "-o", "wide")
	events, _ := c.run(t, 30*time.Second, "-n", ns, "get", "events", "--sort-by=.lastTimestamp")
	return "pods:\n" + pods + "events:\n" + events
}

// testImage is the reference of an image `make images` builds and imports.
func testImage(name string) string { return version.Image("", name) }

// phaseLogger returns a function that logs a step of a long test with the seconds since the
// call and the wall-clock time (to match against the cluster's logs).
func phaseLogger(t *testing.T) func(what string) {
	started := time.Now()
	return func(what string) {
		t.Helper()
		t.Logf("[%5.1fs %s] %s", time.Since(started).Seconds(), time.Now().UTC().Format("15:04:05.0"), what)
	}
}

// installOwnControlPlane installs a control plane into namespace ns for one test and deletes
// it when the test ends. The CustomResourceDefinitions are shared with every installation on
// the cluster: applied only when the cluster lacks them, never deleted. It returns once every
// Deployment of the control plane is available.
func installOwnControlPlane(t *testing.T, c *cluster, mesh, ns string) {
	t.Helper()
	full := runMesh(t, mesh, "install", "--ignore-cluster", "--set", "namespace="+ns)
	if _, err := c.run(t, 30*time.Second, "get", "crd", "virtualservices.networking.istio.io"); err != nil {
		if _, err := c.runWithInput(t, 2*time.Minute, full, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply of mesh install's output (with CRDs): %v", err)
		}
	}
	install := withoutCRDs(full)
	if _, err := c.runWithInput(t, 2*time.Minute, install, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	t.Cleanup(func() {
		if _, err := c.runWithInput(t, 3*time.Minute, install, "delete", "--ignore-not-found", "--wait=true", "--timeout=120s", "-f", "-"); err != nil {
			t.Logf("deleting the control plane %s: %v", ns, err)
		}
	})
	if _, err := c.run(t, 3*time.Minute, "-n", ns, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, ns))
	}
}

// injectFor returns manifest as `mesh inject` meshes it for the control plane in namespace
// controlPlane.
func injectFor(t *testing.T, c *cluster, mesh, controlPlane, manifest string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, dir)
}
