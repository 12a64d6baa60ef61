package cmdutil

import (
	"bytes"
	"testing"

	"github.com/lightmesh/lightmesh/internal/version"
)

func TestVersionCmd(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{}, "mesh-test " + version.Version + "\n"},
		{[]string{"--short"}, version.Version + "\n"},
	} {
		cmd := NewVersionCmd("mesh-test")
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(c.args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("version %v: %v", c.args, err)
		}
		if out.String() != c.want {
			t.Errorf("version %v printed %q, want %q", c.args, out.String(), c.want)
		}
	}
}

func TestVersionCmdRejectsArguments(t *testing.T) {
	cmd := NewVersionCmd("mesh-test")
	cmd.SetArgs([]string{"extra"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil {
		t.Fatal("version with an argument succeeded, want an error")
	}
}
