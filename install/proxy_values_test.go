package install

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/inject"
)

// proxy.schedulerPoll and proxy.maxInFlightRequests are set by --set and by values files,
// refused out of their range by name, and become inject.Config's SchedulerPoll and
// MaxInFlightRequests; their defaults set neither.
func TestSchedulerPollAndMaxInFlightValues(t *testing.T) {
	v := DefaultValues()
	cfg, err := v.InjectConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SchedulerPoll != nil || cfg.MaxInFlightRequests != 0 {
		t.Errorf("defaults give SchedulerPoll %v, MaxInFlightRequests %d; want nil and 0", cfg.SchedulerPoll, cfg.MaxInFlightRequests)
	}

	for _, a := range []string{"proxy.schedulerPoll=false", "proxy.maxInFlightRequests=500"} {
		if err := v.Set(a); err != nil {
			t.Fatalf("Set(%q): %v", a, err)
		}
	}
	if v.Proxy.SchedulerPoll != "false" || v.Proxy.MaxInFlightRequests != 500 {
		t.Fatalf("after --set: schedulerPoll %q, maxInFlightRequests %d", v.Proxy.SchedulerPoll, v.Proxy.MaxInFlightRequests)
	}
	if cfg, err = v.InjectConfig(); err != nil {
		t.Fatal(err)
	}
	if cfg.SchedulerPoll == nil || *cfg.SchedulerPoll || cfg.MaxInFlightRequests != 500 {
		t.Errorf("InjectConfig: SchedulerPoll %v, MaxInFlightRequests %d; want false and 500", cfg.SchedulerPoll, cfg.MaxInFlightRequests)
	}
	if err := v.Set("proxy.schedulerPoll=true"); err != nil {
		t.Fatal(err)
	}
	if cfg, err = v.InjectConfig(); err != nil || cfg.SchedulerPoll == nil || !*cfg.SchedulerPoll {
		t.Errorf("--set proxy.schedulerPoll=true: SchedulerPoll %v, %v", cfg.SchedulerPoll, err)
	}

	// A values file, with YAML's own bool and number as well as a quoted string.
	for _, file := range []string{
		"proxy:\n  schedulerPoll: false\n  maxInFlightRequests: 500\n",
		"proxy:\n  schedulerPoll: \"false\"\n  maxInFlightRequests: 500\n",
	} {
		v, err := ParseValues([]byte(file))
		if err != nil {
			t.Fatalf("ParseValues(%q): %v", file, err)
		}
		if v.Proxy.SchedulerPoll != "false" || v.Proxy.MaxInFlightRequests != 500 || v.Proxy.LogLevel != "info" {
			t.Errorf("ParseValues(%q): proxy %+v", file, v.Proxy)
		}
	}

	// Bad values: refused by Validate (and so by InjectConfig and Render), naming the value
	// and what it accepts.
	for _, c := range []struct {
		set  string
		want []string
	}{
		{"proxy.schedulerPoll=maybe", []string{"proxy.schedulerPoll", `"maybe"`, "true, false"}},
		{"proxy.schedulerPoll=yes", []string{"proxy.schedulerPoll", `"yes"`, "true, false"}},
		{"proxy.schedulerPoll=False", []string{"proxy.schedulerPoll", "true, false"}},
		{"proxy.maxInFlightRequests=-1", []string{"proxy.maxInFlightRequests -1", "from 1 to 1000000"}},
		{"proxy.maxInFlightRequests=1000001", []string{"proxy.maxInFlightRequests 1000001", "from 1 to 1000000"}},
	} {
		v := DefaultValues()
		if err := v.Set(c.set); err != nil {
			t.Fatalf("Set(%q): %v", c.set, err)
		}
		_, err := v.InjectConfig()
		if err == nil {
			t.Errorf("--set %s accepted", c.set)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("--set %s: error %q does not say %q", c.set, err, w)
			}
		}
		if _, err := Render(v, fixtureIdentity(t)); err == nil {
			t.Errorf("--set %s: Render accepted it", c.set)
		}
	}
	for _, bound := range []string{"proxy.maxInFlightRequests=1", "proxy.maxInFlightRequests=1000000"} {
		v := DefaultValues()
		if err := v.Set(bound); err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(); err != nil {
			t.Errorf("--set %s: %v", bound, err)
		}
	}
	v = DefaultValues()
	if err := v.Set("proxy.maxInFlightRequests=many"); err == nil || !strings.Contains(err.Error(), "want a int") {
		t.Errorf("--set proxy.maxInFlightRequests=many: %v", err)
	}
	if _, err := ParseValues([]byte("proxy:\n  maxInFlightRequests: [1]\n")); err == nil {
		t.Error("a values file with a list for proxy.maxInFlightRequests was accepted")
	}
}

// workload is a Deployment to inject; annotations go on its pod template.
func workload(annotations map[string]string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: app\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n")
	if len(annotations) > 0 {
		b.WriteString("      annotations:\n")
		for k, v := range annotations {
			b.WriteString("        " + k + ": \"" + v + "\"\n")
		}
	}
	b.WriteString("    spec:\n      containers:\n      - name: web\n        image: nginx\n")
	return []byte(b.String())
}

// proxyEnv injects doc with cfg and returns the proxy container's environment.
func proxyEnv(t *testing.T, cfg inject.Config, doc []byte) map[string]string {
	t.Helper()
	result, err := inject.Run([]inject.Source{{Name: "web.yaml", Data: doc}}, inject.Options{Mode: inject.ModeInject, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(result.Output, &d); err != nil {
		t.Fatal(err)
	}
	// The proxy is a native sidecar: an init container.
	for _, c := range d.Spec.Template.Spec.InitContainers {
		if c.Name == inject.ProxyContainerName {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			return env
		}
	}
	t.Fatalf("no %s container injected:\n%s", inject.ProxyContainerName, result.Output)
	return nil
}

// The install-wide values reach injected pods the way `mesh inject` (ParseValues) and the
// webhook (ParseStoredValues) read them from the rendered lightmesh-config ConfigMap, and a
// workload's config.lightmesh.io/* annotations override them.
func TestProxyValuesReachInjectedPods(t *testing.T) {
	readers := map[string]func([]byte) (Values, error){
		"mesh inject": ParseValues,
		"webhook": func(data []byte) (Values, error) {
			v, _, err := ParseStoredValues(data)
			return v, err
		},
	}
	stored := func(t *testing.T, v Values) []byte {
		t.Helper()
		var cm corev1.ConfigMap
		find(t, render(t, v), "ConfigMap", ConfigMapName, &cm)
		return []byte(cm.Data[ConfigKey])
	}

	// A default installation stores neither value and its proxies get neither env.
	data := stored(t, DefaultValues())
	for _, key := range []string{"schedulerPoll", "maxInFlightRequests"} {
		if strings.Contains(string(data), key) {
			t.Errorf("the stored values of a default installation carry proxy.%s", key)
		}
	}
	for name, read := range readers {
		v, err := read(data)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := v.InjectConfig()
		if err != nil {
			t.Fatal(err)
		}
		env := proxyEnv(t, cfg, workload(nil))
		for _, e := range []string{inject.EnvSchedulerPoll, inject.EnvMaxInFlightRequests} {
			if value, ok := env[e]; ok {
				t.Errorf("%s, default installation: the proxy has %s=%s", name, e, value)
			}
		}
	}

	v := DefaultValues()
	for _, a := range []string{"proxy.schedulerPoll=false", "proxy.maxInFlightRequests=500"} {
		if err := v.Set(a); err != nil {
			t.Fatal(err)
		}
	}
	data = stored(t, v)
	for name, read := range readers {
		back, err := read(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cfg, err := back.InjectConfig()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		env := proxyEnv(t, cfg, workload(nil))
		if env[inject.EnvSchedulerPoll] != "false" || env[inject.EnvMaxInFlightRequests] != "500" {
			t.Errorf("%s: %s=%q, %s=%q; want false and 500", name,
				inject.EnvSchedulerPoll, env[inject.EnvSchedulerPoll], inject.EnvMaxInFlightRequests, env[inject.EnvMaxInFlightRequests])
		}
		env = proxyEnv(t, cfg, workload(map[string]string{
			inject.ConfigAnnotationPrefix + inject.KeyProxySchedulerPoll:       "true",
			inject.ConfigAnnotationPrefix + inject.KeyProxyMaxInFlightRequests: "20",
		}))
		if env[inject.EnvSchedulerPoll] != "true" || env[inject.EnvMaxInFlightRequests] != "20" {
			t.Errorf("%s, annotated workload: %s=%q, %s=%q; want the annotations' true and 20", name,
				inject.EnvSchedulerPoll, env[inject.EnvSchedulerPoll], inject.EnvMaxInFlightRequests, env[inject.EnvMaxInFlightRequests])
		}
		// One annotation overrides its value only; the other keeps the installation's.
		env = proxyEnv(t, cfg, workload(map[string]string{inject.ConfigAnnotationPrefix + inject.KeyProxyMaxInFlightRequests: "7"}))
		if env[inject.EnvSchedulerPoll] != "false" || env[inject.EnvMaxInFlightRequests] != "7" {
			t.Errorf("%s, one annotation: %s=%q, %s=%q; want false and 7", name,
				inject.EnvSchedulerPoll, env[inject.EnvSchedulerPoll], inject.EnvMaxInFlightRequests, env[inject.EnvMaxInFlightRequests])
		}
	}
}
