package cmd

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDestinationOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*destinationOptions)
		want   string
	}{
		{"defaults", func(*destinationOptions) {}, ""},
		{"empty addr", func(o *destinationOptions) { o.addr = "" }, "--addr and --admin-addr"},
		{"empty issuer dir", func(o *destinationOptions) { o.issuerDir = "" }, "--issuer-dir is empty"},
		{"bad trust domain", func(o *destinationOptions) { o.trustDomain = "Bad" }, "--trust-domain"},
		{"empty cluster domain", func(o *destinationOptions) { o.clusterDomain = "" }, "--cluster-domain"},
		{"reload interval", func(o *destinationOptions) { o.reloadInterval = time.Millisecond }, "--reload-interval"},
		{"log level", func(o *destinationOptions) { o.logLevel = "loud" }, "--log-level"},
		{"policy retry", func(o *destinationOptions) { o.policyRetryInterval = time.Millisecond }, "--policy-retry-interval"},
		{"dns server", func(o *destinationOptions) { o.dnsServers = []string{"10.96.0.10"} }, "--dns-server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := newDestinationOptions()
			tt.mutate(opts)
			err := opts.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	opts := newDestinationOptions()
	if got := opts.servingNameOrDefault(); got != "destination.lightmesh.svc.cluster.local" {
		t.Errorf("serving name %q", got)
	}
	opts.controlPlaneNamespace, opts.clusterDomain = "mesh", "example.org"
	if got := opts.servingNameOrDefault(); got != "destination.mesh.svc.example.org" {
		t.Errorf("serving name %q", got)
	}
}

func TestDestinationCommandFlags(t *testing.T) {
	root := NewRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"destination", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--addr", "--admin-addr", "--trust-domain", "--trust-anchors-file", "--issuer-dir",
		"--control-plane-namespace", "--cluster-domain", "--kubeconfig", "--serving-name", ":8086", ":9996",
		"--policy", "--policy-retry-interval", "--policy-status", "--dns-server"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("destination --help does not list %s", flag)
		}
	}
}
