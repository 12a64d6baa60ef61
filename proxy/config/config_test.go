package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[strings.TrimPrefix(k, Prefix)]
		return v, ok
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.InboundAddr != "0.0.0.0:4143" || c.OutboundAddr != "127.0.0.1:4140" || c.AdminAddr != "0.0.0.0:4191" ||
		c.DetectTimeout != 10*time.Second || c.IdentityDisabled || c.LogLevel != slog.LevelInfo ||
		len(c.OpaquePorts) == 0 || c.OpaquePorts[0] != 25 || c.Destinations != nil {
		t.Errorf("defaults: %+v", c)
	}
}

func TestValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		"OPAQUE_PORTS": "3306, 8000-8002", "LOG_LEVEL": "DEBUG", "IDENTITY_DISABLED": "true",
		"DETECT_TIMEOUT": "250ms", "POD_IP": "10.0.0.7",
		"STATIC_DESTINATIONS": "10.0.0.8:80=10.0.0.8:80@spiffe://cluster.local/ns/a/sa/b",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.OpaquePorts) != 4 || c.OpaquePorts[3] != 8002 || c.LogLevel != slog.LevelDebug || !c.IdentityDisabled ||
		c.DetectTimeout != 250*time.Millisecond || c.PodIP.String() != "10.0.0.7" || c.Destinations == nil {
		t.Errorf("values: %+v", c)
	}
	if c, _ := Load(env(map[string]string{"OPAQUE_PORTS": "none"})); len(c.OpaquePorts) != 0 {
		t.Errorf("none: %v", c.OpaquePorts)
	}
}

func TestInvalidValuesAreAllReported(t *testing.T) {
	_, err := Load(env(map[string]string{
		"INBOUND_ADDR": "4143", "DETECT_TIMEOUT": "10", "OPAQUE_PORTS": "0", "LOG_LEVEL": "loud",
		"IDENTITY_DISABLED": "maybe", "MAX_HEADER_COUNT": "0", "TRUST_DOMAIN": "Cluster.Local",
		"STATIC_DESTINATIONS": "nonsense",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"MESH_PROXY_INBOUND_ADDR", "MESH_PROXY_DETECT_TIMEOUT", "MESH_PROXY_OPAQUE_PORTS",
		"MESH_PROXY_LOG_LEVEL", "MESH_PROXY_IDENTITY_DISABLED", "MESH_PROXY_MAX_HEADER_COUNT", "MESH_PROXY_TRUST_DOMAIN",
		"MESH_PROXY_STATIC_DESTINATIONS", "write ip:port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
}

func TestDestinationAddr(t *testing.T) {
	c, err := Load(env(map[string]string{"DESTINATION_ADDR": "destination.lightmesh.svc.cluster.local:8086"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DestinationServerName != "destination.lightmesh.svc.cluster.local" {
		t.Errorf("server name %q", c.DestinationServerName)
	}
	if _, err := Load(env(map[string]string{"DESTINATION_ADDR": "no-port"})); err == nil || !strings.Contains(err.Error(), "MESH_PROXY_DESTINATION_ADDR") {
		t.Errorf("no port: got %v", err)
	}
}

func TestTracingAndBodyTimeout(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil || c.Tracing != nil || c.BodyReadTimeout != time.Minute {
		t.Fatalf("defaults: tracing %+v, body timeout %v, %v", c.Tracing, c.BodyReadTimeout, err)
	}
	c, err = Load(env(map[string]string{
		"TRACING_AGENT_ADDR": "jaeger-agent:6831", "TRACING_SAMPLER_TYPE": "probabilistic", "TRACING_SAMPLER_PARAM": "0.25",
		"TRACING_LOG_SPANS": "true", "SERVICE_ACCOUNT": "order-service", "BODY_READ_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Tracing; tr == nil || tr.LocalAgentHostPort != "jaeger-agent:6831" || tr.SamplerType != "probabilistic" ||
		tr.SamplerParam != 0.25 || !tr.LogSpans || tr.ServiceName != "order-service" || c.BodyReadTimeout != 5*time.Second {
		t.Errorf("tracing %+v, body timeout %v", c.Tracing, c.BodyReadTimeout)
	}
	for name, vars := range map[string]map[string]string{
		"MESH_PROXY_TRACING_SAMPLER_TYPE":  {"TRACING_AGENT_ADDR": "a:6831", "TRACING_SAMPLER_TYPE": "remote"},
		"MESH_PROXY_TRACING_SAMPLER_PARAM": {"TRACING_AGENT_ADDR": "a:6831", "TRACING_SAMPLER_PARAM": "all"},
		"probability from 0 to 1":          {"TRACING_AGENT_ADDR": "a:6831", "TRACING_SAMPLER_TYPE": "probabilistic", "TRACING_SAMPLER_PARAM": "2"},
		"write host:port":                  {"TRACING_AGENT_ADDR": "jaeger-agent"},
	} {
		if _, err := Load(env(vars)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want it to mention %s", vars, err, name)
		}
	}
}

func TestIngressMode(t *testing.T) {
	gateway := map[string]string{"INGRESS_MODE": "true", "DESTINATION_ADDR": "destination.lightmesh.svc.cluster.local:8086",
		"POD_NAMESPACE": "lightmesh", "POD_NAME": "ingress-1"}
	c, err := Load(env(gateway))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.GatewayListeners) != 1 || c.GatewayListeners[80] != "0.0.0.0:8080" {
		t.Errorf("default listeners %v", c.GatewayListeners)
	}
	gateway["GATEWAY_LISTENERS"] = "80=0.0.0.0:8080, 8000=127.0.0.1:9000"
	if c, err := Load(env(gateway)); err != nil || c.GatewayListeners[8000] != "127.0.0.1:9000" {
		t.Errorf("listeners %v, %v", c.GatewayListeners, err)
	}
	if c, _ := Load(env(nil)); c.GatewayListeners != nil {
		t.Error("a sidecar has gateway listeners")
	}
	for _, bad := range []map[string]string{
		{"INGRESS_MODE": "true"}, // no destination service or pod
		{"INGRESS_MODE": "true", "DESTINATION_ADDR": "d:8086", "POD_NAMESPACE": "n", "POD_NAME": "p", "GATEWAY_LISTENERS": "80"},
		{"INGRESS_MODE": "true", "DESTINATION_ADDR": "d:8086", "POD_NAMESPACE": "n", "POD_NAME": "p", "GATEWAY_LISTENERS": "0=0.0.0.0:8080"},
	} {
		if _, err := Load(env(bad)); err == nil || !strings.Contains(err.Error(), "MESH_PROXY_") {
			t.Errorf("%v: %v, want an error naming the variable", bad, err)
		}
	}
}

func TestTap(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.TapAddr != "0.0.0.0:4190" || c.TapIdentity.String() != "spiffe://cluster.local/ns/lightmesh/sa/lightmesh-controller" {
		t.Errorf("defaults: %q %q", c.TapAddr, c.TapIdentity)
	}
	// The control plane's namespace and the trust domain come from the identity settings.
	c, err = Load(env(map[string]string{"IDENTITY_ADDR": "identity.mesh-cp.svc.example.org:8080", "TRUST_DOMAIN": "example.org",
		"TRUST_ANCHORS": "", "IDENTITY_DISABLED": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.TapIdentity.String(); got != "spiffe://example.org/ns/mesh-cp/sa/lightmesh-controller" {
		t.Errorf("derived tap identity %q", got)
	}
	c, err = Load(env(map[string]string{"TAP_ADDR": "127.0.0.1:5000", "TAP_IDENTITY": "spiffe://cluster.local/ns/ops/sa/tapper"}))
	if err != nil || c.TapAddr != "127.0.0.1:5000" || c.TapIdentity.String() != "spiffe://cluster.local/ns/ops/sa/tapper" {
		t.Errorf("set: %v %q %q", err, c.TapAddr, c.TapIdentity)
	}
	if c, err := Load(env(map[string]string{"TAP_ADDR": "none"})); err != nil || c.TapAddr != "" {
		t.Errorf("none: %v %q", err, c.TapAddr)
	}
	for name, value := range map[string]string{"TAP_ADDR": "4190", "TAP_IDENTITY": "controller"} {
		if _, err := Load(env(map[string]string{name: value})); err == nil || !strings.Contains(err.Error(), "MESH_PROXY_"+name) {
			t.Errorf("%s=%s: %v", name, value, err)
		}
	}
}
