package install

import (
	"strings"
	"testing"
)

func TestTracingValues(t *testing.T) {
	v := DefaultValues()
	v.Identity.TrustAnchorsPEM = "anchors"
	cfg, err := v.injectConfig()
	if err != nil || cfg.Tracing != nil {
		t.Fatalf("tracing is off by default: %+v %v", cfg.Tracing, err)
	}
	for _, set := range []string{"tracing.enabled=true", "tracing.sampling.type=probabilistic", "tracing.sampling.param=0.5",
		"tracing.reporter.logSpans=true", "tracing.reporter.localAgentHostPort=192.0.2.2:6831"} {
		if err := v.Set(set); err != nil {
			t.Fatalf("--set %s: %v", set, err)
		}
	}
	cfg, err = v.injectConfig()
	if err != nil {
		t.Fatal(err)
	}
	if tr := cfg.Tracing; tr == nil || tr.SamplerType != "probabilistic" || tr.SamplerParam != "0.5" || !tr.LogSpans || tr.LocalAgentHostPort != "192.0.2.2:6831" {
		t.Errorf("tracing %+v", cfg.Tracing)
	}

	// Without an agent address, the Jaeger add-on's agent; without the add-on, an error.
	v.Tracing.Reporter.LocalAgentHostPort = ""
	if _, err := v.injectConfig(); err == nil || !strings.Contains(err.Error(), "tracing.reporter.localAgentHostPort") {
		t.Errorf("no agent: %v", err)
	}
	v.Jaeger.Enabled = true
	if cfg, err := v.injectConfig(); err != nil || cfg.Tracing.LocalAgentHostPort != "jaeger-agent.lightmesh.svc.cluster.local:6831" {
		t.Errorf("with the add-on: %+v %v", cfg.Tracing, err)
	}
	v.Tracing.Sampling.Type = "remote"
	if _, err := v.injectConfig(); err == nil {
		t.Error("an unknown sampler was accepted")
	}

	// The stored values leave tracing out while it has its defaults.
	d := DefaultValues()
	stored, err := d.StoredYAML()
	if err != nil || strings.Contains(string(stored), "tracing") {
		t.Errorf("default stored values mention tracing: %v\n%s", err, stored)
	}
}
