//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// webhookApp is a plain Deployment of the echo server (no sidecar, no annotation: its
// namespace asks for injection) and a pod that opts out.
const webhookApp = `
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
kind: Pod
metadata:
  name: opted-out
  annotations:
    lightmesh.io/inject: disabled
spec:
  containers:
    - name: echo
      image: %[1]s
      imagePullPolicy: Never
      args: [serve]
`

// With the control plane installed, pods created in a namespace annotated
// lightmesh.io/inject: enabled get the proxy from the webhook, and the proxy gets its
// certificate from the identity service; a pod annotated disabled is left alone.
func TestWebhookInjectsAnnotatedNamespace(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)

	controlPlane := c.namespace(t, "e2e-wh-cp")
	install := runMesh(t, mesh, "install", "--ignore-cluster", "--set", "namespace="+controlPlane)
	if !strings.Contains(install, "kind: MutatingWebhookConfiguration") {
		t.Fatal("mesh install renders no MutatingWebhookConfiguration")
	}
	if _, err := c.runWithInput(t, 2*time.Minute, install, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	t.Cleanup(func() { // the webhook configuration and the RBAC are cluster-scoped
		_, _ = c.runWithInput(t, 2*time.Minute, withoutCRDs(install), "delete", "--ignore-not-found", "--wait=false", "-f", "-") // the CRDs are shared
	})
	if _, err := c.run(t, 3*time.Minute, "-n", controlPlane, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, controlPlane))
	}

	app := c.namespace(t, "e2e-wh-app")
	c.must(t, "annotate", "namespace", app, "lightmesh.io/inject=enabled")
	// Until kube-proxy routes the webhook Service to the ready controller, the API server
	// cannot reach the injector and (failurePolicy Ignore) admits pods without a proxy: wait
	// until a server-side dry run of a pod comes back injected.
	eventually(t, 2*time.Minute, "the API server to reach the injector", func() (bool, string) {
		out, err := c.run(t, 30*time.Second, "-n", app, "run", "probe", "--image="+testImage("e2e-echo"), "--restart=Never",
			"--dry-run=server", "-o", "jsonpath={.spec.initContainers[*].name}")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, "mesh-proxy"), "init containers " + out
	})
	c.apply(t, app, fmt.Sprintf(webhookApp, testImage("e2e-echo")))

	if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("the deployment did not become ready: %v\n%s", err, c.describe(t, app))
	}
	pods := strings.Fields(c.must(t, "-n", app, "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(pods) == 0 {
		t.Fatalf("no echo pod\n%s", c.describe(t, app))
	}
	pod := pods[0]
	initContainers := c.must(t, "-n", app, "get", "pod", pod, "-o", "jsonpath={.spec.initContainers[*].name}")
	if initContainers != "mesh-init mesh-proxy" {
		logs, _ := c.run(t, 30*time.Second, "-n", controlPlane, "logs", "deployment/lightmesh-controller", "-c", "injector")
		t.Fatalf("pod %s has init containers %q, want the webhook's mesh-init mesh-proxy; the injector's log:\n%s", pod, initContainers, logs)
	}
	injectedBy := c.must(t, "-n", app, "get", "pod", pod, "-o", `jsonpath={.metadata.annotations.lightmesh\.io/injected-by}`)
	if !strings.HasPrefix(injectedBy, "mesh-webhook ") {
		t.Errorf("pod %s: lightmesh.io/injected-by %q, want mesh-webhook <version>", pod, injectedBy)
	}
	// The proxy is ready only with its certificate, for exactly the pod's ServiceAccount.
	wantID := "spiffe://cluster.local/ns/" + app + "/sa/default"
	logs := c.must(t, "-n", app, "logs", pod, "-c", "mesh-proxy")
	if !strings.Contains(logs, `msg="got a certificate" identity=`+wantID) {
		t.Errorf("the proxy of %s does not report a certificate for %s; its log:\n%s", pod, wantID, logs)
	}

	// The pod annotated disabled runs as it was written.
	if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod/opted-out", "--timeout=150s"); err != nil {
		t.Fatalf("the opted-out pod did not become ready: %v\n%s", err, c.describe(t, app))
	}
	initContainers = c.must(t, "-n", app, "get", "pod", "opted-out", "-o", "jsonpath={.spec.initContainers[*].name}")
	containers := c.must(t, "-n", app, "get", "pod", "opted-out", "-o", "jsonpath={.spec.containers[*].name}")
	if initContainers != "" || containers != "echo" {
		t.Errorf("the pod annotated disabled has init containers %q and containers %q, want none and echo", initContainers, containers)
	}

	// The injector counted what it did.
	metrics, err := c.run(t, time.Minute, "get", "--raw", "/api/v1/namespaces/"+controlPlane+"/pods/"+controllerPod(t, c, controlPlane)+":9995/proxy/metrics")
	if err != nil {
		t.Fatalf("reading the injector's metrics: %v", err)
	}
	if injected := metricValue(t, grepLines(metrics, `result="injected"`), "injector_admission_reviews_total"); injected < 1 {
		t.Errorf("injector_admission_reviews_total{result=\"injected\"} is %v, want at least 1", injected)
	}
}

func controllerPod(t *testing.T, c *cluster, ns string) string {
	t.Helper()
	name := strings.TrimSpace(c.must(t, "-n", ns, "get", "pods", "-l", "lightmesh.io/control-plane-component=controller", "-o", "jsonpath={.items[0].metadata.name}"))
	if name == "" {
		t.Fatalf("no controller pod in %s", ns)
	}
	return name
}
