package cmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
	"github.com/lightmesh/lightmesh/internal/version"
)

// The fixture trust anchor (and issuer) of the install package's tests.
const (
	anchorsFile   = "../../install/testdata/identity/ca.crt"
	issuerFile    = "../../install/testdata/identity/issuer.crt"
	issuerKeyFile = "../../install/testdata/identity/issuer.key"
)

// execute runs mesh with args and stdin, as a user would, and returns stdout and stderr.
func execute(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := NewRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SilenceUsage = true
	root.SilenceErrors = true
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// versionless hides the version, so that golden files survive a release.
func versionless(s string) []byte {
	return []byte(strings.ReplaceAll(s, version.Version, "<version>"))
}

func TestInjectCommandGolden(t *testing.T) {
	out, errOut, err := execute(t, "", "inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile,
		"--proxy-cpu-limit", "500m", "testdata/manifests")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "inject-dir.yaml", versionless(out))
	golden.Assert(t, "inject-dir.stderr", versionless(errOut))
	if !strings.Contains(out, "name: web # untouched: this comment stays") {
		t.Error("the untouched Service lost its comment")
	}
	if strings.Contains(out, "not a manifest") {
		t.Error("README.md in the directory was read")
	}
}

func TestAnnotateOnlyCommandGolden(t *testing.T) {
	out, errOut, err := execute(t, "", "inject", "--annotate-only", "--skip-outbound-ports", "5432", "testdata/manifests")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "inject-annotate-only.yaml", versionless(out))
	golden.Assert(t, "inject-annotate-only.stderr", versionless(errOut))
}

// mesh uninject undoes mesh inject, through the commands and a pipe.
func TestUninjectCommandReversesInject(t *testing.T) {
	input, err := os.ReadFile("testdata/manifests/app/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	injected, _, err := execute(t, string(input), "inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile, "-")
	if err != nil {
		t.Fatal(err)
	}
	uninjected, report, err := execute(t, injected, "uninject", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(report, "uninjected deployment/web") {
		t.Errorf("report:\n%s", report)
	}
	want, got := objects(t, string(input)), objects(t, uninjected)
	if !reflect.DeepEqual(want, got) {
		t.Errorf("uninject(inject(x)) != x:\n%s", golden.Diff("input", "round trip", string(input), uninjected))
	}
}

func objects(t *testing.T, stream string) []map[string]any {
	t.Helper()
	docs, err := inject.ParseSource(inject.Source{Name: "s", Data: []byte(stream)}, inject.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, d := range docs {
		if d.Object != nil {
			out = append(out, d.Object)
		}
	}
	return out
}

// Without --ignore-cluster, inject starts from the installation's lightmesh-config.
func TestInjectReadsTheInstallation(t *testing.T) {
	anchors, err := os.ReadFile(anchorsFile)
	if err != nil {
		t.Fatal(err)
	}
	values := install.DefaultValues()
	values.Namespace = "mesh-system"
	values.Proxy.LogLevel = "debug"
	values.ImageRegistry = "registry.example.com/mirror"
	values.Identity.TrustAnchorsPEM = string(anchors)
	opts := newInjectOptions()
	opts.inputs = []string{"-"}
	opts.controlPlaneNamespace = "mesh-system"
	var asked string
	opts.installedValues = func(_ context.Context, ns string) (install.Values, error) {
		asked = ns
		return values, nil
	}
	var out, errOut bytes.Buffer
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: b}]}\n"
	if err := runInject(context.Background(), strings.NewReader(pod), &out, &errOut, opts); err != nil {
		t.Fatal(err)
	}
	if asked != "mesh-system" {
		t.Errorf("read the configuration of namespace %q", asked)
	}
	for _, want := range []string{
		"identity.mesh-system.svc.cluster.local:8080",
		"value: debug",
		"image: registry.example.com/mirror/mesh-proxy:" + version.Version,
		"image: registry.example.com/mirror/mesh-proxy-init:" + version.Version,
		strings.Split(string(anchors), "\n")[1],
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestInjectWithoutInstallation(t *testing.T) {
	for name, readErr := range map[string]error{
		"not installed": errNotInstalled{namespace: "lightmesh"},
		"no cluster":    errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"),
	} {
		t.Run(name, func(t *testing.T) {
			opts := newInjectOptions()
			opts.inputs = []string{"testdata/manifests"}
			opts.installedValues = func(context.Context, string) (install.Values, error) { return install.Values{}, readErr }
			var out, errOut bytes.Buffer
			err := runInject(context.Background(), nil, &out, &errOut, opts)
			if err == nil || !strings.Contains(err.Error(), "--ignore-cluster") {
				t.Fatalf("error %v, want one that suggests --ignore-cluster", err)
			}
			if out.Len() > 0 {
				t.Errorf("wrote to stdout after an error:\n%s", out.String())
			}
		})
	}
	// An installation whose config has no anchors cannot inject.
	opts := newInjectOptions()
	opts.inputs = []string{"testdata/manifests"}
	opts.installedValues = func(context.Context, string) (install.Values, error) { return install.DefaultValues(), nil }
	if err := runInject(context.Background(), nil, &bytes.Buffer{}, &bytes.Buffer{}, opts); err == nil || !strings.Contains(err.Error(), "trust anchors") {
		t.Fatalf("error %v, want one about missing trust anchors", err)
	}
}

// Flags win over a workload's config.lightmesh.io annotations.
func TestInjectFlagsOverrideAnnotations(t *testing.T) {
	out, _, err := execute(t, "", "inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile, "--proxy-log-level", "error", "testdata/manifests/app/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "- name: MESH_PROXY_LOG_LEVEL\n          value: error") {
		t.Errorf("--proxy-log-level did not win over the annotation (warn):\n%s", out)
	}
}

// --proxy-scheduler-poll and --proxy-max-in-flight-requests set the proxy's variables, and
// --annotate-only passes them on as annotations for the webhook; without them the proxy gets
// neither.
func TestInjectProxyTuningFlags(t *testing.T) {
	flags := []string{"--proxy-scheduler-poll", "false", "--proxy-max-in-flight-requests", "2500"}
	out, _, err := execute(t, "", append(append([]string{"inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile}, flags...), "testdata/manifests/app/web.yaml")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- name: MESH_PROXY_SCHEDULER_POLL\n          value: \"false\"", "- name: MESH_PROXY_MAX_IN_FLIGHT_REQUESTS\n          value: \"2500\""} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = execute(t, "", append(append([]string{"inject", "--annotate-only"}, flags...), "testdata/manifests/app/web.yaml")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`config.lightmesh.io/proxy-scheduler-poll: "false"`, `config.lightmesh.io/proxy-max-in-flight-requests: "2500"`} {
		if !strings.Contains(out, want) {
			t.Errorf("--annotate-only output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = execute(t, "", "inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile, "testdata/manifests/app/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "MESH_PROXY_SCHEDULER_POLL") || strings.Contains(out, "MESH_PROXY_MAX_IN_FLIGHT_REQUESTS") {
		t.Errorf("the proxy got a tuning variable without its flag:\n%s", out)
	}
}

func TestInjectValidate(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"no input":                 {[]string{"inject"}, "requires at least 1 arg"},
		"bad port flag":            {[]string{"inject", "--annotate-only", "--skip-inbound-ports", "80,99999", "x.yaml"}, "--skip-inbound-ports"},
		"bad cidr flag":            {[]string{"inject", "--annotate-only", "--skip-subnets", "10.0.0.0/40", "x.yaml"}, "--skip-subnets"},
		"bad quantity flag":        {[]string{"inject", "--annotate-only", "--proxy-memory-limit", "much", "x.yaml"}, "--proxy-memory-limit"},
		"bad log level flag":       {[]string{"inject", "--annotate-only", "--proxy-log-level", "chatty", "x.yaml"}, "--proxy-log-level"},
		"bad scheduler poll flag":  {[]string{"inject", "--annotate-only", "--proxy-scheduler-poll", "yes", "x.yaml"}, "--proxy-scheduler-poll: \"yes\" is neither true nor false; use one of true, false"},
		"non-numeric in-flight":    {[]string{"inject", "--annotate-only", "--proxy-max-in-flight-requests", "lots", "x.yaml"}, "--proxy-max-in-flight-requests: \"lots\" is not a whole number; use one from 1 to 1000000"},
		"in-flight out of range":   {[]string{"inject", "--annotate-only", "--proxy-max-in-flight-requests", "0", "x.yaml"}, "--proxy-max-in-flight-requests: \"0\" is out of range"},
		"request above limit":      {[]string{"inject", "--annotate-only", "--proxy-cpu-request", "2", "--proxy-cpu-limit", "1", "x.yaml"}, "--proxy-cpu-limit"},
		"ignore-cluster, no ca":    {[]string{"inject", "--ignore-cluster", "x.yaml"}, "--trust-anchors-file"},
		"annotate-only with ca":    {[]string{"inject", "--annotate-only", "--trust-anchors-file", anchorsFile, "x.yaml"}, "no effect"},
		"bad namespace":            {[]string{"inject", "--control-plane-namespace", "Mesh_System", "x.yaml"}, "--control-plane-namespace"},
		"missing file":             {[]string{"inject", "--annotate-only", "testdata/missing.yaml"}, "no such file"},
		"bad trust anchors":        {[]string{"inject", "--ignore-cluster", "--trust-anchors-file", issuerKeyFile, "testdata/manifests"}, "--trust-anchors-file"},
		"uninject without input":   {[]string{"uninject"}, "requires at least 1 arg"},
		"uninject of missing file": {[]string{"uninject", "testdata/missing.yaml"}, "no such file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out, _, err := execute(t, "", c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if out != "" {
				t.Errorf("wrote to stdout:\n%s", out)
			}
		})
	}
}

// One bad document anywhere: an error naming it, and nothing on stdout.
func TestInjectWritesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("testdata/manifests/app/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations: {config.lightmesh.io/opaque-ports: \"1-2-3\"}\nspec: {containers: [{name: a, image: b}]}\n"
	for name, content := range map[string]string{"a-good.yaml": string(good), "b-bad.yaml": "---\n" + bad} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, command := range []string{"inject", "uninject"} {
		args := []string{command, dir}
		if command == "inject" {
			args = []string{command, "--ignore-cluster", "--trust-anchors-file", anchorsFile, dir}
		}
		if command == "uninject" {
			if err := os.WriteFile(filepath.Join(dir, "b-bad.yaml"), []byte("kind: Pod\nmetadata: {name: x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, _, err := execute(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), "b-bad.yaml") {
			t.Errorf("%s: error %v, want one naming b-bad.yaml", command, err)
		}
		if out != "" {
			t.Errorf("%s wrote to stdout before failing:\n%s", command, out)
		}
	}
}
