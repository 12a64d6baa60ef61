package demo

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const namespace = "microservices"

// seedSHA256 are the Istio files' digests: they are the seed's YAML examples byte for byte
// (each fenced block, its "# name.yaml" comment included) and must stay so. If the seed
// changes, copy the blocks again and update these.
var seedSHA256 = map[string]string{
	"istio-gateway.yaml":     "4f5baca4958873a87872167d3dec053c14f7df0f0a291e29bb09ee8d3888dcd6",
	"traffic-splitting.yaml": "6ba6144c9fb0d23f94eb8063d3464135a7783b359f797f1ec8fb6f240ab1ee4f",
	"circuit-breaker.yaml":   "c520a22be79e420888a8c993f2c75250122b051b7fdf5cb2a0a02b3f36cd8c5f",
	"mtls-policy.yaml":       "571b1efaa35d21d9bd94f36f0c122da77bccc839716a9b661ae15700224ef5a0",
}

// docs reads every YAML document of the files matching pattern, as JSON.
func docs(t *testing.T, pattern string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			j, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if string(j) != "null" {
				out = append(out, j)
			}
		}
	}
	return out
}

// demoObjects are the manifests' objects by kind.
type demoObjects struct {
	namespaces      []corev1.Namespace
	serviceAccounts map[string]bool
	services        map[string]corev1.Service
	deployments     map[string]appsv1.Deployment
}

func loadManifests(t *testing.T) demoObjects {
	t.Helper()
	objs := demoObjects{serviceAccounts: map[string]bool{}, services: map[string]corev1.Service{}, deployments: map[string]appsv1.Deployment{}}
	for _, doc := range docs(t, "manifests/*.yaml") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "Namespace" && meta.Metadata.Namespace != namespace {
			t.Errorf("%s/%s is in namespace %q, want %s", meta.Kind, meta.Metadata.Name, meta.Metadata.Namespace, namespace)
		}
		strict := func(v any) {
			if err := yaml.UnmarshalStrict(doc, v); err != nil {
				t.Fatalf("%s/%s: %v", meta.Kind, meta.Metadata.Name, err)
			}
		}
		switch meta.Kind {
		case "Namespace":
			var ns corev1.Namespace
			strict(&ns)
			objs.namespaces = append(objs.namespaces, ns)
		case "ServiceAccount":
			objs.serviceAccounts[meta.Metadata.Name] = true
		case "Service":
			var s corev1.Service
			strict(&s)
			objs.services[s.Name] = s
		case "Deployment":
			var d appsv1.Deployment
			strict(&d)
			objs.deployments[d.Name] = d
		default:
			t.Errorf("unexpected kind %s in the manifests", meta.Kind)
		}
	}
	return objs
}

// selected returns the Deployments whose pods the Service selects, sorted.
func (o demoObjects) selected(svc corev1.Service) []string {
	var names []string
	for name, d := range o.deployments {
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func TestManifests(t *testing.T) {
	objs := loadManifests(t)
	if len(objs.namespaces) != 1 || objs.namespaces[0].Name != namespace || objs.namespaces[0].Annotations["lightmesh.io/inject"] != "enabled" {
		t.Errorf("want one Namespace %s annotated lightmesh.io/inject: enabled; got %+v", namespace, objs.namespaces)
	}
	for _, sa := range []string{"user-service", "order-service", "traffic"} {
		if !objs.serviceAccounts[sa] {
			t.Errorf("no ServiceAccount %s", sa)
		}
	}
	wantDeploy := map[string]struct {
		image, sa string
		labels    map[string]string
	}{
		"user-service-v1": {"demo-user-service", "user-service", map[string]string{"app": "user-service", "version": "v1"}},
		"user-service-v2": {"demo-user-service", "user-service", map[string]string{"app": "user-service", "version": "v2"}},
		"order-service":   {"demo-order-service", "order-service", map[string]string{"app": "order-service"}},
		"traffic":         {"demo-traffic", "traffic", map[string]string{"app": "traffic"}},
	}
	if len(objs.deployments) != len(wantDeploy) {
		t.Errorf("Deployments %v, want %d", keys(objs.deployments), len(wantDeploy))
	}
	for name, want := range wantDeploy {
		d, ok := objs.deployments[name]
		if !ok {
			t.Errorf("no Deployment %s", name)
			continue
		}
		spec := d.Spec.Template.Spec
		for k, v := range want.labels {
			if d.Spec.Template.Labels[k] != v {
				t.Errorf("%s: pod label %s=%q, want %q", name, k, d.Spec.Template.Labels[k], v)
			}
		}
		if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: the selector does not select its own pods", name)
		}
		if spec.ServiceAccountName != want.sa {
			t.Errorf("%s: service account %q, want %s", name, spec.ServiceAccountName, want.sa)
		}
		if spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil {
			t.Errorf("%s: runAsNonRoot at pod level would stop the injected mesh-init (root) from running; set it per container", name)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if img := "ghcr.io/lightmesh/" + want.image + ":0.1.0-dev"; c.Image != img || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: image %s (%s), want %s (IfNotPresent)", name, c.Image, c.ImagePullPolicy, img)
		}
		if sc := c.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: the container does not run as a non-root user", name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v lack requests or a memory limit", name, c.Resources)
		}
		for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || !hasPort(c, p.HTTPGet.Port) {
				t.Errorf("%s: no %s probe on GET /healthz of a container port", name, kind)
			}
		}
	}

	for name, want := range map[string][]string{
		"user-service":    {"user-service-v1"},
		"user-service-v2": {"user-service-v2"},
		"order-service":   {"order-service"},
	} {
		svc, ok := objs.services[name]
		if !ok {
			t.Errorf("no Service %s", name)
			continue
		}
		if got := objs.selected(svc); !slices.Equal(got, want) {
			t.Errorf("Service %s selects the pods of %v, want %v", name, got, want)
		}
		for _, p := range svc.Spec.Ports {
			for _, d := range objs.selected(svc) {
				if !hasPort(objs.deployments[d].Spec.Template.Spec.Containers[0], p.TargetPort) {
					t.Errorf("Service %s port %s: target %s is not a port of %s", name, p.Name, p.TargetPort.String(), d)
				}
			}
		}
		if port(svc, 8080) == nil {
			t.Errorf("Service %s has no port 8080", name)
		}
	}
	for _, name := range []string{"user-service", "user-service-v2"} {
		if p := port(objs.services[name], 9090); p == nil || p.Name != "grpc" {
			t.Errorf("Service %s has no port 9090 named grpc", name)
		}
	}
}

func hasPort(c corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

func port(svc corev1.Service, n int32) *corev1.ServicePort {
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == n {
			return &svc.Spec.Ports[i]
		}
	}
	return nil
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestIstioFilesMatchManifests checks that the seed's Istio files are unchanged and that
// every host, port, label and principal they name exists in the manifests.
func TestIstioFilesMatchManifests(t *testing.T) {
	for name, want := range seedSHA256 {
		b, err := os.ReadFile(filepath.Join("istio", name))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want {
			t.Errorf("istio/%s is not the seed's example any more: copy it from the seed verbatim", name)
		}
	}
	if files, _ := filepath.Glob("istio/*.yaml"); len(files) != len(seedSHA256) {
		t.Errorf("istio/ holds %v, want exactly the seed's %d files", files, len(seedSHA256))
	}

	objs := loadManifests(t)
	// host resolves a host as Istio does from namespace microservices: a short name is a
	// Service there.
	host := func(h string) (corev1.Service, bool) {
		h = strings.TrimSuffix(h, "."+namespace+".svc.cluster.local")
		svc, ok := objs.services[h]
		return svc, ok
	}
	var destinations, selectors, principals int
	for _, doc := range docs(t, "istio/*.yaml") {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		kind := obj["kind"].(string)
		if ns, ok := get(obj, "metadata", "namespace").(string); ok && ns != namespace {
			t.Errorf("%s is for namespace %s, want %s", kind, ns, namespace)
		}
		switch kind {
		case "VirtualService":
			for _, rule := range list(get(obj, "spec", "http")) {
				for _, route := range list(get(rule, "route")) {
					h, _ := get(route, "destination", "host").(string)
					svc, ok := host(h)
					if !ok {
						t.Errorf("VirtualService routes to host %q: no such Service in the manifests", h)
						continue
					}
					if n, ok := get(route, "destination", "port", "number").(float64); ok && port(svc, int32(n)) == nil {
						t.Errorf("VirtualService routes to %s port %v: the Service has no such port", h, n)
					}
					destinations++
				}
			}
		case "DestinationRule":
			h, _ := get(obj, "spec", "host").(string)
			if _, ok := host(h); !ok {
				t.Errorf("DestinationRule for host %q: no such Service", h)
			}
			for _, s := range list(get(obj, "spec", "subsets")) {
				sel := labels.Set{}
				for k, v := range get(s, "labels").(map[string]any) {
					sel[k] = v.(string)
				}
				if !matchesSome(objs, sel) {
					t.Errorf("DestinationRule subset %v selects no pods", sel)
				}
			}
		case "AuthorizationPolicy":
			sel := labels.Set{}
			for k, v := range get(obj, "spec", "selector", "matchLabels").(map[string]any) {
				sel[k] = v.(string)
			}
			if !matchesSome(objs, sel) {
				t.Errorf("AuthorizationPolicy selector %v selects no pods", sel)
			}
			selectors++
			for _, rule := range list(get(obj, "spec", "rules")) {
				for _, from := range list(get(rule, "from")) {
					for _, p := range list(get(from, "source", "principals")) {
						sa, ok := strings.CutPrefix(p.(string), "cluster.local/ns/"+namespace+"/sa/")
						if !ok || !objs.serviceAccounts[sa] {
							t.Errorf("principal %q is no ServiceAccount of the manifests", p)
						}
						principals++
					}
				}
			}
		}
	}
	if destinations != 4 || selectors != 1 || principals != 1 {
		t.Errorf("checked %d route destinations, %d selectors, %d principals; want 4, 1, 1", destinations, selectors, principals)
	}
}

func matchesSome(objs demoObjects, sel labels.Set) bool {
	for _, d := range objs.deployments {
		if labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

// get walks nested maps.
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}
