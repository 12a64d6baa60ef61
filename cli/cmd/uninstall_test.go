package cmd

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

var yamlUnmarshal = yaml.Unmarshal

func runUninstallOn(t *testing.T, c *meshCluster, args func(o *uninstallOptions)) (string, string, error) {
	t.Helper()
	opts := newUninstallOptions()
	opts.cluster = func() (*meshCluster, error) { return c, nil }
	if args != nil {
		args(opts)
	}
	if err := opts.validate(); err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	err := runUninstall(context.Background(), nil, &out, &errOut, opts)
	return out.String(), errOut.String(), err
}

func meshedPod(ns, name, controlPlane string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{inject.LabelControlPlaneNS: controlPlane}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// The only installation: everything it created, CRDs included, webhook first, namespace
// last; names only.
func TestUninstallGolden(t *testing.T) {
	c := fakeCluster(t, installedObjects(t, "mesh-z", "grafana.enabled=true")...)
	out, errOut, err := runUninstallOn(t, c, func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-z" })
	if err != nil {
		t.Fatal(err)
	}
	if errOut != "" {
		t.Errorf("stderr: %s", errOut)
	}
	golden.Assert(t, "uninstall-only.yaml", []byte(out))
	names := renderedNames(t, out)
	// The CRDs go last, after the namespace.
	if names[0] != "MutatingWebhookConfiguration/lightmesh-proxy-injector-mesh-z" || names[len(names)-7] != "Namespace/mesh-z" ||
		!strings.HasPrefix(names[len(names)-1], "CustomResourceDefinition/") {
		t.Errorf("order: %v", names)
	}
	if !slices.Contains(names, "CustomResourceDefinition/virtualservices.networking.istio.io") || !slices.Contains(names, "Deployment/lightmesh-grafana") {
		t.Errorf("missing objects: %v", names)
	}
}

// Another installation remains: the shared CRDs stay; its own cluster-scoped objects are
// never printed; foreign CRDs never are.
func TestUninstallKeepsWhatOthersUse(t *testing.T) {
	objects := installedObjects(t, "mesh-a")
	for _, o := range installedObjects(t, "mesh-b") {
		if !isCRD(o) {
			objects = append(objects, o)
		}
	}
	c := fakeCluster(t, objects...)
	out, errOut, err := runUninstallOn(t, c, func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-a" })
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range renderedNames(t, out) {
		if strings.HasPrefix(name, "CustomResourceDefinition/") || strings.Contains(name, "mesh-b") {
			t.Errorf("would delete %s", name)
		}
	}
	if !strings.Contains(errOut, "kept: lightmesh is also installed in mesh-b") {
		t.Errorf("stderr %q", errOut)
	}

	// Alone with a foreign CRD: ours go, the foreign one stays.
	alone := []runtime.Object{crdObject("httproutes.gateway.networking.k8s.io", nil, nil)}
	for _, o := range installedObjects(t, "mesh-a") {
		if u, ok := o.(interface{ GetName() string }); !ok || u.GetName() != "httproutes.gateway.networking.k8s.io" {
			alone = append(alone, o)
		}
	}
	out, _, err = runUninstallOn(t, fakeCluster(t, alone...), func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-a" })
	if err != nil {
		t.Fatal(err)
	}
	names := renderedNames(t, out)
	if slices.Contains(names, "CustomResourceDefinition/httproutes.gateway.networking.k8s.io") || !slices.Contains(names, "CustomResourceDefinition/peerauthentications.security.istio.io") {
		t.Errorf("CRDs to delete: %v", names)
	}
}

func isCRD(o runtime.Object) bool {
	return o.GetObjectKind().GroupVersionKind().Kind == "CustomResourceDefinition"
}

func TestUninstallRefusesWhileMeshed(t *testing.T) {
	objects := append(installedObjects(t, "mesh-a"), meshedPod("shop", "web-1", "mesh-a"), meshedPod("shop", "other", "mesh-b"))
	c := fakeCluster(t, objects...)
	out, _, err := runUninstallOn(t, c, func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-a" })
	if err == nil || !strings.Contains(err.Error(), "1 meshed pods") || !strings.Contains(err.Error(), "shop/web-1") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("error %v", err)
	}
	if out != "" {
		t.Error("printed objects while refusing")
	}
	out, errOut, err := runUninstallOn(t, c, func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-a"; o.force = true })
	if err != nil || out == "" || !strings.Contains(errOut, "--force") {
		t.Fatalf("--force: %v, stderr %q", err, errOut)
	}
}

func TestUninstallNotInstalled(t *testing.T) {
	_, _, err := runUninstallOn(t, fakeCluster(t), nil)
	if err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("error %v", err)
	}
}

// Resources of the CRDs' kinds keep the CRDs, unless --force-crds.
func TestUninstallKeepsCRDsInUse(t *testing.T) {
	vs := &unstructured.Unstructured{}
	vs.SetAPIVersion("networking.istio.io/v1")
	vs.SetKind("VirtualService")
	vs.SetNamespace("shop")
	vs.SetName("reviews")
	c := fakeCluster(t, append(installedObjects(t, "mesh-a"), vs)...)
	out, errOut, err := runUninstallOn(t, c, func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-a" })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "CustomResourceDefinition") || !strings.Contains(errOut, "1 resources of their kinds exist (VirtualService shop/reviews)") {
		t.Errorf("stderr %q; output has CRDs: %v", errOut, strings.Contains(out, "CustomResourceDefinition"))
	}
	out, _, err = runUninstallOn(t, c, func(o *uninstallOptions) { o.controlPlaneNamespace = "mesh-a"; o.forceCRDs = true })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "name: virtualservices.networking.istio.io") {
		t.Error("--force-crds did not delete the CRDs")
	}
}
