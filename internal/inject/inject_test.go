package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

// testConfig is the default configuration with the fixture trust anchor, version pinned so
// that the golden files do not change with every release.
func testConfig(t *testing.T) Config {
	t.Helper()
	anchors, err := os.ReadFile("testdata/identity/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.TrustAnchorsPEM = string(anchors)
	cfg.Version = "9.9.9-test"
	cfg.InjectedBy = "mesh-cli 9.9.9-test"
	cfg.ProxyImage = "ghcr.io/lightmesh/mesh-proxy:9.9.9-test"
	cfg.ProxyInitImage = "ghcr.io/lightmesh/mesh-proxy-init:9.9.9-test"
	return cfg
}

func inputs(t *testing.T) []string {
	t.Helper()
	names, err := filepath.Glob("testdata/inputs/*")
	if err != nil || len(names) == 0 {
		t.Fatalf("no test inputs: %v", err)
	}
	return names
}

func readSource(t *testing.T, path string) Source {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Source{Name: filepath.Base(path), Data: data}
}

func run(t *testing.T, opts Options, sources ...Source) *Result {
	t.Helper()
	result, err := Run(sources, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return result
}

func report(t *testing.T, r *Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteReport(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Each input, injected: the output stream and the report.
func TestInjectGolden(t *testing.T) {
	for _, path := range inputs(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			r := run(t, Options{Mode: ModeInject, Config: testConfig(t)}, readSource(t, path))
			golden.Assert(t, "inject/"+name+".out", r.Output)
			golden.Assert(t, "inject/"+name+".report", report(t, r))
		})
	}
}

// Each input, annotated only, with two overrides the webhook is to apply.
func TestAnnotateOnlyGolden(t *testing.T) {
	for _, path := range inputs(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			r := run(t, Options{Mode: ModeAnnotateOnly, Config: testConfig(t), Overrides: map[string]string{
				KeyProxyLogLevel: "debug", KeySkipOutboundPorts: "5432",
			}}, readSource(t, path))
			golden.Assert(t, "annotate-only/"+name+".out", r.Output)
			golden.Assert(t, "annotate-only/"+name+".report", report(t, r))
		})
	}
}

// parseAll parses a stream into its objects, so streams compare by meaning.
func parseAll(t *testing.T, data []byte) []any {
	t.Helper()
	docs, err := ParseSource(Source{Name: "stream", Data: data}, DefaultLimits())
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, data)
	}
	var objects []any
	for _, d := range docs {
		if d.Object != nil {
			objects = append(objects, normalize(t, d.Object))
		}
	}
	return objects
}

// normalize makes numbers comparable however they were decoded.
func normalize(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// uninject(inject(x)) is x, object by object, for every input and both modes; and the
// uninjected objects come back in the same order.
func TestUninjectReversesInject(t *testing.T) {
	for _, mode := range []Mode{ModeInject, ModeAnnotateOnly} {
		for _, path := range inputs(t) {
			name := filepath.Base(path)
			t.Run(fmt.Sprintf("mode%d/%s", mode, name), func(t *testing.T) {
				src := readSource(t, path)
				injected := run(t, Options{Mode: mode, Config: testConfig(t)}, src)
				uninjected := run(t, Options{Mode: ModeUninject}, Source{Name: "injected", Data: injected.Output})
				want, got := parseAll(t, src.Data), parseAll(t, uninjected.Output)
				if !reflect.DeepEqual(want, got) {
					t.Errorf("uninject(inject(%s)) differs from the input:\n%s", name, golden.Diff("input", "round trip", toYAML(t, want), toYAML(t, got)))
				}
				if slices.ContainsFunc(injected.Entries, func(e Entry) bool { return e.Action == Injected || e.Action == Annotated }) &&
					!slices.ContainsFunc(uninjected.Entries, func(e Entry) bool { return e.Action == Uninjected }) {
					t.Errorf("inject changed something but uninject reports nothing uninjected:\n%s", report(t, uninjected))
				}
			})
		}
	}
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The uninject report of an injected stream.
func TestUninjectGolden(t *testing.T) {
	injected := run(t, Options{Mode: ModeInject, Config: testConfig(t)}, readSource(t, "testdata/inputs/multi.yaml"), readSource(t, "testdata/inputs/namespace.yaml"))
	r := run(t, Options{Mode: ModeUninject}, Source{Name: "injected.yaml", Data: injected.Output})
	golden.Assert(t, "uninject/multi-and-namespace.out", r.Output)
	golden.Assert(t, "uninject/multi-and-namespace.report", report(t, r))
}

// Injecting twice equals injecting once, byte for byte; the second run skips what the
// first injected.
func TestInjectTwiceEqualsOnce(t *testing.T) {
	for _, path := range inputs(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			opts := Options{Mode: ModeInject, Config: testConfig(t)}
			once := run(t, opts, readSource(t, path))
			twice := run(t, opts, Source{Name: name, Data: once.Output})
			if !bytes.Equal(once.Output, twice.Output) {
				t.Errorf("injecting twice differs from once:\n%s", golden.Diff("once", "twice", string(once.Output), string(twice.Output)))
			}
			for _, e := range twice.Entries {
				if e.Action == Injected {
					t.Errorf("second run injected %s again", e.Object())
				}
			}
		})
	}
	once := run(t, Options{Mode: ModeInject, Config: testConfig(t)}, readSource(t, "testdata/inputs/deployment.yaml"))
	twice := run(t, Options{Mode: ModeInject, Config: testConfig(t)}, Source{Name: "injected.yaml", Data: once.Output})
	golden.Assert(t, "inject/already-injected.report", report(t, twice))
}

// Documents inject does not change are written back as they were: comments, quoting and
// numbers kept.
func TestUntouchedDocumentsKeepTheirBytes(t *testing.T) {
	src := readSource(t, "testdata/inputs/multi.yaml")
	r := run(t, Options{Mode: ModeInject, Config: testConfig(t)}, src)
	docs, err := SplitDocuments(src, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		kind := ""
		if strings.Contains(string(d.Raw), "kind: ConfigMap") || strings.Contains(string(d.Raw), "kind: VirtualService") || strings.Contains(string(d.Raw), "example.com/v1") {
			kind = "untouched"
		}
		if kind != "" && !bytes.Contains(r.Output, d.Raw) {
			t.Errorf("document %d (line %d) is not in the output as it was:\n%s", d.Index, d.Line, d.Raw)
		}
	}
	if !bytes.Contains(r.Output, []byte("# comments in untouched documents survive")) {
		t.Error("the comment of an untouched document was lost")
	}
}

// The injected objects are what the API expects: checked through the typed API, not only
// the golden files.
func TestInjectedPodSpec(t *testing.T) {
	r := run(t, Options{Mode: ModeInject, Config: testConfig(t)}, readSource(t, "testdata/inputs/statefulset.yaml"))
	var sts appsv1.StatefulSet
	if err := yaml.UnmarshalStrict(r.Output, &sts); err != nil {
		t.Fatalf("the injected StatefulSet does not decode strictly: %v", err)
	}
	spec := sts.Spec.Template.Spec
	names := func(cs []corev1.Container) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	if got, want := names(spec.InitContainers), []string{"mesh-init", "mesh-proxy", "migrate"}; !slices.Equal(got, want) {
		t.Fatalf("init containers %v, want %v", got, want)
	}
	initC, proxy := spec.InitContainers[0], spec.InitContainers[1]
	if sc := initC.SecurityContext; sc == nil || *sc.RunAsUser != ProxyInitUID || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("mesh-init security context %+v", initC.SecurityContext)
	}
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("mesh-proxy is not a native sidecar (restartPolicy: Always)")
	}
	if *proxy.SecurityContext.RunAsUser != ProxyUID {
		t.Errorf("mesh-proxy runs as %d", *proxy.SecurityContext.RunAsUser)
	}
	for _, p := range []*corev1.Probe{proxy.StartupProbe, proxy.ReadinessProbe, proxy.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.IntValue() != AdminPort {
			t.Fatalf("probe %+v is not on the admin port", p)
		}
	}
	if proxy.ReadinessProbe.HTTPGet.Path != "/ready" || proxy.StartupProbe.HTTPGet.Path != "/ready" || proxy.LivenessProbe.HTTPGet.Path != "/live" {
		t.Error("probe paths are not /ready, /ready, /live")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range proxy.Env {
		env[e.Name] = e
	}
	for name, want := range map[string]string{
		EnvIdentityAddr:      "identity.lightmesh.svc.cluster.local:8080",
		EnvDestinationAddr:   "destination.lightmesh.svc.cluster.local:8086",
		EnvIdentityTokenFile: "/var/run/lightmesh/identity/token",
		EnvTrustDomain:       "cluster.local",
		EnvTrustAnchors:      testConfig(t).TrustAnchorsPEM,
	} {
		if env[name].Value != want {
			t.Errorf("%s = %q, want %q", name, env[name].Value, want)
		}
	}
	if env[EnvPodIP].ValueFrom == nil || env[EnvPodIP].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("POD_IP is not from the downward API: %+v", env[EnvPodIP])
	}
	mount := proxy.VolumeMounts[0]
	if mount.Name != TokenVolumeName || mount.MountPath != "/var/run/lightmesh/identity" || !mount.ReadOnly {
		t.Errorf("token mount %+v", mount)
	}
	vol := spec.Volumes[len(spec.Volumes)-1]
	sat := vol.Projected.Sources[0].ServiceAccountToken
	if vol.Name != TokenVolumeName || sat.Audience != "identity.lightmesh.io" || *sat.ExpirationSeconds != 86400 || sat.Path != "token" {
		t.Errorf("token volume %+v", vol)
	}
	if spec.Volumes[0].Name != "data" {
		t.Error("the application's volume is no longer first")
	}
	if sts.Spec.Template.Annotations[AnnotationProxyVersion] != "9.9.9-test" || sts.Spec.Template.Annotations["prometheus.io/scrape"] != "true" {
		t.Errorf("annotations %v", sts.Spec.Template.Annotations)
	}
}

// A bad value anywhere is an error that names the document and the key, and Run returns no
// output at all.
func TestInjectErrors(t *testing.T) {
	const good = "apiVersion: v1\nkind: Service\nmetadata: {name: fine}\n---\n"
	deployment := func(annotations string) string {
		return good + `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations:
` + annotations + `
    spec:
      containers: [{name: web, image: nginx}]
`
	}
	cases := []struct {
		name, input string
		overrides   map[string]string
	}{
		{"port out of range", deployment(`        config.lightmesh.io/skip-inbound-ports: "80,70000"`), nil},
		{"port zero", deployment(`        config.lightmesh.io/skip-outbound-ports: "0"`), nil},
		{"backward range", deployment(`        config.lightmesh.io/opaque-ports: "9100-9000"`), nil},
		{"port with junk", deployment(`        config.lightmesh.io/skip-inbound-ports: "80 -j ACCEPT"`), nil},
		{"bad cidr", deployment(`        config.lightmesh.io/skip-subnets: "10.0.0.0/33"`), nil},
		{"bad quantity", deployment(`        config.lightmesh.io/proxy-cpu-request: lots`), nil},
		{"negative quantity", deployment(`        config.lightmesh.io/proxy-memory-limit: "-1Gi"`), nil},
		{"request above limit", deployment(`        config.lightmesh.io/proxy-memory-request: 1Gi`), nil},
		{"bad log level", deployment(`        config.lightmesh.io/proxy-log-level: verbose`), nil},
		{"bad image", deployment(`        config.lightmesh.io/proxy-image: "not an image"`), nil},
		{"bad scheduler poll", deployment(`        config.lightmesh.io/proxy-scheduler-poll: "on"`), nil},
		{"max in-flight requests not a number", deployment(`        config.lightmesh.io/proxy-max-in-flight-requests: "1k"`), nil},
		{"max in-flight requests out of range", deployment(`        config.lightmesh.io/proxy-max-in-flight-requests: "0"`), nil},
		{"bad scheduler poll override", deployment(`        a: b`), map[string]string{KeyProxySchedulerPoll: "no"}},
		{"bad max in-flight requests override", deployment(`        a: b`), map[string]string{KeyProxyMaxInFlightRequests: "2000000"}},
		{"unknown key", deployment(`        config.lightmesh.io/proxy-cpu: 100m`), nil},
		{"bad inject value", deployment(`        lightmesh.io/inject: "yes"`), nil},
		{"non-string annotation", deployment(`        config.lightmesh.io/opaque-ports: 3306`), nil},
		{"bad override", deployment(`        a: b`), map[string]string{KeyProxyCPULimit: "a lot"}},
		{"override below annotation", deployment(`        config.lightmesh.io/proxy-cpu-request: 500m`), map[string]string{KeyProxyCPULimit: "200m"}},
		{"no template", good + "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n", nil},
		{"bad pod spec", good + "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: nginx\n", nil},
		{"not a mapping", good + "- apiVersion: v1\n  kind: Pod\n", nil},
		{"bad namespace annotation", good + "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n  annotations: {lightmesh.io/inject: on}\n", nil},
		{"bad namespace annotation value", good + "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n  annotations: {lightmesh.io/inject: always}\n", nil},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n    annotations: {config.lightmesh.io/proxy-log-level: loud}\n  spec: {containers: [{name: a, image: b}]}\n", nil},
		{"malformed yaml", good + "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n   labels: x\n", nil},
		{"tab indentation", good + "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: p\n", nil},
	}
	var all strings.Builder
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			result, err := Run([]Source{{Name: "in.yaml", Data: []byte(c.input)}}, Options{Mode: ModeInject, Config: testConfig(t), Overrides: c.overrides})
			if err == nil {
				t.Fatalf("no error; output:\n%s", result.Output)
			}
			if result != nil {
				t.Error("Run returned a result with its error")
			}
			if c.overrides != nil && strings.HasPrefix(err.Error(), "--") {
				// A bad flag is an error about the flag, before any document.
			} else if !strings.Contains(err.Error(), "in.yaml") {
				t.Errorf("the error does not name the file: %v", err)
			}
			fmt.Fprintf(&all, "%s:\n  %v\n", c.name, err)
		})
	}
	golden.Assert(t, "inject/errors.golden", []byte(all.String()))
}

// Each error names the document and the key precisely.
func TestInjectErrorNamesDocumentAndKey(t *testing.T) {
	input := "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n      annotations: {config.lightmesh.io/proxy-cpu-limit: huge}\n    spec: {containers: [{name: a, image: b}]}\n"
	_, err := Run([]Source{{Name: "apps/web.yaml", Data: []byte(input)}}, Options{Mode: ModeInject, Config: testConfig(t)})
	for _, want := range []string{"apps/web.yaml document 2", "deployment/web", "line 5", "config.lightmesh.io/proxy-cpu-limit", `"huge"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}

func TestMalformedYAMLReportsTheLineInTheFile(t *testing.T) {
	input := "# header\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n  key: [unclosed\n"
	_, err := Run([]Source{{Name: "cm.yaml", Data: []byte(input)}}, Options{Mode: ModeUninject})
	if err == nil || !strings.HasPrefix(err.Error(), "cm.yaml:") || !strings.Contains(err.Error(), "document 2") {
		t.Fatalf("error %v: want it to start with cm.yaml:<line in the file> and name document 2", err)
	}
	// The error is in the second document, after its line 6 in the file.
	var line int
	// The unclosed flow sequence opens on line 10 of the file; the YAML parser reports the
	// line of its context, 9 ("data:").
	if _, scanErr := fmt.Sscanf(err.Error(), "cm.yaml:%d:", &line); scanErr != nil || line < 9 || line > 10 {
		t.Errorf("error %v: want line 9 or 10 of the file, got %d", err, line)
	}
}

func TestInjectNeedsTrustAnchors(t *testing.T) {
	cfg := testConfig(t)
	cfg.TrustAnchorsPEM = ""
	_, err := Run([]Source{{Name: "x", Data: []byte("apiVersion: v1\nkind: Pod\n")}}, Options{Mode: ModeInject, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "trust anchors") {
		t.Fatalf("error %v, want one about trust anchors", err)
	}
	cfg.TrustAnchorsPEM = "not pem"
	if _, err := Run(nil, Options{Mode: ModeInject, Config: cfg}); err == nil {
		t.Fatal("bad trust anchors were accepted")
	}
}

func TestInjectObjectForTheWebhook(t *testing.T) {
	var pod map[string]any
	if err := yaml.Unmarshal([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: n}\nspec: {containers: [{name: a, image: b}]}\n"), &pod); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.InjectedBy = "webhook 9.9.9-test"
	action, reason, changed, err := InjectObject(pod, Options{Mode: ModeInject, Config: cfg})
	if err != nil || action != Injected || !changed || reason != "" {
		t.Fatalf("InjectObject: %v %v %v", action, changed, err)
	}
	md := pod["metadata"].(map[string]any)
	if md["annotations"].(map[string]any)[AnnotationInjectedBy] != "webhook 9.9.9-test" {
		t.Errorf("annotations %v", md["annotations"])
	}
	action, reason, changed, err = InjectObject(pod, Options{Mode: ModeInject, Config: cfg})
	if err != nil || action != Skipped || changed || reason != "already injected" {
		t.Fatalf("second InjectObject: %v %q %v %v", action, reason, changed, err)
	}
}

func TestTracingEnvironment(t *testing.T) {
	cfg := testConfig(t)
	if env := envOf(ProxyContainer(&cfg, false)); env[EnvTracingAgentAddr].Name != "" {
		t.Errorf("tracing variables without tracing configured: %+v", env[EnvTracingAgentAddr])
	}
	cfg.Tracing = &Tracing{SamplerType: "const", SamplerParam: "1", LocalAgentHostPort: "jaeger-agent.observability:6831", LogSpans: true}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := envOf(ProxyContainer(&cfg, false))
	for name, want := range map[string]string{
		EnvTracingSamplerType: "const", EnvTracingSamplerParam: "1",
		EnvTracingAgentAddr: "jaeger-agent.observability:6831", EnvTracingLogSpans: "true",
	} {
		if env[name].Value != want {
			t.Errorf("%s = %q, want %q", name, env[name].Value, want)
		}
	}
	if f := env[EnvTracingServiceName].ValueFrom; f == nil || f.FieldRef.FieldPath != "metadata.labels['app']" {
		t.Errorf("the service name is not the pod's app label: %+v", env[EnvTracingServiceName])
	}
	for _, bad := range []Tracing{
		{SamplerType: "remote", SamplerParam: "1", LocalAgentHostPort: "a:6831"},
		{SamplerType: "const", SamplerParam: "x", LocalAgentHostPort: "a:6831"},
		{SamplerType: "const", SamplerParam: "1", LocalAgentHostPort: "a"},
	} {
		cfg.Tracing = &bad
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	return env
}

// proxyEnv injects input and returns the mesh-proxy container's environment.
func proxyEnv(t *testing.T, input string, overrides map[string]string) map[string]corev1.EnvVar {
	t.Helper()
	r := run(t, Options{Mode: ModeInject, Config: testConfig(t), Overrides: overrides}, Source{Name: "pod.yaml", Data: []byte(input)})
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(r.Output, &pod); err != nil {
		t.Fatalf("the injected pod does not decode: %v\n%s", err, r.Output)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == ProxyContainerName {
			return envOf(c)
		}
	}
	t.Fatalf("no %s container:\n%s", ProxyContainerName, r.Output)
	return nil
}

// podWith is a pod with the config.lightmesh.io/<key> annotations in kv.
func podWith(kv map[string]string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {")
	for _, key := range slices.Sorted(maps.Keys(kv)) {
		fmt.Fprintf(&b, "%s%s: %s, ", ConfigAnnotationPrefix, key, quoteYAML(kv[key]))
	}
	b.WriteString("}\nspec: {containers: [{name: a, image: b}]}\n")
	return b.String()
}

// proxy-scheduler-poll and proxy-max-in-flight-requests set the proxy's environment variable,
// as annotations and as overrides (which win); without them the proxy gets neither, so its
// own defaults apply.
func TestProxyTuningOverrides(t *testing.T) {
	cases := []struct {
		key, value string
		env, want  string
	}{
		{KeyProxySchedulerPoll, "false", EnvSchedulerPoll, "false"},
		{KeyProxySchedulerPoll, "true", EnvSchedulerPoll, "true"},
		{KeyProxySchedulerPoll, " false ", EnvSchedulerPoll, "false"},
		{KeyProxyMaxInFlightRequests, "1", EnvMaxInFlightRequests, "1"},
		{KeyProxyMaxInFlightRequests, "250", EnvMaxInFlightRequests, "250"},
		{KeyProxyMaxInFlightRequests, "1000000", EnvMaxInFlightRequests, "1000000"},
		{KeyProxyMaxInFlightRequests, "0042", EnvMaxInFlightRequests, "42"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			if got := proxyEnv(t, podWith(map[string]string{c.key: c.value}), nil)[c.env]; got.Value != c.want || got.ValueFrom != nil {
				t.Errorf("annotation: %s = %+v, want %q", c.env, got, c.want)
			}
			// The override wins over an annotation of the same key.
			other := map[string]string{KeyProxySchedulerPoll: "true", KeyProxyMaxInFlightRequests: "7"}[c.key]
			if got := proxyEnv(t, podWith(map[string]string{c.key: other}), map[string]string{c.key: c.value})[c.env]; got.Value != c.want {
				t.Errorf("override over annotation %q: %s = %+v, want %q", other, c.env, got, c.want)
			}
		})
	}
	env := proxyEnv(t, podWith(nil), nil)
	for _, name := range []string{EnvSchedulerPoll, EnvMaxInFlightRequests} {
		if e, ok := env[name]; ok {
			t.Errorf("%s = %+v without its override; want it absent (the proxy's default)", name, e)
		}
	}
	// Config.Validate checks a MaxInFlightRequests set in code.
	cfg := testConfig(t)
	for n, ok := range map[int]bool{0: true, 1: true, 1_000_000: true, -1: false, 1_000_001: false} {
		cfg.MaxInFlightRequests = n
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("Validate with MaxInFlightRequests %d: %v", n, err)
		}
	}
}

// A bad proxy-scheduler-poll or proxy-max-in-flight-requests is an error naming the
// annotation (or the flag) and the values accepted; nothing is output, and the other
// overrides given with it are not applied either.
func TestProxyTuningOverridesRejected(t *testing.T) {
	cases := []struct{ key, value, want string }{
		{KeyProxySchedulerPoll, "yes", "use one of true, false"},
		{KeyProxySchedulerPoll, "1", "use one of true, false"},
		{KeyProxySchedulerPoll, "True", "use one of true, false"},
		{KeyProxySchedulerPoll, "", "use one of true, false"},
		{KeyProxySchedulerPoll, "false --privileged", "use one of true, false"},
		{KeyProxyMaxInFlightRequests, "many", "not a whole number; use one from 1 to 1000000"},
		{KeyProxyMaxInFlightRequests, "1.5", "not a whole number"},
		{KeyProxyMaxInFlightRequests, "1e3", "not a whole number"},
		{KeyProxyMaxInFlightRequests, "+5", "not a whole number"},
		{KeyProxyMaxInFlightRequests, "-1", "not a whole number"},
		{KeyProxyMaxInFlightRequests, "0x10", "not a whole number"},
		{KeyProxyMaxInFlightRequests, "", "not a whole number"},
		{KeyProxyMaxInFlightRequests, "0", "out of range; use a whole number from 1 to 1000000"},
		{KeyProxyMaxInFlightRequests, "1000001", "out of range"},
		{KeyProxyMaxInFlightRequests, "99999999999999999999999", "out of range"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			// With a valid value of the other key beside it, which must not be applied alone.
			kv := map[string]string{KeyProxySchedulerPoll: "false", KeyProxyMaxInFlightRequests: "10", KeyProxyLogLevel: "debug"}
			kv[c.key] = c.value
			result, err := Run([]Source{{Name: "bad.yaml", Data: []byte(podWith(kv))}}, Options{Mode: ModeInject, Config: testConfig(t)})
			if err == nil || result != nil {
				t.Fatalf("annotation accepted (error %v), result %v", err, result)
			}
			for _, want := range []string{"bad.yaml", "annotation " + ConfigAnnotationPrefix + c.key, fmt.Sprintf("%q", c.value), c.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			result, err = Run([]Source{{Name: "good.yaml", Data: []byte(podWith(nil))}}, Options{Mode: ModeInject, Config: testConfig(t), Overrides: kv})
			if err == nil || result != nil || !strings.HasPrefix(err.Error(), "--"+c.key+": ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("override: error %v, result %v; want one starting --%s: and containing %q", err, result, c.key, c.want)
			}
			if err := ValidateOverride(c.key, c.value); err == nil {
				t.Error("ValidateOverride accepted it")
			}
			cfg := testConfig(t)
			if err := cfg.ApplyOverrides(kv); err == nil {
				t.Fatal("ApplyOverrides accepted it")
			}
			if cfg.SchedulerPoll != nil || cfg.MaxInFlightRequests != 0 || cfg.LogLevel != "info" {
				t.Errorf("ApplyOverrides half-applied: scheduler poll %v, max in flight %d, log level %q", cfg.SchedulerPoll, cfg.MaxInFlightRequests, cfg.LogLevel)
			}
		})
	}
}
