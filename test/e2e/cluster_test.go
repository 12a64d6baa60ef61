//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/version"
)

const echoManifest = `
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
          args: [serve, --addr, ":8080"]
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /ready, port: 8080}
            periodSeconds: 1
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
  restartPolicy: Never
  containers:
    - name: client
      image: %[1]s
      imagePullPolicy: Never
      args: [get, "http://echo.%[2]s.svc.cluster.local/", --want-distinct, "2", --timeout, 90s]
`

// A client pod reaches a two-replica Deployment through its Service by DNS name (CoreDNS, then
// kube-proxy's iptables rules), both replicas answer, kubectl logs shows both sides, and
// scaling to zero empties the Service's endpoints.
func TestServiceByDNSNameThroughKubeProxy(t *testing.T) {
	c := localCluster(t)
	ns := c.namespace(t, "e2e-dns")
	c.apply(t, ns, fmt.Sprintf(echoManifest, testImage("e2e-echo"), ns))
	if _, err := c.run(t, 3*time.Minute, "-n", ns, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("echo deployment did not roll out: %v\n%s", err, c.describe(t, ns))
	}

	if phase := c.waitPodDone(t, ns, "client", 3*time.Minute); phase != "Succeeded" {
		logs, _ := c.run(t, 30*time.Second, "-n", ns, "logs", "client")
		t.Fatalf("client pod %s; its logs:\n%s\n%s", phase, logs, c.describe(t, ns))
	}
	clientLogs := c.must(t, "-n", ns, "logs", "client")
	servers := strings.Fields(c.must(t, "-n", ns, "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(servers) != 2 {
		t.Fatalf("echo pods = %v, want 2", servers)
	}
	for _, pod := range servers {
		if !strings.Contains(clientLogs, "answer: "+pod) {
			t.Errorf("client never got an answer from %s through the Service; client logs:\n%s", pod, clientLogs)
		}
		serverLogs := c.must(t, "-n", ns, "logs", pod)
		if !strings.Contains(serverLogs, "request GET / from") {
			t.Errorf("kubectl logs %s does not show the client's request:\n%s", pod, serverLogs)
		}
	}

	endpoints := func() []string {
		out := c.must(t, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=echo",
			"-o", `jsonpath={range .items[*].endpoints[*]}{.addresses[0]}{" "}{end}`)
		return strings.Fields(out)
	}
	if got := endpoints(); len(got) != 2 {
		t.Fatalf("service echo has endpoints %v before scaling, want 2", got)
	}
	c.must(t, "-n", ns, "scale", "deployment/echo", "--replicas=0")
	eventually(t, 90*time.Second, "service echo to have no endpoints", func() (bool, string) {
		got := endpoints()
		return len(got) == 0, fmt.Sprintf("endpoints %v", got)
	})
}

// Every component image `make images` imported runs in the cluster; the proxy-init image
// carries both iptables backends, which run (as nobody) where the pod grants NET_ADMIN and
// NET_RAW, as proxy-init's pods do: its iptables binaries carry those file capabilities.
func TestComponentImagesRun(t *testing.T) {
	c := localCluster(t)
	ns := c.namespace(t, "e2e-images")
	type check struct {
		pod, image    string
		command, args []string
		want          string
		extra         string // more container fields, JSON
	}
	var checks []check
	for _, comp := range version.Components {
		checks = append(checks, check{pod: comp, image: version.Image("", comp), args: []string{"version"},
			want: comp + " " + version.Version})
	}
	for backend, want := range map[string]string{"nft": "(nf_tables)", "legacy": "(legacy)"} {
		checks = append(checks, check{
			pod: "iptables-" + backend, image: version.Image("", "mesh-proxy-init"),
			command: []string{"/usr/sbin/iptables-" + backend, "--version"}, want: want,
			extra: `,"securityContext":{"capabilities":{"add":["NET_ADMIN","NET_RAW"],"drop":["ALL"]}}`,
		})
	}
	for _, ch := range checks {
		spec := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q},"spec":{"restartPolicy":"Never",`+
			`"containers":[{"name":"c","image":%q,"imagePullPolicy":"Never","args":%s%s%s}]}}`,
			ch.pod, ch.image, jsonList(ch.args), commandJSON(ch.command), ch.extra)
		c.apply(t, ns, spec)
	}
	for _, ch := range checks {
		phase := c.waitPodDone(t, ns, ch.pod, 2*time.Minute)
		logs, _ := c.run(t, 30*time.Second, "-n", ns, "logs", ch.pod)
		if phase != "Succeeded" || !strings.Contains(logs, ch.want) {
			t.Errorf("pod %s (image %s): phase %s, logs %q, want them to contain %q", ch.pod, ch.image, phase, logs, ch.want)
		}
	}
}

func jsonList(items []string) string {
	b, _ := json.Marshal(append([]string{}, items...))
	return string(b)
}

func commandJSON(command []string) string {
	if len(command) == 0 {
		return ""
	}
	return `,"command":` + jsonList(command)
}
