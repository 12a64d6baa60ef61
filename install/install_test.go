package install

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/lightmesh/lightmesh/internal/version"
)

func fixtureIdentity(t *testing.T) Identity {
	t.Helper()
	id, err := LoadIdentity("testdata/identity/ca.crt", "testdata/identity/issuer.crt", "testdata/identity/issuer.key", nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func render(t *testing.T, v Values) []map[string]any {
	t.Helper()
	objects, err := Render(v, fixtureIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

// find decodes the rendered object of kind and name into out.
func find(t *testing.T, objects []map[string]any, kind, name string, out any) {
	t.Helper()
	for _, o := range objects {
		md, _ := o["metadata"].(map[string]any)
		if o["kind"] == kind && md["name"] == name {
			raw, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(out); err != nil {
				t.Fatalf("%s %s does not decode strictly: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
}

func TestRenderIsDeterministic(t *testing.T) {
	a, err := WriteYAML(render(t, DefaultValues()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := WriteYAML(render(t, DefaultValues()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two renders of the same input differ")
	}
	// (The CRDs' schemas and printer columns name status and creationTimestamp.)
	for _, unwanted := range []string{"creationTimestamp: null", "\nstatus:", "spec: {}"} {
		if bytes.Contains(a, []byte(unwanted)) {
			t.Errorf("the output carries %q", unwanted)
		}
	}
}

// The controller may do what the brief lists and nothing else: no wildcards, no secrets,
// no writes beyond tokenreviews and events.
func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	var role rbacv1.ClusterRole
	find(t, render(t, DefaultValues()), "ClusterRole", "lightmesh-lightmesh-controller", &role)
	allowed := map[string][]string{}
	for _, rule := range role.Rules {
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				key := group + "/" + resource
				allowed[key] = append(allowed[key], rule.Verbs...)
			}
		}
	}
	read := []string{"get", "list", "watch"}
	want := map[string][]string{
		"authentication.k8s.io/tokenreviews":      {"create"},
		"/pods":                                   read,
		"/services":                               read,
		"/namespaces":                             read,
		"discovery.k8s.io/endpointslices":         read,
		"/events":                                 {"create", "patch"},
		"events.k8s.io/events":                    {"create", "patch"},
		"networking.istio.io/gateways":            read,
		"networking.istio.io/virtualservices":     read,
		"networking.istio.io/destinationrules":    read,
		"security.istio.io/peerauthentications":   read,
		"security.istio.io/authorizationpolicies": read,
		"gateway.networking.k8s.io/httproutes":    read,
		"gateway.networking.k8s.io/gateways":      read,
		// The policy watcher writes unsupported-field conditions, nothing else.
		"networking.istio.io/gateways/status":            {"update", "patch"},
		"networking.istio.io/virtualservices/status":     {"update", "patch"},
		"networking.istio.io/destinationrules/status":    {"update", "patch"},
		"security.istio.io/peerauthentications/status":   {"update", "patch"},
		"security.istio.io/authorizationpolicies/status": {"update", "patch"},
		"gateway.networking.k8s.io/httproutes/status":    {"update", "patch"},
	}
	if len(allowed) != len(want) {
		t.Errorf("the role covers %d resources, want %d: %v", len(allowed), len(want), allowed)
	}
	for key, verbs := range want {
		if !slices.Equal(allowed[key], verbs) {
			t.Errorf("%s: verbs %v, want %v", key, allowed[key], verbs)
		}
	}
}

func TestControllerDeployment(t *testing.T) {
	v := DefaultValues()
	v.ImageRegistry = "localhost:5000/lm"
	var d appsv1.Deployment
	find(t, render(t, v), "Deployment", ControllerName, &d)
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "localhost:5000/lm/mesh-controller:"+version.Version {
		t.Errorf("image %s", c.Image)
	}
	wantArgs := []string{"identity", "--trust-anchors-file", "/var/run/lightmesh/identity/trust-anchors/ca.crt",
		"--issuer-dir", "/var/run/lightmesh/identity/issuer", "--addr", ":8080", "--admin-addr", ":9990", "--trust-domain", "cluster.local",
		"--serving-name", "identity.lightmesh.svc.cluster.local", "--log-level", "info"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %v, want %v", c.Args, wantArgs)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/ready" || c.LivenessProbe.HTTPGet.Path != "/live" || c.ReadinessProbe.HTTPGet.Port.String() != "admin" {
		t.Error("probes are not /ready and /live on the admin port")
	}
	if c.Ports[1].ContainerPort != 9990 || c.Ports[1].Name != "admin" {
		t.Errorf("ports %v", c.Ports)
	}
	sc := c.SecurityContext
	if !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("security context %+v is not restricted", sc)
	}
	if d.Spec.Template.Spec.ServiceAccountName != ControllerName {
		t.Error("the controller does not run as its ServiceAccount")
	}
	if got := c.Resources.Limits.Memory().String(); got != "2Gi" {
		t.Errorf("memory limit %s, want the seed's pilot 2048Mi", got)
	}
}

func TestSet(t *testing.T) {
	v := DefaultValues()
	for _, a := range []string{"proxy.logLevel=debug", "controller.replicas=2", "proxy.skipInboundPorts=8080", "imageRegistry=r.example/x", "proxy.resources.limits.cpu=1"} {
		if err := v.Set(a); err != nil {
			t.Fatalf("Set(%q): %v", a, err)
		}
	}
	if v.Proxy.LogLevel != "debug" || v.Controller.Replicas != 2 || v.Proxy.SkipInboundPorts != "8080" || v.ImageRegistry != "r.example/x" || v.Proxy.Resources.Limits.CPU != "1" {
		t.Errorf("values after Set: %+v", v)
	}
	for _, bad := range []string{"nope=1", "proxy.nope=1", "proxy=1", "controller.replicas=two", "=x", "proxy.logLevel.deeper=x"} {
		before := v
		if err := v.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
		if v != before {
			t.Errorf("a failed Set(%q) changed the values", bad)
		}
	}
}

func TestMergeValues(t *testing.T) {
	v := DefaultValues()
	if err := MergeValues(&v, []byte("proxy:\n  logLevel: warn\n")); err != nil {
		t.Fatal(err)
	}
	if v.Proxy.LogLevel != "warn" || v.Proxy.LogFormat != "plain" || v.Namespace != "lightmesh" {
		t.Errorf("merge lost the other values: %+v", v.Proxy)
	}
	for _, bad := range []string{"proxy:\n  loglevel: warn\n", "controller: {replicas: [1]}\n", "- a\n"} {
		if err := MergeValues(&v, []byte(bad)); err == nil {
			t.Errorf("MergeValues(%q) accepted", bad)
		}
	}
}

// The config.yaml install writes reads back into the same values.
func TestConfigRoundTrip(t *testing.T) {
	v := DefaultValues()
	v.Proxy.OpaquePorts = "3306"
	var cm corev1.ConfigMap
	find(t, render(t, v), "ConfigMap", ConfigMapName, &cm)
	back, err := ParseValues([]byte(cm.Data[ConfigKey]))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := back.InjectConfig()
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := os.ReadFile("testdata/identity/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TrustAnchorsPEM != string(anchors) || cfg.OpaquePorts.String() != "3306" || !strings.HasSuffix(cfg.ProxyImage, ":"+version.Version) {
		t.Errorf("config read back: %+v", cfg)
	}
}

func TestLoadIdentityNeedsAllThree(t *testing.T) {
	if _, err := LoadIdentity("testdata/identity/ca.crt", "", "", nil); err == nil {
		t.Fatal("anchors without an issuer were accepted")
	}
}

// A default installation stores no key a controller of the first release does not know;
// changed ones are stored and read back.
func TestStoredValuesStayReadableByEarlierControllers(t *testing.T) {
	v := DefaultValues()
	data, err := v.StoredYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"highAvailability", "prometheus", "grafana", "jaeger"} {
		if strings.Contains(string(data), key+":") {
			t.Errorf("the stored values of a default installation carry %s", key)
		}
	}
	back, err := ParseValues(data)
	if err != nil || back != v {
		t.Errorf("read back %+v, %v", back, err)
	}
	HAValues(&v)
	v.Grafana.Enabled = true
	if data, err = v.StoredYAML(); err != nil {
		t.Fatal(err)
	}
	if back, err = ParseValues(data); err != nil || back != v {
		t.Errorf("read back %+v, %v", back, err)
	}
}

// The controller reads a newer installation's values, leaving out (and naming) what it
// does not know; a known key of the wrong type is still an error.
func TestParseStoredValuesIsLenient(t *testing.T) {
	v, unknown, err := ParseStoredValues([]byte("proxy:\n  logLevel: debug\n  newKnob: 3\nfutureAddon:\n  enabled: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Proxy.LogLevel != "debug" || v.Namespace != "lightmesh" {
		t.Errorf("values %+v", v.Proxy)
	}
	if !slices.Equal(unknown, []string{"futureAddon", "proxy.newKnob"}) {
		t.Errorf("unknown %v", unknown)
	}
	if _, _, err := ParseStoredValues([]byte("controller: {replicas: many}\n")); err == nil {
		t.Error("a known key of the wrong type was accepted")
	}
}
