//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const meshedAppManifests = `
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
      args: [serve, --addr, ":8081"]
`

// The product's first steps, for real: `mesh install | kubectl apply -f -` brings up the
// control plane; `mesh inject DIR | kubectl apply -f -` meshes a directory of workloads; every
// meshed pod's proxy gets a certificate for its ServiceAccount from the identity service and
// only then becomes ready; the destination service tells the client's proxy where the
// service's pods are and who they are, so traffic between meshed pods flows over mTLS through
// both proxies, which count it with the client's verified identity.
func TestInstallThenInjectedPodsGetCertificates(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)

	controlPlane := c.namespace(t, "e2e-cp")
	install := runMesh(t, mesh, "install", "--ignore-cluster", "--set", "namespace="+controlPlane)
	if _, err := c.runWithInput(t, 2*time.Minute, install, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	t.Cleanup(func() { // the cluster-scoped RBAC outlives the namespace
		_, _ = c.runWithInput(t, 2*time.Minute, withoutCRDs(install), "delete", "--ignore-not-found", "--wait=false", "-f", "-") // the CRDs are shared
	})
	if _, err := c.run(t, 3*time.Minute, "-n", controlPlane, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, controlPlane))
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(fmt.Sprintf(meshedAppManifests, testImage("e2e-echo"))), 0o644); err != nil {
		t.Fatal(err)
	}
	app := c.namespace(t, "e2e-meshed")
	injected := runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, dir)
	c.apply(t, app, injected)
	if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed deployment did not become ready: %v\n%s", err, c.describe(t, app))
	}
	if _, err := c.run(t, 3*time.Minute, "-n", app, "wait", "--for=condition=Ready", "pod/client", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed client did not become ready: %v\n%s", err, c.describe(t, app))
	}

	// Each proxy holds a certificate for exactly its pod's ServiceAccount.
	wantID := "spiffe://cluster.local/ns/" + app + "/sa/default"
	logs := c.must(t, "-n", app, "logs", "client", "-c", "mesh-proxy")
	if !strings.Contains(logs, `msg="got a certificate" identity=`+wantID) {
		t.Errorf("the client's proxy does not report a certificate for %s; its log:\n%s", wantID, logs)
	}

	// Traffic from the meshed client reaches both meshed replicas through the proxies.
	out, err := c.run(t, 2*time.Minute, "-n", app, "exec", "client", "-c", "client", "--",
		"e2e-echo", "get", "http://echo."+app+".svc.cluster.local/", "--want-distinct", "2", "--timeout", "60s")
	if err != nil {
		t.Fatalf("meshed client to meshed service: %v\n%s", err, out)
	}

	// The server proxies' metrics (read on their admin port, which proxy-init leaves alone)
	// show the certificate's expiry about 24 h ahead and the inbound requests.
	pods := strings.Fields(c.must(t, "-n", app, "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].status.podIP}"))
	inbound := 0
	for _, ip := range pods {
		metrics := func(grep string) string {
			out, err := c.run(t, time.Minute, "-n", app, "exec", "client", "-c", "client", "--",
				"e2e-echo", "get", "http://"+ip+":4191/metrics", "--grep", grep, "--timeout", "30s")
			if err != nil {
				t.Fatalf("reading the metrics of the proxy at %s: %v", ip, err)
			}
			return out
		}
		expiry := metricValue(t, metrics("identity_cert_expiration_timestamp_seconds"), "identity_cert_expiration_timestamp_seconds")
		if left := time.Until(time.Unix(int64(expiry), 0)); left < 23*time.Hour || left > 25*time.Hour {
			t.Errorf("the proxy at %s holds a certificate expiring in %s, want about 24h", ip, left)
		}
		for _, line := range strings.Split(metrics("request_total{"), "\n") {
			// Discovery gave the client's proxy the servers' identities, so every request
			// between the two meshed pods went over mTLS, from the client's identity.
			if strings.Contains(line, `direction="inbound"`) && strings.Contains(line, `tls="true"`) &&
				strings.Contains(line, `client_id="`+wantID+`"`) {
				inbound += int(metricValue(t, line, "request_total"))
			}
		}
	}
	if inbound < 2 {
		t.Errorf("the server proxies counted %d inbound mTLS requests from %s, want at least 2 (one per replica)", inbound, wantID)
	}
}

// metricValue returns the value of the first sample of name in Prometheus text.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	t.Fatalf("no %s sample in:\n%s", name, text)
	return 0
}
