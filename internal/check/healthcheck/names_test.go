package healthcheck

import (
	"testing"
	"time"
)

func TestImageTag(t *testing.T) {
	cases := map[string]string{
		"ghcr.io/lightmesh/mesh-controller:0.1.0-dev":         "0.1.0-dev",
		"localhost:5000/mesh-controller":                      "",
		"localhost:5000/mesh-controller:1.2.3":                "1.2.3",
		"mesh-controller":                                     "",
		"ghcr.io/lightmesh/mesh-controller:1.0@sha256:abcdef": "1.0",
	}
	for image, want := range cases {
		if got := imageTag(image); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", image, got, want)
		}
	}
}

func TestPlural(t *testing.T) {
	cases := map[string]string{
		"Deployment": "Deployments", "NetworkPolicy": "NetworkPolicies", "Ingress": "Ingresses",
		"Gateway": "Gateways", "MutatingWebhookConfiguration": "MutatingWebhookConfigurations",
	}
	for kind, want := range cases {
		if got := plural(kind); got != want {
			t.Errorf("plural(%q) = %q, want %q", kind, got, want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[string]string{"5m0s": "5m", "1h0m0s": "1h", "90s": "1m30s"} {
		parsed, err := time.ParseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := shortDuration(parsed); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
