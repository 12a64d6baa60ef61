package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzInject: whatever YAML comes in, Run never panics and stays within its limits; what it
// injects, injecting again leaves unchanged (inject is idempotent), and uninjecting gives back
// objects equal to the input's.
func FuzzInject(f *testing.F) {
	inputs, err := filepath.Glob("testdata/inputs/*")
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a, *a, *a, *a]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"))
	f.Add([]byte("kind: List\napiVersion: v1\nitems: [{kind: Pod, apiVersion: v1, metadata: {name: p}, spec: {containers: [{name: a, image: b}]}}]\n"))
	anchors, err := os.ReadFile("testdata/identity/ca.crt")
	if err != nil {
		f.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.TrustAnchorsPEM = string(anchors)
	limits := Limits{MaxDocumentBytes: 64 << 10, MaxStreamBytes: 256 << 10, MaxExpandedNodes: 10_000, MaxExpandedBytes: 256 << 10}
	run := func(mode Mode, data []byte) (*Result, error) {
		return Run([]Source{{Name: "fuzz.yaml", Data: data}}, Options{Mode: mode, Config: cfg, Limits: limits})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		once, err := run(ModeInject, data)
		if err != nil {
			return
		}
		twice, err := run(ModeInject, once.Output)
		if err != nil {
			t.Fatalf("injecting the output of inject failed: %v\n%s", err, once.Output)
		}
		if !bytes.Equal(once.Output, twice.Output) {
			t.Fatalf("inject is not idempotent:\n--- once\n%s\n--- twice\n%s", once.Output, twice.Output)
		}
		back, err := run(ModeUninject, once.Output)
		if err != nil {
			t.Fatalf("uninject of inject's output failed: %v", err)
		}
		if !sameObjects(t, data, back.Output) {
			t.Fatalf("uninject(inject(x)) differs from x:\n--- x\n%s\n--- back\n%s", data, back.Output)
		}
	})
}

// sameObjects compares two YAML streams document by document as objects.
func sameObjects(t *testing.T, a, b []byte) bool {
	t.Helper()
	docs := func(data []byte) []any {
		var out []any
		parsed, err := ParseSource(Source{Name: "x", Data: data}, DefaultLimits())
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		for _, d := range parsed {
			if d.Object == nil {
				continue
			}
			j, _ := yaml.Marshal(d.Object)
			out = append(out, string(j))
		}
		return out
	}
	da, db := docs(a), docs(b)
	if len(da) != len(db) {
		return false
	}
	for i := range da {
		if da[i] != db[i] {
			return false
		}
	}
	return true
}
