package cmd

// YAML bombs and hostile annotations given to `mesh inject` (issue 13): the command fails
// with an error naming the file, writes nothing to stdout, and stays within bounded time
// and memory.

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestInjectCommandRefusesBombs(t *testing.T) {
	laughs := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		laughs += name + ": &" + name + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ",") + "]\n"
		prev = name
	}
	cases := map[string]string{
		"billion laughs": laughs,
		"deep nesting":   "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: " + strings.Repeat("[", 50_000) + strings.Repeat("]", 50_000) + "\n",
		"huge document":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  x: \"" + strings.Repeat("a", 5<<20) + "\"\n",
		"iptables args in an annotation": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {config.lightmesh.io/skip-inbound-ports: \"80 -j ACCEPT\"}\n" +
			"spec: {containers: [{name: a, image: b}]}\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bomb.yaml")
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			out, _, err := execute(t, "", "inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile, file)
			d := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("accepted; wrote %d bytes", len(out))
			}
			if !strings.Contains(err.Error(), "bomb.yaml") {
				t.Errorf("error %v does not name the file", err)
			}
			if out != "" {
				t.Errorf("wrote to stdout before failing: %.200s", out)
			}
			if d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
				t.Errorf("allocated %d MiB", grew>>20)
			}
			// The same on stdin.
			if _, _, err := execute(t, content, "inject", "--ignore-cluster", "--trust-anchors-file", anchorsFile, "-"); err == nil {
				t.Error("accepted on stdin")
			}
		})
	}
}
