package injector

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
	"github.com/lightmesh/lightmesh/internal/version"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

const plainPod = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: app
  labels: {app: web}
spec:
  containers:
  - name: web
    image: registry.example/web:1
`

// withAnnotations is plainPod annotated (YAML flow mapping body, like `a: b, c: d`).
func withAnnotations(annotations string) string {
	return strings.Replace(plainPod, "  labels: {app: web}", "  labels: {app: web}\n  annotations: {"+annotations+"}", 1)
}

func TestReview(t *testing.T) {
	cases := []struct {
		name        string
		ns          string
		pod         string
		config      error
		wantPatch   bool
		wantWarning string
	}{
		{name: "namespace enabled", ns: "app", pod: plainPod, wantPatch: true},
		{name: "pod enabled", ns: "plain", pod: withAnnotations(`lightmesh.io/inject: enabled`), wantPatch: true},
		{name: "pod ingress", ns: "plain", pod: withAnnotations(`lightmesh.io/inject: ingress`), wantPatch: true},
		{name: "namespace not annotated", ns: "plain", pod: plainPod},
		{name: "namespace disabled", ns: "off", pod: plainPod},
		{name: "pod disabled wins", ns: "app", pod: withAnnotations(`lightmesh.io/inject: disabled`)},
		{name: "kube-system", ns: "kube-system", pod: withAnnotations(`lightmesh.io/inject: enabled`)},
		{name: "control plane", ns: controlPlane, pod: withAnnotations(`lightmesh.io/inject: enabled`)},
		{name: "already injected", ns: "app", pod: withAnnotations(`lightmesh.io/proxy-version: v0`)},
		{name: "hostNetwork", ns: "app", pod: plainPod + "  hostNetwork: true\n", wantWarning: "hostNetwork"},
		{name: "bad inject value", ns: "app", pod: withAnnotations(`lightmesh.io/inject: yes-please`), wantWarning: "yes-please"},
		{name: "bad config annotation", ns: "app", pod: withAnnotations(`config.lightmesh.io/proxy-cpu-limit: lots`), wantWarning: "proxy-cpu-limit"},
		{name: "bad scheduler poll annotation", ns: "app", pod: withAnnotations(`config.lightmesh.io/proxy-scheduler-poll: "off"`), wantWarning: `annotation config.lightmesh.io/proxy-scheduler-poll: "off" is neither true nor false; use one of true, false`},
		{name: "bad max in-flight annotation", ns: "app", pod: withAnnotations(`config.lightmesh.io/proxy-max-in-flight-requests: "1e6"`), wantWarning: `annotation config.lightmesh.io/proxy-max-in-flight-requests: "1e6" is not a whole number`},
		{name: "max in-flight out of range", ns: "app", pod: withAnnotations(`config.lightmesh.io/proxy-max-in-flight-requests: "1000001"`), wantWarning: `annotation config.lightmesh.io/proxy-max-in-flight-requests: "1000001" is out of range`},
		{name: "unknown namespace", ns: "gone", pod: plainPod, wantWarning: "read namespace gone"},
		{name: "no configuration", ns: "app", pod: plainPod, config: errors.New("ConfigMap missing"), wantWarning: "ConfigMap missing"},
		{name: "clashing container", ns: "app", pod: strings.Replace(plainPod, "name: web\n    image", "name: mesh-init\n    image", 1), wantWarning: "mesh-init"},
	}
	namespaces := fakeNamespaces{
		"app":   {inject.AnnotationInject: inject.InjectEnabled},
		"plain": nil,
		"off":   {inject.AnnotationInject: inject.InjectDisabled},
	}
	cfg := installedConfig(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, fakeConfig{cfg: cfg, err: tc.config}, namespaces)
			body := reviewBody(t, tc.ns, tc.pod)
			resp := respond(t, h, body)
			if resp.UID != "0b2c6a8e-uid" {
				t.Errorf("response uid %q, want the request's", resp.UID)
			}
			if got := len(resp.Patch) > 0; got != tc.wantPatch {
				t.Errorf("patched %v, want %v: %s", got, tc.wantPatch, resp.Patch)
			}
			warnings := strings.Join(resp.Warnings, "\n")
			if tc.wantWarning == "" && warnings != "" {
				t.Errorf("unexpected warning %q", warnings)
			}
			if tc.wantWarning != "" && !strings.Contains(warnings, tc.wantWarning) {
				t.Errorf("warnings %q, want one mentioning %q", warnings, tc.wantWarning)
			}
			if !tc.wantPatch {
				return
			}
			pod := applyPatch(t, body, resp)
			initContainers := pod["spec"].(map[string]any)["initContainers"].([]any)
			if len(initContainers) != 2 || initContainers[0].(map[string]any)["name"] != inject.InitContainerName || initContainers[1].(map[string]any)["name"] != inject.ProxyContainerName {
				t.Errorf("init containers %v, want mesh-init and mesh-proxy", initContainers)
			}
			raw, _ := json.Marshal(pod)
			if ingress := bytes.Contains(raw, []byte(inject.EnvIngressMode)); ingress != strings.Contains(tc.pod, "ingress") {
				t.Errorf("ingress mode set %v in %s", ingress, raw)
			}
		})
	}
}

// The pod's proxy-scheduler-poll and proxy-max-in-flight-requests annotations become the
// proxy's variables; a pod without them gets neither.
func TestReviewAppliesProxyTuningAnnotations(t *testing.T) {
	h := newTestHandler(t, fakeConfig{cfg: installedConfig(t)}, fakeNamespaces{"app": {inject.AnnotationInject: inject.InjectEnabled}})
	proxyEnv := func(pod string) map[string]any {
		t.Helper()
		body := reviewBody(t, "app", pod)
		resp := respond(t, h, body)
		if len(resp.Patch) == 0 {
			t.Fatalf("not injected; warnings %v", resp.Warnings)
		}
		env := map[string]any{}
		for _, c := range applyPatch(t, body, resp)["spec"].(map[string]any)["initContainers"].([]any) {
			if c.(map[string]any)["name"] != inject.ProxyContainerName {
				continue
			}
			for _, e := range c.(map[string]any)["env"].([]any) {
				env[e.(map[string]any)["name"].(string)] = e.(map[string]any)["value"]
			}
		}
		return env
	}
	env := proxyEnv(withAnnotations(`config.lightmesh.io/proxy-scheduler-poll: "false", config.lightmesh.io/proxy-max-in-flight-requests: "300"`))
	if env[inject.EnvSchedulerPoll] != "false" || env[inject.EnvMaxInFlightRequests] != "300" {
		t.Errorf("%s = %v, %s = %v; want false and 300", inject.EnvSchedulerPoll, env[inject.EnvSchedulerPoll], inject.EnvMaxInFlightRequests, env[inject.EnvMaxInFlightRequests])
	}
	env = proxyEnv(plainPod)
	for _, name := range []string{inject.EnvSchedulerPoll, inject.EnvMaxInFlightRequests} {
		if v, ok := env[name]; ok {
			t.Errorf("%s = %v without its annotation; want it absent", name, v)
		}
	}
}

// A review that is not an update of a pod creation is allowed untouched.
func TestReviewIgnoresOtherOperations(t *testing.T) {
	h := newTestHandler(t, fakeConfig{cfg: installedConfig(t)}, fakeNamespaces{"app": {inject.AnnotationInject: inject.InjectEnabled}})
	body := bytes.Replace(reviewBody(t, "app", plainPod), []byte(`"operation":"CREATE"`), []byte(`"operation":"UPDATE"`), 1)
	if resp := respond(t, h, body); len(resp.Patch) > 0 || len(resp.Warnings) > 0 {
		t.Errorf("an UPDATE got patch %s, warnings %v", resp.Patch, resp.Warnings)
	}
}

// The webhook's pod spec is byte for byte the one `mesh inject` writes with the same
// installation; only lightmesh.io/injected-by differs.
func TestInjectsWhatTheCLIInjects(t *testing.T) {
	pod := `
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  annotations:
    config.lightmesh.io/opaque-ports: "3306"
    config.lightmesh.io/skip-outbound-ports: "5432"
spec:
  serviceAccountName: web
  initContainers:
  - name: migrate
    image: registry.example/migrate:1
  containers:
  - name: web
    image: registry.example/web:1
    ports: [{containerPort: 8080}]
  volumes:
  - name: data
    emptyDir: {}
`
	cfg := installedConfig(t)
	// `mesh inject` reads the same ConfigMap into the same Config (cli/cmd.injectOptions).
	result, err := inject.Run([]inject.Source{{Name: "pod.yaml", Data: []byte(pod)}}, inject.Options{Mode: inject.ModeInject, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	cliJSON, err := yaml.YAMLToJSON(result.Output)
	if err != nil {
		t.Fatal(err)
	}
	var cli map[string]any
	if err := json.Unmarshal(cliJSON, &cli); err != nil {
		t.Fatal(err)
	}

	h := newTestHandler(t, fakeConfig{cfg: cfg}, fakeNamespaces{"app": {inject.AnnotationInject: inject.InjectEnabled}})
	body := reviewBody(t, "app", pod)
	resp := respond(t, h, body)
	webhook := applyPatch(t, body, resp)

	cliSpec, _ := json.Marshal(cli["spec"])
	webhookSpec, _ := json.Marshal(webhook["spec"])
	if !bytes.Equal(cliSpec, webhookSpec) {
		t.Errorf("the pod specs differ:\n%s", golden.Diff("mesh inject", "webhook", string(cliSpec), string(webhookSpec)))
	}
	cliMeta := cli["metadata"].(map[string]any)
	webhookMeta := webhook["metadata"].(map[string]any)
	if got, want := webhookMeta["annotations"].(map[string]any)[inject.AnnotationInjectedBy], "mesh-webhook "+version.Version; got != want {
		t.Errorf("injected-by %q, want %q", got, want)
	}
	delete(cliMeta["annotations"].(map[string]any), inject.AnnotationInjectedBy)
	delete(webhookMeta["annotations"].(map[string]any), inject.AnnotationInjectedBy)
	a, _ := json.Marshal(cliMeta)
	b, _ := json.Marshal(webhookMeta)
	if !bytes.Equal(a, b) {
		t.Errorf("the metadata differ beyond injected-by:\n%s", golden.Diff("mesh inject", "webhook", string(a), string(b)))
	}

	// The patch itself, for review: only initContainers, volumes, annotations and labels.
	var indented bytes.Buffer
	if err := json.Indent(&indented, resp.Patch, "", "  "); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "patch.json", bytes.ReplaceAll(indented.Bytes(), []byte(version.Version), []byte("<version>")))
}

func TestMalformedReviews(t *testing.T) {
	valid := string(reviewBody(t, "app", plainPod))
	cases := map[string]string{
		"bad JSON":         `{"apiVersion": "admission.k8s.io/v1",`,
		"not an object":    `[1, 2]`,
		"no request":       `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}`,
		"wrong kind":       strings.Replace(valid, `"kind":"AdmissionReview"`, `"kind":"ConfigMap"`, 1),
		"v1beta1":          strings.Replace(valid, `"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`, 1),
		"no uid":           strings.Replace(valid, `"uid":"0b2c6a8e-uid",`, ``, 1),
		"empty":            ``,
		"over 1 MiB":       `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "x": "` + strings.Repeat("a", MaxBodyBytes) + `"}`,
		"request is array": `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": []}`,
	}
	h := newTestHandler(t, fakeConfig{cfg: installedConfig(t)}, fakeNamespaces{"app": {inject.AnnotationInject: inject.InjectEnabled}})
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if name != "bad JSON" && name != "empty" && name != "over 1 MiB" && name != "not an object" && name != "request is array" && !json.Valid([]byte(body)) {
				t.Fatalf("the test case is not JSON: %s", body)
			}
			code, out := post(h, []byte(body))
			if code != http.StatusBadRequest {
				t.Errorf("HTTP %d, want 400: %s", code, out)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/inject", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: HTTP %d, want 405", rec.Code)
	}
	// The valid body the malformed ones came from is answered.
	respond(t, h, []byte(valid))
}
