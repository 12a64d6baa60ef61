//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpRouteSplit is the seed's routing (istio-gateway.yaml's /api/users prefix) and split
// (traffic-splitting.yaml's 90/10) as a Gateway API HTTPRoute attached to the user-service
// Service (GAMMA), plus a canary header rule. The same paths as an Istio VirtualService on
// user-service-v2 show where the two prefix semantics differ.
const httpRouteSplit = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: user-service-split
spec:
  parentRefs:
  - {group: "", kind: Service, name: user-service, port: 80}
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api/users}
      headers: [{name: x-canary, value: "true"}]
    backendRefs:
    - {name: user-service-v2, port: 80}
  - matches:
    - path: {type: PathPrefix, value: /api/users}
    backendRefs:
    - {name: user-service, port: 80, weight: 90}
    - {name: user-service-v2, port: 80, weight: 10}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: user-service-v2-prefix
spec:
  hosts: [user-service-v2]
  http:
  - match: [{uri: {prefix: /api/users}}]
    route:
    - destination: {host: user-service-v2, port: {number: 80}}
`

// The same routing and split expressed as an HTTPRoute give the same results as the seed's
// VirtualService: in a namespace of its own with the demo's user-service (v1 and v2) and
// order-service, 2,000 requests from a meshed client land within 3 points of 90/10; the
// header rule sends the canary to v2; and Gateway API's PathPrefix matches whole segments
// (/api/usersX gets the client proxy's 404, no route) where Istio's plain string prefix
// (the VirtualService on user-service-v2) sends /api/usersX to the app.
func TestHTTPRouteSplit(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	controlPlane := installControlPlane(t, c, mesh, "e2e-httproute-cp")

	ns := c.namespace(t, "httproute-e2e")
	c.must(t, "annotate", "namespace", ns, "lightmesh.io/inject=enabled")
	var manifests []string
	for _, f := range []string{"user-service.yaml", "order-service.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "demo", "manifests", f))
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, strings.ReplaceAll(string(data), "microservices", ns))
	}
	injected := runMeshInput(t, mesh, strings.Join(manifests, "\n---\n"), "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, "-")
	c.apply(t, ns, injected)
	for _, d := range []string{"user-service-v1", "user-service-v2", "order-service"} {
		if _, err := c.run(t, 4*time.Minute, "-n", ns, "rollout", "status", "deployment/"+d, "--timeout=210s"); err != nil {
			t.Fatalf("deployment %s did not become ready: %v\n%s", d, err, c.describe(t, ns))
		}
	}
	c.apply(t, ns, httpRouteSplit)
	waitInjected(t, c, ns)

	users := "http://user-service." + ns + ".svc.cluster.local"
	usersV2 := "http://user-service-v2." + ns + ".svc.cluster.local"
	// The client proxies learn the HTTPRoute from the controller: poll until the canary
	// header routes to v2 (the Service itself selects only v1).
	eventually(t, 2*time.Minute, "the HTTPRoute to be in force", func() (bool, string) {
		line := requestsFromIn(t, c, ns, "order-service", false, "GET "+users+"/api/users/1 x-canary:true")[0]
		return strings.Contains(line, "-> 200 version=v2"), line
	})
	status := c.must(t, "-n", ns, "get", "httproutes.gateway.networking.k8s.io", "user-service-split", "-o",
		`jsonpath={.status.parents[?(@.controllerName=="lightmesh.io/mesh-controller")].conditions[?(@.type=="Accepted")].status}`)
	if strings.TrimSpace(status) != "True" {
		t.Errorf("the HTTPRoute's Accepted condition is %q, want True", status)
	}

	t.Run("Header", func(t *testing.T) {
		var reqs []string
		for range 10 {
			reqs = append(reqs, "GET "+users+"/api/users/1 x-canary:true")
		}
		for _, line := range requestsFromIn(t, c, ns, "order-service", true, reqs...) {
			if !strings.Contains(line, "-> 200 version=v2 proxy-error=-") {
				t.Errorf("canary request: %s, want 200 from v2", line)
			}
		}
	})

	t.Run("PathPrefix", func(t *testing.T) {
		lines := requestsFromIn(t, c, ns, "order-service", false,
			"GET "+users+"/api/users/1", "GET "+users+"/api/users", "GET "+users+"/api/usersX",
			"GET "+usersV2+"/api/usersX", "GET "+usersV2+"/other")
		check := func(line, want string) {
			t.Helper()
			if !strings.Contains(line, want) {
				t.Errorf("%s: want %q", line, want)
			}
		}
		check(lines[0], "-> 200 ")
		check(lines[1], "-> 200 ") // /api/users itself is a whole-segment match: the app lists the users
		// HTTPRoute PathPrefix /api/users does not match /api/usersX: no route, the proxy's 404.
		check(lines[2], "-> 404 version=- proxy-error=no-route")
		// Istio's prefix /api/users does: the request reaches user-service-v2 itself.
		check(lines[3], "-> 404 version=v2 proxy-error=-")
		check(lines[4], "-> 404 version=- proxy-error=no-route")
	})

	t.Run("Split", func(t *testing.T) {
		out := runTrafficPodIn(t, c, ns, "order-service", []string{"--order-url=", "--user-url=" + users,
			"--rps=200", "--duration=11s", "--report-every=1h", "--timeout=5s"})
		counts, err := lastTrafficLine(out)
		if err != nil {
			t.Fatal(err)
		}
		u := counts["user-service"]
		total := u["v1"] + u["v2"]
		if total < 2000 || u["fail"] > 0 {
			t.Fatalf("the split run did not get 2,000 answers without failures: %v", u)
		}
		share := 100 * float64(u["v2"]) / float64(total)
		t.Logf("HTTPRoute split: v1 %d, v2 %d (%.1f %% v2)", u["v1"], u["v2"], share)
		if share < 7 || share > 13 {
			t.Errorf("user-service-v2 got %.1f %% of %d requests, want 10 ± 3", share, total)
		}
	})
}

// waitInjected waits until the API server reaches the control plane's injector for pods of
// ns (until then, failurePolicy Ignore admits pods without a proxy): a server-side dry run
// of a pod comes back with the proxy.
func waitInjected(t *testing.T, c *cluster, ns string) {
	t.Helper()
	eventually(t, 2*time.Minute, "the API server to reach the injector", func() (bool, string) {
		out, err := c.run(t, 30*time.Second, "-n", ns, "run", "probe", "--image="+testImage("e2e-echo"), "--restart=Never",
			"--dry-run=server", "-o", "jsonpath={.spec.initContainers[*].name}")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, "mesh-proxy"), fmt.Sprintf("init containers %q", out)
	})
}
