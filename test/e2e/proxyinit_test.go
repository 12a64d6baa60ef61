//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// meshedPodManifest is a pod whose first init container is mesh-proxy-init and whose one
// container stands where the proxy will (e2e-echo origdst-serve on 127.0.0.1:4140 and :4143).
const meshedPodManifest = `
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
spec:
  initContainers:
    - name: mesh-proxy-init
      image: %[2]s
      imagePullPolicy: Never
      args: [--iptables-mode, %[4]s]
      # Not root: the image's iptables binaries carry CAP_NET_ADMIN and CAP_NET_RAW as file
      # capabilities, which the pod allows (and no_new_privs would disable).
      securityContext:
        runAsUser: 65534
        runAsNonRoot: true
        allowPrivilegeEscalation: true
        capabilities:
          add: [NET_ADMIN, NET_RAW]
          drop: [ALL]
  containers:
    - name: listener
      image: %[3]s
      imagePullPolicy: Never
      args: [origdst-serve]
      securityContext:
        runAsUser: 2102
    # The application: any user but the proxy's.
    - name: app
      image: %[3]s
      imagePullPolicy: Never
      args: [serve, --addr, ":8081"]
      securityContext:
        runAsUser: 1000
`

const serverPodManifest = `
apiVersion: v1
kind: Pod
metadata:
  name: server
spec:
  containers:
    - name: server
      image: %[1]s
      imagePullPolicy: Never
      args: [serve]
      readinessProbe:
        httpGet: {path: /, port: 8080}
        periodSeconds: 1
`

// On the real cluster, with each iptables backend: a pod initialised by mesh-proxy-init sends
// its outbound connections to 127.0.0.1:4140 and receives inbound ones on 4143, and the
// listener reads each connection's original destination (the other pod's IP and port, or its
// own IP and the port the client dialled), while the proxy's own user reaches the server
// directly.
func TestProxyInitRedirectsPodTraffic(t *testing.T) {
	c := localCluster(t)
	ns := c.namespace(t, "e2e-proxyinit")
	c.apply(t, ns, fmt.Sprintf(serverPodManifest, testImage("e2e-echo")))
	for _, mode := range []string{"nft", "legacy"} {
		c.apply(t, ns, fmt.Sprintf(meshedPodManifest, "meshed-"+mode, testImage("mesh-proxy-init"), testImage("e2e-echo"), mode))
	}
	for _, pod := range []string{"server", "meshed-nft", "meshed-legacy"} {
		if _, err := c.run(t, 3*time.Minute, "-n", ns, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=150s"); err != nil {
			t.Fatalf("pod %s not ready: %v\n%s", pod, err, c.describe(t, ns))
		}
	}
	podIP := func(pod string) string {
		return strings.TrimSpace(c.must(t, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"))
	}
	serverIP := podIP("server")

	for _, mode := range []string{"nft", "legacy"} {
		t.Run(mode, func(t *testing.T) {
			pod := "meshed-" + mode
			initLogs := c.must(t, "-n", ns, "logs", pod, "-c", "mesh-proxy-init")
			if !strings.Contains(initLogs, "MESH_INIT_OUTPUT") {
				t.Errorf("mesh-proxy-init's log does not show the rules it wrote:\n%s", initLogs)
			}

			// Outbound: the app dials the server pod; the connection lands on 4140.
			out, err := c.run(t, time.Minute, "-n", ns, "exec", pod, "-c", "app", "--",
				"e2e-echo", "get", "http://"+serverIP+":8080/", "--timeout", "30s")
			want := "answer: outbound original-destination " + serverIP + ":8080"
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("outbound from %s to %s:8080: %v\n%s\nwant %q", pod, serverIP, err, out, want)
			}

			// The proxy's own user (2102) is not redirected: it reaches the server itself.
			out, err = c.run(t, time.Minute, "-n", ns, "exec", pod, "-c", "listener", "--",
				"e2e-echo", "get", "http://"+serverIP+":8080/", "--timeout", "30s")
			if err != nil || !strings.Contains(out, "answer: server") {
				t.Errorf("the proxy user's connection to %s:8080 should reach the server unredirected: %v\n%s", serverIP, err, out)
			}

			// Inbound: another pod dials this pod on any port; the connection lands on 4143.
			meshedIP := podIP(pod)
			out, err = c.run(t, time.Minute, "-n", ns, "exec", "server", "--",
				"e2e-echo", "get", "http://"+meshedIP+":7777/", "--timeout", "30s")
			want = "answer: inbound original-destination " + meshedIP + ":7777"
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("inbound to %s:7777: %v\n%s\nwant %q", meshedIP, err, out, want)
			}
		})
	}
}
