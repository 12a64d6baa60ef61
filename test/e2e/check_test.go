//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const checkedAppManifest = `
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
          image: %s
          imagePullPolicy: Never
          args: [serve]
          ports: [{containerPort: 8080}]
`

// `mesh check` on the real cluster: --pre passes before installing; a namespace without
// lightmesh fails with ×; a real installation passes with every check √; with a meshed pod,
// --proxy passes too.
func TestCheck(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	kube := []string{"--kubeconfig", c.kubeconfig}

	// Before installing, into a namespace nobody uses.
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	fresh := "e2e-check-pre-" + hex.EncodeToString(b)
	out := runMesh(t, mesh, append(kube, "check", "--pre", "--control-plane-namespace", fresh)...)
	requireAllPassed(t, out)
	for _, want := range []string{"√ the control-plane namespace \"" + fresh + "\" is free", "√ can create ClusterRoles", "√ the nodes' clocks"} {
		if !strings.Contains(out, want) {
			t.Errorf("mesh check --pre does not say %q:\n%s", want, out)
		}
	}

	// Where nothing is installed, the checks fail and say what to do.
	empty := c.namespace(t, "e2e-check-empty")
	out, err := runMeshStatus(t, mesh, append(kube, "check", "--control-plane-namespace", empty)...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("mesh check of an empty namespace: %v, want a non-zero exit status", err)
	}
	if !strings.Contains(out, "× the lightmesh-config ConfigMap exists and parses") || !strings.Contains(out, "Status check results are ×") ||
		!strings.Contains(out, "https://lightmesh.io/checks/#lightmesh-config-config") {
		t.Errorf("mesh check of an empty namespace does not report the missing installation:\n%s", out)
	}

	// A real installation.
	controlPlane := c.namespace(t, "e2e-check-cp")
	install := runMesh(t, mesh, "install", "--ignore-cluster", "--set", "namespace="+controlPlane)
	if _, err := c.runWithInput(t, 2*time.Minute, install, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	t.Cleanup(func() { // the cluster-scoped objects outlive the namespace
		_, _ = c.runWithInput(t, 2*time.Minute, withoutCRDs(install), "delete", "--ignore-not-found", "--wait=false", "-f", "-") // the CRDs are shared
	})
	if _, err := c.run(t, 3*time.Minute, "-n", controlPlane, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, controlPlane))
	}
	out = runMesh(t, mesh, append(kube, "check", "--control-plane-namespace", controlPlane, "--wait", "60s")...)
	requireAllPassed(t, out)
	for _, category := range []string{"lightmesh-config", "control-plane", "identity"} {
		if !strings.Contains(out, "\n"+category+"\n") {
			t.Errorf("mesh check did not run the %s checks:\n%s", category, out)
		}
	}

	// A meshed pod.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(fmt.Sprintf(checkedAppManifest, testImage("e2e-echo"))), 0o644); err != nil {
		t.Fatal(err)
	}
	app := c.namespace(t, "e2e-check-app")
	c.apply(t, app, runMesh(t, mesh, append(kube, "inject", "--control-plane-namespace", controlPlane, dir)...))
	if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed deployment did not become ready: %v\n%s", err, c.describe(t, app))
	}
	out = runMesh(t, mesh, append(kube, "check", "--control-plane-namespace", controlPlane, "--proxy", "-n", app, "--wait", "60s")...)
	requireAllPassed(t, out)
	if !strings.Contains(out, "√ the meshed pods are ready") || !strings.Contains(out, "√ the meshed pods' proxies are the CLI's version") ||
		!strings.Contains(out, "√ the meshed pods' certificates chain to the current trust anchors") {
		t.Errorf("mesh check --proxy did not check the meshed pod:\n%s", out)
	}

	// The same as JSON.
	out = runMesh(t, mesh, append(kube, "check", "--control-plane-namespace", controlPlane, "--proxy", "-n", app, "-o", "json")...)
	var report struct {
		Success bool `json:"success"`
		Summary struct {
			Passed, Warnings, Failed int
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("mesh check -o json: %v\n%s", err, out)
	}
	if !report.Success || report.Summary.Failed != 0 || report.Summary.Warnings != 0 || report.Summary.Passed < 20 {
		t.Errorf("mesh check -o json: %+v\n%s", report, out)
	}
}

// requireAllPassed fails the test unless every check of a table output passed.
func requireAllPassed(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, "×") || strings.Contains(out, "‼") || !strings.Contains(out, "Status check results are √") {
		t.Fatalf("not every check passed:\n%s", out)
	}
}

// runMeshStatus runs the CLI and returns its stdout and how it ended.
func runMeshStatus(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("mesh %s (%v):\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	return stdout.String(), err
}
