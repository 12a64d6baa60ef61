//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// injectManifests are the workloads the inject test feeds mesh inject: a Deployment of the
// echo server with its Service, a Job (a native sidecar must not keep it from finishing) and
// a bare Pod.
const injectManifests = `
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
          args: [serve]
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
`

const injectJob = `
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: get
          image: %[1]s
          imagePullPolicy: Never
          args: [get, "http://echo/"]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
    - name: client
      image: %[1]s
      imagePullPolicy: Never
      args: [serve]
`

// buildMesh builds the working tree's mesh CLI into a temporary directory, or returns $LIGHTMESH_E2E_MESH when set (a
// CLI to use instead: when the images in the cluster were built from another revision).
func buildMesh(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("LIGHTMESH_E2E_MESH"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "mesh")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/lightmesh/lightmesh/cli")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build mesh: %v\n%s", err, out)
	}
	return bin
}

// runMesh runs the CLI and returns its stdout; stderr goes to the test log.
func runMesh(t *testing.T, bin string, args ...string) string {
	t.Helper()
	return runMeshInput(t, bin, "", args...)
}

func runMeshInput(t *testing.T, bin, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("mesh %s:\n%s", strings.Join(args, " "), stderr.String())
	if err != nil {
		t.Fatalf("mesh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// dryRunApply server-side dry-runs manifest in ns and returns the objects as the API
// server would store them (defaults and admission applied).
func (c *cluster) dryRunApply(t *testing.T, ns, manifest string) []map[string]any {
	t.Helper()
	args := []string{"apply", "--dry-run=server", "-o", "json", "-f", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := c.runWithInput(t, 2*time.Minute, manifest, args...)
	if err != nil {
		t.Fatalf("the API server refused the manifests: %v\n%s", err, manifest)
	}
	var result map[string]any
	if err := json.Unmarshal([]byte(out), &result); err != nil {
		t.Fatalf("kubectl's output: %v\n%s", err, out)
	}
	if items, ok := result["items"].([]any); ok {
		var objects []map[string]any
		for _, item := range items {
			objects = append(objects, item.(map[string]any))
		}
		return objects
	}
	return []map[string]any{result}
}

func podSpecOf(obj map[string]any) map[string]any {
	switch obj["kind"] {
	case "Pod":
		return obj["spec"].(map[string]any)
	case "Job", "Deployment":
		return obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	}
	return nil
}

// checkInjected fails unless every workload came back from the API server with mesh-init
// first and mesh-proxy second as a native sidecar, the token volume, and the anchors.
func checkInjected(t *testing.T, objects []map[string]any, wantEnv map[string]string) {
	t.Helper()
	workloads := 0
	for _, obj := range objects {
		spec := podSpecOf(obj)
		if spec == nil {
			continue
		}
		workloads++
		name := fmt.Sprintf("%s/%v", obj["kind"], obj["metadata"].(map[string]any)["name"])
		inits, _ := spec["initContainers"].([]any)
		if len(inits) < 2 {
			t.Errorf("%s: init containers %v", name, inits)
			continue
		}
		first, proxy := inits[0].(map[string]any), inits[1].(map[string]any)
		if first["name"] != "mesh-init" || proxy["name"] != "mesh-proxy" {
			t.Errorf("%s: init containers %v, %v", name, first["name"], proxy["name"])
		}
		// The API server drops fields it does not know: restartPolicy coming back proves
		// it took the proxy as a native sidecar.
		if proxy["restartPolicy"] != "Always" {
			t.Errorf("%s: mesh-proxy restartPolicy %v, want Always", name, proxy["restartPolicy"])
		}
		env := map[string]string{}
		for _, e := range proxy["env"].([]any) {
			m := e.(map[string]any)
			if v, ok := m["value"].(string); ok {
				env[m["name"].(string)] = v
			}
		}
		for k, v := range wantEnv {
			if env[k] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, env[k], v)
			}
		}
		hasToken := false
		for _, v := range spec["volumes"].([]any) {
			hasToken = hasToken || v.(map[string]any)["name"] == "mesh-identity-token"
		}
		if !hasToken {
			t.Errorf("%s: no mesh-identity-token volume", name)
		}
	}
	if workloads != 3 {
		t.Errorf("the API server returned %d workloads, want 3 (Deployment, Job, Pod)", workloads)
	}
}

// mesh inject's output is accepted by the real API server (server-side dry run), native
// sidecar included, both with the trust anchors given as a file and read from an
// installation's lightmesh-config; mesh install's output is accepted too.
func TestInjectAndInstallAreAccepted(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)

	dir := t.TempDir()
	echo := testImage("e2e-echo")
	for name, content := range map[string]string{
		"app/echo.yaml": fmt.Sprintf(injectManifests, echo),
		"jobs.yml":      fmt.Sprintf(injectJob, echo),
		"README.md":     "not a manifest",
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	anchors, err := os.ReadFile("../../install/testdata/identity/ca.crt")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("inject with a trust anchors file", func(t *testing.T) {
		ns := c.namespace(t, "e2e-inject")
		injected := runMesh(t, mesh, "inject", "--ignore-cluster", "--trust-anchors-file", "../../install/testdata/identity/ca.crt", dir)
		objects := c.dryRunApply(t, ns, injected)
		checkInjected(t, objects, map[string]string{
			"MESH_PROXY_TRUST_ANCHORS":    string(anchors),
			"MESH_PROXY_IDENTITY_ADDR":    "identity.lightmesh.svc.cluster.local:8080",
			"MESH_PROXY_DESTINATION_ADDR": "destination.lightmesh.svc.cluster.local:8086",
		})
		// And uninject gives back workloads without the proxy that the API server accepts.
		uninjected := runMeshInput(t, mesh, injected, "uninject", "-")
		if strings.Contains(uninjected, "mesh-") {
			t.Errorf("uninject left lightmesh's containers or volume:\n%s", uninjected)
		}
		c.dryRunApply(t, ns, uninjected)
	})

	t.Run("install, then inject from the installation", func(t *testing.T) {
		// The control plane goes into a namespace of its own (dry-run applies need the
		// namespace to exist), so that tests running at the same time do not collide.
		ns := c.namespace(t, "e2e-install")
		manifests := runMesh(t, mesh, "install", "--ignore-cluster", "--set", "namespace="+ns)
		objects := c.dryRunApply(t, "", manifests)
		kinds := map[string]int{}
		for _, o := range objects {
			kinds[o["kind"].(string)]++
		}
		for kind, n := range map[string]int{"Namespace": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "ConfigMap": 2, "Secret": 2, "Service": 4, "Deployment": 1} {
			if kinds[kind] != n {
				t.Errorf("the API server accepted %d %s, want %d (all: %v)", kinds[kind], kind, n, kinds)
			}
		}

		// Really create lightmesh-config (only it) so that inject reads the installation.
		var config string
		for _, doc := range strings.Split(manifests, "\n---\n") {
			if strings.Contains(doc, "name: lightmesh-config\n") {
				config = doc
			}
		}
		if config == "" {
			t.Fatalf("no lightmesh-config in the install output")
		}
		c.apply(t, ns, config)
		injected := runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", ns, dir)
		if !strings.Contains(injected, "identity."+ns+".svc.cluster.local:8080") {
			t.Errorf("inject did not take the installation's namespace from the cluster")
		}
		appNS := c.namespace(t, "e2e-inject")
		checkInjected(t, c.dryRunApply(t, appNS, injected), map[string]string{
			"MESH_PROXY_IDENTITY_ADDR": "identity." + ns + ".svc.cluster.local:8080",
		})

		// Without --ignore-cluster, install now refuses: lightmesh is there.
		cmd := exec.Command(mesh, "--kubeconfig", c.kubeconfig, "install", "--set", "namespace="+ns)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already installed") {
			t.Errorf("mesh install over an installation: %v\n%s", err, out)
		}
	})
}
