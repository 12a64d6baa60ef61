//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The control plane's namespace of this test; its name is the installation's, so the
// cluster-scoped objects carry it.
const uninstallControlPlane = "h-inst-cp"

// The life of an installation on the real cluster: `mesh install` (CRDs included) applies
// in one pass, `mesh check` passes, install refuses to run over it and `mesh upgrade` keeps
// its trust anchor and issuer, the seed's Istio resources are accepted by the CRDs (unknown
// fields kept for the controller to report), a meshed pod passes mesh check --proxy,
// uninstall refuses while it uses the installation,
// and `mesh uninstall | kubectl delete -f -` leaves nothing of this installation; the CRDs
// go too unless another installation or resources of their kinds remain, as uninstall says.
func TestInstallCheckUpgradeUninstall(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	kube := []string{"--kubeconfig", c.kubeconfig}
	if out, _ := c.run(t, 30*time.Second, "get", "namespace", uninstallControlPlane, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("namespace %s exists: a previous run left it; delete it (mesh uninstall --control-plane-namespace %s | kubectl delete -f -)", uninstallControlPlane, uninstallControlPlane)
	}

	// The --ha rendering with every add-on passes the API server's validation and the
	// namespace's restricted Pod Security Standard (server-side dry run, no warnings).
	dry := c.namespace(t, "h-inst-dry")
	c.must(t, "label", "namespace", dry, "pod-security.kubernetes.io/enforce=restricted")
	full := runMesh(t, mesh, "install", "--ignore-cluster", "--ha", "--set", "namespace="+dry,
		"--set", "prometheus.enabled=true", "--set", "grafana.enabled=true", "--set", "jaeger.enabled=true")
	var keep []string
	for _, doc := range strings.Split(installedWithoutCRDs(full), "\n---\n") {
		if !strings.Contains(doc, "\nkind: Namespace\n") {
			keep = append(keep, doc)
		}
	}
	dryRun := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "apply", "--dry-run=server", "-f", "-")
	dryRun.Stdin = strings.NewReader(strings.Join(keep, "\n---\n"))
	var dryOut bytes.Buffer
	dryRun.Stdout, dryRun.Stderr = &dryOut, &dryOut
	if err := runBounded(dryRun, 2*time.Minute); err != nil || strings.Contains(strings.ToLower(dryOut.String()), "warning") {
		t.Errorf("server dry run of mesh install --ha with the add-ons: %v\n%s", err, dryOut.String())
	}
	for _, want := range []string{"deployment.apps/lightmesh-prometheus created", "deployment.apps/lightmesh-grafana created", "deployment.apps/lightmesh-jaeger created", "poddisruptionbudget.policy/lightmesh-controller created"} {
		if !strings.Contains(dryOut.String(), want) {
			t.Errorf("the dry run did not create %s:\n%s", want, dryOut.String())
		}
	}

	// Install, checking the cluster (no --ignore-cluster).
	installed := runMesh(t, mesh, append(kube, "install", "--set", "namespace="+uninstallControlPlane)...)
	t.Cleanup(func() { // whatever the test did not get to remove
		manifests := installedWithoutCRDs(installed)
		_, _ = c.runWithInput(t, 2*time.Minute, manifests, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	})
	if _, err := c.runWithInput(t, 2*time.Minute, installed, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	if _, err := c.run(t, 3*time.Minute, "-n", uninstallControlPlane, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=150s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, uninstallControlPlane))
	}
	out, err := runMeshStatus(t, mesh, append(kube, "check", "--control-plane-namespace", uninstallControlPlane, "--wait", "90s")...)
	if err != nil || strings.Contains(out, "×") {
		t.Fatalf("mesh check: %v\n%s", err, out)
	}
	for _, want := range []string{"√ the policy CRDs are installed", "√ the HTTPRoute CRD serves gateway.networking.k8s.io/v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("mesh check does not say %q:\n%s", want, out)
		}
	}

	// Install again refuses and says to upgrade.
	if out, err := meshCombined(t, mesh, append(kube, "install", "--set", "namespace="+uninstallControlPlane)...); err == nil || !strings.Contains(out, "mesh upgrade") {
		t.Errorf("mesh install over the installation: %v\n%s", err, out)
	}

	// Upgrade: the stored values plus the new one, the same issuer.
	issuer := func() string {
		return c.must(t, "-n", uninstallControlPlane, "get", "secret", "lightmesh-identity-issuer", "-o", "jsonpath={.data.tls\\.crt}")
	}
	before := issuer()
	upgraded := runMesh(t, mesh, append(kube, "upgrade", "--control-plane-namespace", uninstallControlPlane, "--set", "proxy.logLevel=debug")...)
	if _, err := c.runWithInput(t, 2*time.Minute, upgraded, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh upgrade's output: %v", err)
	}
	if issuer() != before {
		t.Error("the upgrade replaced the issuer")
	}
	config := c.must(t, "-n", uninstallControlPlane, "get", "configmap", "lightmesh-config", "-o", "jsonpath={.data.config\\.yaml}")
	if !strings.Contains(config, "logLevel: debug") {
		t.Errorf("the upgraded values were not stored:\n%s", config)
	}

	// The seed's Istio resources, verbatim but for their namespace, are accepted; a field
	// lightmesh does not support is kept, not pruned.
	policyNS := c.namespace(t, "h-inst-policy")
	files, err := filepath.Glob("../../demo/istio/*.yaml")
	if err != nil || len(files) != 4 {
		t.Fatalf("the seed's Istio files: %v %v", files, err)
	}
	namespaceLine := regexp.MustCompile(`(?m)^  namespace: .*$`)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		c.apply(t, policyNS, namespaceLine.ReplaceAllString(string(data), "  namespace: "+policyNS))
	}
	got := c.must(t, "-n", policyNS, "get", "virtualservices,destinationrules,gateways,peerauthentications,authorizationpolicies", "-o", "name")
	for _, want := range []string{"virtualservice.networking.istio.io/microservices-vs", "virtualservice.networking.istio.io/user-service",
		"destinationrule.networking.istio.io/user-service", "gateway.networking.istio.io/microservices-gateway",
		"peerauthentication.security.istio.io/default", "authorizationpolicy.security.istio.io/user-service-policy"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s was not stored; the namespace has:\n%s", want, got)
		}
	}
	c.apply(t, policyNS, `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: mirrored}
spec:
  hosts: [user-service]
  http:
  - route: [{destination: {host: user-service}}]
    mirror: {host: user-service-v2}
`)
	if mirror := c.must(t, "-n", policyNS, "get", "virtualservice", "mirrored", "-o", "jsonpath={.spec.http[0].mirror.host}"); mirror != "user-service-v2" {
		t.Errorf("the unsupported field mirror was pruned (read back %q)", mirror)
	}
	if weight := c.must(t, "-n", policyNS, "get", "virtualservice", "user-service", "-o", "jsonpath={.spec.http[0].route[0].weight}"); weight != "90" {
		t.Errorf("the split's weight reads back as %q", weight)
	}
	if _, err := c.runWithInput(t, time.Minute, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wrong}
spec: {host: 42}
`, "-n", policyNS, "apply", "-f", "-"); err == nil {
		t.Error("a DestinationRule whose host is a number was accepted: the schema does not validate")
	}

	// A meshed pod of this installation (injected by mesh inject from the installation's
	// values) passes mesh check --proxy, and stops uninstall.
	appNS := c.namespace(t, "h-inst-app")
	pod := `apiVersion: v1
kind: Pod
metadata: {name: meshed}
spec:
  containers: [{name: app, image: ` + testImage("e2e-echo") + `, imagePullPolicy: Never, args: [serve]}]
`
	c.apply(t, appNS, runMeshInput(t, mesh, pod, append(kube, "inject", "--control-plane-namespace", uninstallControlPlane, "-")...))
	if _, err := c.run(t, 3*time.Minute, "-n", appNS, "wait", "--for=condition=Ready", "pod/meshed", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed pod did not become ready: %v\n%s", err, c.describe(t, appNS))
	}
	out, err = runMeshStatus(t, mesh, append(kube, "check", "--control-plane-namespace", uninstallControlPlane, "--proxy", "-n", appNS)...)
	// Through the API server's pod proxy, the proxy's admin server answers its certificate,
	// or refuses while proxies do not serve it there: a warning that says so, never a
	// failure.
	certLine := regexp.MustCompile(`(?m)^(√|‼|×) the meshed pods' certificates chain to the current trust anchors$`).FindStringSubmatch(out)
	switch {
	case err != nil || certLine == nil:
		t.Errorf("mesh check --proxy: %v\n%s", err, out)
	case certLine[1] == "‼" && !strings.Contains(out, "cannot read the certificates of the proxies of "+appNS+"/meshed ("):
		t.Errorf("mesh check --proxy warns about the certificates for another reason:\n%s", out)
	case certLine[1] == "×":
		t.Errorf("the meshed pod's certificate does not chain to the installation's anchors:\n%s", out)
	}
	if out, err := meshCombined(t, mesh, append(kube, "uninstall", "--control-plane-namespace", uninstallControlPlane)...); err == nil ||
		!strings.Contains(out, appNS+"/meshed") || !strings.Contains(out, "--force") {
		t.Errorf("mesh uninstall with a meshed pod: %v\n%s", err, out)
	}
	c.must(t, "-n", appNS, "delete", "pod", "meshed", "--wait=true", "--timeout=90s")
	c.must(t, "delete", "namespace", policyNS, "--wait=true", "--timeout=90s")

	// Uninstall.
	cmd := exec.Command(mesh, append(kube, "uninstall", "--control-plane-namespace", uninstallControlPlane)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runBounded(cmd, 2*time.Minute); err != nil {
		t.Fatalf("mesh uninstall: %v\n%s", err, stderr.String())
	}
	t.Logf("mesh uninstall:\n%s", stderr.String())
	crdsKept := strings.Contains(stderr.String(), "CustomResourceDefinitions are kept")
	if strings.Contains(stdout.String(), "kind: CustomResourceDefinition") == crdsKept {
		t.Errorf("uninstall says CRDs kept %v, but its output deletes CRDs %v", crdsKept, !crdsKept)
	}
	if _, err := c.runWithInput(t, 3*time.Minute, stdout.String(), "delete", "--wait=true", "--timeout=150s", "-f", "-"); err != nil {
		t.Fatalf("kubectl delete of mesh uninstall's output: %v", err)
	}

	// Nothing of this installation is left.
	eventually(t, 2*time.Minute, "namespace "+uninstallControlPlane+" to go", func() (bool, string) {
		out, err := c.run(t, 30*time.Second, "get", "namespace", uninstallControlPlane, "--ignore-not-found", "-o", "name")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	selector := "lightmesh.io/control-plane-ns=" + uninstallControlPlane
	if left := c.must(t, "get", "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations", "-l", selector, "-o", "name"); strings.TrimSpace(left) != "" {
		t.Errorf("left behind:\n%s", left)
	}
	if left := c.must(t, "get", "mutatingwebhookconfiguration", "lightmesh-proxy-injector-"+uninstallControlPlane, "--ignore-not-found", "-o", "name"); strings.TrimSpace(left) != "" {
		t.Errorf("left behind: %s", left)
	}
	crds := c.must(t, "get", "crd", "-l", "app.kubernetes.io/part-of=lightmesh", "-o", "name")
	if !crdsKept && strings.TrimSpace(crds) != "" {
		t.Errorf("uninstall deleted the CRDs but these remain:\n%s", crds)
	}
	if crdsKept && !strings.Contains(crds, "virtualservices.networking.istio.io") {
		t.Errorf("uninstall said the CRDs are kept, but they are gone:\n%s", crds)
	}
}

// meshCombined runs the CLI and returns its stdout and stderr together.
func meshCombined(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runBounded(cmd, 2*time.Minute)
	return out.String(), err
}

// runBounded runs cmd, killing it (by its process) when timeout passes.
func runBounded(cmd *exec.Cmd, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bounded := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	bounded.Stdin, bounded.Stdout, bounded.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
	return bounded.Run()
}

// installedWithoutCRDs drops the CRDs from a YAML stream of mesh install: the cleanup of a
// failed run must not delete CRDs other installations use.
func installedWithoutCRDs(stream string) string {
	var keep []string
	for _, doc := range strings.Split(strings.TrimPrefix(stream, "---\n"), "\n---\n") {
		if !strings.HasPrefix(doc, "apiVersion: apiextensions.k8s.io/v1\n") {
			keep = append(keep, doc)
		}
	}
	return "---\n" + strings.Join(keep, "\n---\n")
}
