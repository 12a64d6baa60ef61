package cmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/proxy/config"
)

func TestRunRefusesWithoutIdentityFiles(t *testing.T) {
	cfg, err := config.Load(func(k string) (string, bool) {
		if k == config.Prefix+"IDENTITY_DIR" {
			return t.TempDir(), true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	err = Run(context.Background(), cfg, &logs)
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "MESH_PROXY_IDENTITY_DISABLED") {
		t.Fatalf("Run = %v", err)
	}
}

func TestRootRefusesInvalidEnvironment(t *testing.T) {
	t.Setenv("MESH_PROXY_DETECT_TIMEOUT", "soon")
	root := NewRootCmd()
	root.SetArgs(nil)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SilenceUsage = true
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "invalid MESH_PROXY_DETECT_TIMEOUT") {
		t.Fatalf("err = %v", err)
	}
}

func TestVersionSubcommand(t *testing.T) {
	root := NewRootCmd()
	root.SetArgs([]string{"version", "--short"})
	var out bytes.Buffer
	root.SetOut(&out)
	if err := root.Execute(); err != nil || out.Len() == 0 {
		t.Fatalf("version: %v %q", err, out.String())
	}
}

// --config runs the standalone proxy, which refuses an Envoy file with an unknown field and
// names the field's path.
func TestConfigFlagRefusesUnknownEnvoyField(t *testing.T) {
	file := filepath.Join(t.TempDir(), "envoy.yaml")
	bad := "static_resources:\n  listeners: []\n  clusters:\n  - name: a\n    type: STATIC\n    colour: blue\n"
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	root := NewRootCmd()
	root.SetArgs([]string{"--config", file})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SilenceUsage = true
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "static_resources.clusters[0].colour") {
		t.Fatalf("err = %v, want the unknown field named by its path", err)
	}
}
