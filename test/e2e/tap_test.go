//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/tap"
)

// tapAppManifests are a meshed server (ServiceAccount echo, two replicas) and a meshed
// client (ServiceAccount client) that sends it 5 requests a second on /tap-e2e.
const tapAppManifests = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: echo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client}
---
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
      serviceAccountName: echo
      containers:
        - name: echo
          image: %[1]s
          imagePullPolicy: Never
          args: [serve, --quiet]
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
apiVersion: apps/v1
kind: Deployment
metadata:
  name: client
spec:
  replicas: 1
  selector:
    matchLabels: {app: client}
  template:
    metadata:
      labels: {app: client}
    spec:
      serviceAccountName: client
      containers:
        - name: client
          image: %[1]s
          imagePullPolicy: Never
          args: [load, "http://echo.%[2]s.svc.cluster.local/tap-e2e", --rate, "5"]
`

// mesh tap, through the API server's service proxy and the controller's tap API, streams
// the requests the echo deployment's proxies receive from the meshed client, with both
// identities; mesh top shows their path.
func TestTapAndTop(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)

	controlPlane := installControlPlane(t, c, mesh, "e2e-tap-cp")

	app := c.namespace(t, "e2e-tap")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(fmt.Sprintf(tapAppManifests, testImage("e2e-echo"), app)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.apply(t, app, runMesh(t, mesh, "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, dir))
	for _, d := range []string{"deployment/echo", "deployment/client"} {
		if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", d, "--timeout=150s"); err != nil {
			t.Fatalf("%s did not become ready: %v\n%s", d, err, c.describe(t, app))
		}
	}

	meshArgs := func(args ...string) []string {
		return append([]string{"--kubeconfig", c.kubeconfig}, append(args, "-n", app, "--control-plane-namespace", controlPlane)...)
	}
	clientID := "spiffe://cluster.local/ns/" + app + "/sa/client"
	echoID := "spiffe://cluster.local/ns/" + app + "/sa/echo"
	var events []tap.Event
	eventually(t, 3*time.Minute, "mesh tap to return 10 requests of the client to echo", func() (bool, string) {
		out, err := runMeshStatus(t, mesh, meshArgs("tap", "deploy/echo", "--max", "10", "--duration", "30s", "-o", "json")...)
		if err != nil {
			return false, err.Error()
		}
		events = nil
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev tap.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return false, fmt.Sprintf("line %q: %v", line, err)
			}
			events = append(events, ev)
		}
		return len(events) == 10, fmt.Sprintf("%d events: %s", len(events), out)
	})
	pods := map[string]bool{}
	for _, ev := range events {
		if ev.Direction != tap.Inbound || ev.Method != http.MethodGet || ev.Path != "/tap-e2e" || ev.Status != 200 ||
			ev.SourceIdentity != clientID || ev.DestinationIdentity != echoID || ev.Namespace != app ||
			!strings.HasPrefix(ev.Pod, "echo-") || !strings.HasPrefix(ev.Authority, "echo."+app+".svc.cluster.local") {
			t.Errorf("event %+v: want an inbound GET /tap-e2e 200 from %s to %s on an echo pod", ev, clientID, echoID)
		}
		pods[ev.Pod] = true
	}
	t.Logf("tapped pods: %v", pods)

	text, err := runMeshStatus(t, mesh, meshArgs("tap", "deployment", "echo", "--max", "3", "--path", "/tap-e2e")...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 3 {
		t.Errorf("mesh tap --max 3 printed %d lines:\n%s", len(lines), text)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "rsp ") || !strings.Contains(l, " proxy=in ") || !strings.Contains(l, ":path=/tap-e2e :status=200") ||
			!strings.Contains(l, "tls=true") || !strings.Contains(l, "src_id="+clientID+" dst_id="+echoID) {
			t.Errorf("tap line %q", l)
		}
	}

	top, err := runMeshStatus(t, mesh, meshArgs("top", "deploy/echo", "--duration", "5s")...)
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(top), "\n")
	if len(rows) < 2 || !strings.HasPrefix(rows[0], "METHOD") || !strings.Contains(rows[1], "GET") || !strings.Contains(rows[1], "/tap-e2e") || !strings.Contains(rows[1], "100.00%") {
		t.Errorf("mesh top:\n%s\nwant GET /tap-e2e at 100%% success first", top)
	}
}
