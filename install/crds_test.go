package install

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// kinds lists the rendered objects as "Kind/name".
func kinds(objects []map[string]any) []string {
	var out []string
	for _, o := range objects {
		md, _ := o["metadata"].(map[string]any)
		out = append(out, o["kind"].(string)+"/"+md["name"].(string))
	}
	return out
}

func TestCRDsComeFirstAndServeTheVersions(t *testing.T) {
	objects := render(t, DefaultValues())
	want := map[string][]string{
		"virtualservices.networking.istio.io":     {"v1alpha3", "v1beta1", "v1"},
		"destinationrules.networking.istio.io":    {"v1alpha3", "v1beta1", "v1"},
		"gateways.networking.istio.io":            {"v1alpha3", "v1beta1", "v1"},
		"peerauthentications.security.istio.io":   {"v1beta1", "v1"},
		"authorizationpolicies.security.istio.io": {"v1beta1", "v1"},
		"httproutes.gateway.networking.k8s.io":    {"v1"},
	}
	for i, o := range objects[:len(want)] {
		if o["kind"] != "CustomResourceDefinition" {
			t.Fatalf("object %d is a %v; the CRDs come first", i, o["kind"])
		}
		md := o["metadata"].(map[string]any)
		name := md["name"].(string)
		if md["labels"].(map[string]any)[CRDOwnedLabel] != "lightmesh" {
			t.Errorf("%s does not carry the label that says it is ours", name)
		}
		if strings.HasSuffix(name, ".k8s.io") {
			if a, _ := md["annotations"].(map[string]any); a["api-approved.kubernetes.io"] == nil {
				t.Errorf("%s lacks the api-approved.kubernetes.io annotation the API server requires", name)
			}
		}
		spec := o["spec"].(map[string]any)
		var served []string
		storage := 0
		for _, raw := range spec["versions"].([]any) {
			v := raw.(map[string]any)
			served = append(served, v["name"].(string))
			if v["storage"] == true {
				storage++
				if v["name"] != "v1" {
					t.Errorf("%s stores %s, want v1", name, v["name"])
				}
			}
			if _, ok := v["subresources"].(map[string]any)["status"]; !ok {
				t.Errorf("%s %s has no status subresource", name, v["name"])
			}
			root := v["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
			specSchema := root["properties"].(map[string]any)["spec"].(map[string]any)
			checkStructural(t, name+" "+v["name"].(string)+" spec", specSchema)
		}
		if storage != 1 {
			t.Errorf("%s has %d storage versions", name, storage)
		}
		if !slices.Equal(served, want[name]) {
			t.Errorf("%s serves %v, want %v", name, served, want[name])
		}
		delete(want, name)
	}
	if len(want) > 0 {
		t.Errorf("CRDs not rendered: %v", want)
	}
}

// checkStructural requires a type on every node and that every object either keeps unknown
// fields (so the controller sees unsupported ones) or is a map (additionalProperties).
func checkStructural(t *testing.T, path string, s map[string]any) {
	t.Helper()
	typ, _ := s["type"].(string)
	if typ == "" {
		t.Errorf("%s has no type", path)
	}
	switch typ {
	case "object":
		props, hasProps := s["properties"].(map[string]any)
		additional, isMap := s["additionalProperties"].(map[string]any)
		if hasProps && isMap {
			t.Errorf("%s has both properties and additionalProperties", path)
		}
		if isMap {
			checkStructural(t, path+".*", additional)
			return
		}
		if s["x-kubernetes-preserve-unknown-fields"] != true {
			t.Errorf("%s would prune the fields it does not list", path)
		}
		for k, p := range props {
			checkStructural(t, path+"."+k, p.(map[string]any))
		}
	case "array":
		checkStructural(t, path+"[]", s["items"].(map[string]any))
	}
}

// The seed's Istio resources (demo/istio) validate against the schemas (the e2e test
// applies them to a real API server too).
func TestSeedResourcesMatchTheSchemas(t *testing.T) {
	files, err := filepath.Glob("../demo/istio/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed files: %v", err)
	}
	byKind := map[string]CRD{}
	for _, c := range CRDs() {
		byKind[c.Kind] = c
	}
	seen := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var o map[string]any
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			kind, _ := o["kind"].(string)
			c, ok := byKind[kind]
			if !ok {
				t.Fatalf("%s: kind %q has no CRD", file, kind)
			}
			apiVersion := o["apiVersion"].(string)
			if !slices.Contains(c.Versions, strings.TrimPrefix(apiVersion, c.Group+"/")) {
				t.Errorf("%s: %s is not served", file, apiVersion)
			}
			generic, err := toMap(map[string]any(c.Spec))
			if err != nil {
				t.Fatal(err)
			}
			validate(t, file+" "+kind+" spec", o["spec"], generic)
			seen++
		}
	}
	if seen < 6 {
		t.Errorf("validated %d resources, want the seed's 6", seen)
	}
	// And a value of the wrong type is caught: the validator can fail.
	rt := &recorder{}
	validate(rt, "bad", map[string]any{"host": 3}, func() map[string]any { m, _ := toMap(map[string]any(destinationRuleSpec())); return m }())
	if !rt.failed {
		t.Error("a number for host passed")
	}
}

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }

// validate checks value against an OpenAPI schema's types, as the API server would.
func validate(t testing.TB, path string, value any, s map[string]any) {
	t.Helper()
	switch s["type"] {
	case "object":
		m, ok := value.(map[string]any)
		if !ok {
			t.Errorf("%s: %T, want an object", path, value)
			return
		}
		props, _ := s["properties"].(map[string]any)
		additional, _ := s["additionalProperties"].(map[string]any)
		for k, v := range m {
			if p, ok := props[k].(map[string]any); ok {
				validate(t, path+"."+k, v, p)
			} else if additional != nil {
				validate(t, path+"."+k, v, additional)
			}
		}
	case "array":
		items, ok := value.([]any)
		if !ok {
			t.Errorf("%s: %T, want an array", path, value)
			return
		}
		for i, v := range items {
			validate(t, fmt.Sprintf("%s[%d]", path, i), v, s["items"].(map[string]any))
		}
	case "string":
		if _, ok := value.(string); !ok {
			t.Errorf("%s: %T, want a string", path, value)
		}
	case "integer":
		if f, ok := value.(float64); !ok || f != float64(int64(f)) {
			t.Errorf("%s: %v, want an integer", path, value)
		}
	case "number":
		if _, ok := value.(float64); !ok {
			t.Errorf("%s: %T, want a number", path, value)
		}
	case "boolean":
		if _, ok := value.(bool); !ok {
			t.Errorf("%s: %T, want a boolean", path, value)
		}
	}
}

func TestSkipCRDs(t *testing.T) {
	objects, err := RenderWith(DefaultValues(), fixtureIdentity(t), RenderOptions{SkipCRDs: map[string]bool{"httproutes.gateway.networking.k8s.io": true}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kinds(objects), " ")
	if strings.Contains(got, "httproutes") || !strings.Contains(got, "CustomResourceDefinition/virtualservices.networking.istio.io") {
		t.Errorf("rendered %s", got)
	}
}

func TestHighAvailability(t *testing.T) {
	v := DefaultValues()
	HAValues(&v)
	objects := render(t, v)
	var d appsv1.Deployment
	find(t, objects, "Deployment", ControllerName, &d)
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas %d", *d.Spec.Replicas)
	}
	aa := d.Spec.Template.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(aa) != 1 || aa[0].PodAffinityTerm.TopologyKey != corev1.LabelHostname {
		t.Errorf("anti-affinity %+v", aa)
	}
	var pdb policyv1.PodDisruptionBudget
	find(t, objects, "PodDisruptionBudget", ControllerName, &pdb)
	if pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.Selector.MatchLabels[componentLabel] != controllerSelector {
		t.Errorf("pdb %+v", pdb.Spec)
	}
	if got := kinds(objects); got[len(got)-1] != "MutatingWebhookConfiguration/"+WebhookConfigurationName("lightmesh") {
		t.Errorf("the webhook configuration is not last: %v", got)
	}
	var plain appsv1.Deployment
	find(t, render(t, DefaultValues()), "Deployment", ControllerName, &plain)
	if plain.Spec.Template.Spec.Affinity != nil {
		t.Error("anti-affinity without --ha")
	}
	for _, k := range kinds(render(t, DefaultValues())) {
		if strings.HasPrefix(k, "PodDisruptionBudget/") {
			t.Error("a PodDisruptionBudget without --ha")
		}
	}
}

func TestAddons(t *testing.T) {
	v := DefaultValues()
	v.Namespace = "mesh-x"
	for _, k := range kinds(render(t, v)) {
		for _, addon := range []string{PrometheusName, GrafanaName, JaegerName} {
			if strings.Contains(k, addon) {
				t.Errorf("%s rendered while the add-ons are off", k)
			}
		}
	}
	v.Prometheus.Enabled, v.Grafana.Enabled, v.Jaeger.Enabled = true, true, true
	v.Prometheus.Image = "mirror.example/prometheus:v9"
	objects := render(t, v)

	var cm corev1.ConfigMap
	find(t, objects, "ConfigMap", PrometheusName+"-config", &cm)
	var prom struct {
		Global        map[string]string `json:"global"`
		ScrapeConfigs []struct {
			JobName     string `json:"job_name"`
			MetricsPath string `json:"metrics_path"`
			SD          []struct {
				Role string `json:"role"`
			} `json:"kubernetes_sd_configs"`
			Relabel []struct {
				SourceLabels []string `json:"source_labels"`
				Action       string   `json:"action"`
				Regex        string   `json:"regex"`
				TargetLabel  string   `json:"target_label"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["prometheus.yml"]), &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	sc := prom.ScrapeConfigs[0]
	if prom.Global["scrape_interval"] != "15s" || sc.MetricsPath != "/metrics" || sc.SD[0].Role != "pod" {
		t.Errorf("prometheus.yml %+v", prom)
	}
	keep := map[string]string{}
	for _, r := range sc.Relabel {
		if r.Action == "keep" {
			keep[r.SourceLabels[0]] = r.Regex
		}
	}
	if keep["__meta_kubernetes_pod_annotation_lightmesh_io_proxy_version"] != ".+" ||
		keep["__meta_kubernetes_pod_label_lightmesh_io_control_plane_ns"] != "mesh-x" ||
		keep["__meta_kubernetes_pod_container_port_name"] != "mesh-admin" {
		t.Errorf("keep rules %v", keep)
	}
	var role rbacv1.ClusterRole
	find(t, objects, "ClusterRole", "lightmesh-mesh-x-prometheus", &role)
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, []string{"get", "list", "watch"}) || !slices.Equal(role.Rules[0].Resources, []string{"pods"}) {
		t.Errorf("prometheus may %+v", role.Rules)
	}
	var d appsv1.Deployment
	find(t, objects, "Deployment", PrometheusName, &d)
	if d.Spec.Template.Spec.Containers[0].Image != "mirror.example/prometheus:v9" {
		t.Errorf("image %s", d.Spec.Template.Spec.Containers[0].Image)
	}

	var dash corev1.ConfigMap
	find(t, objects, "ConfigMap", GrafanaName+"-dashboards", &dash)
	for _, metric := range []string{"request_total", "response_total", "response_latency_ms_bucket", "tcp_open_connections"} {
		if !strings.Contains(dash.Data["lightmesh-proxies.json"], metric) {
			t.Errorf("the dashboard does not query %s", metric)
		}
	}

	var agent corev1.Service
	find(t, objects, "Service", "jaeger-agent", &agent)
	if p := agent.Spec.Ports[0]; p.Port != 6831 || p.Protocol != corev1.ProtocolUDP {
		t.Errorf("jaeger agent port %+v", p)
	}
	for _, name := range []string{PrometheusName, GrafanaName, JaegerName} {
		var d appsv1.Deployment
		find(t, objects, "Deployment", name, &d)
		sc := d.Spec.Template.Spec.Containers[0].SecurityContext
		if !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || *sc.RunAsUser == 0 {
			t.Errorf("%s does not run restricted: %+v", name, sc)
		}
	}
}
