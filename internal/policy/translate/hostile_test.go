package translate

// YAML bombs to the policy translator (issue 13): alias expansion, deep nesting and huge
// documents end in an error (or an invalid resource) in bounded time and memory.

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestTranslateYAMLBombsAreBounded(t *testing.T) {
	head := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: demo}\nspec:\n  hosts: [a]\n"
	laughs := head + "  x0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	for i := 1; i <= 9; i++ {
		laughs += "  x" + itoa(i) + ": &a" + itoa(i) + " [" + strings.TrimSuffix(strings.Repeat("*a"+itoa(i-1)+",", 10), ",") + "]\n"
	}
	var manyRoutes strings.Builder
	manyRoutes.WriteString(head + "  http:\n")
	for range 50_000 {
		manyRoutes.WriteString("  - route: [{destination: {host: a}}]\n")
	}
	cases := map[string]string{
		"billion laughs":     laughs,
		"deep nesting":       head + "  http: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n",
		"deep mappings":      head + "  x: " + strings.Repeat("{a: ", 20_000) + "1" + strings.Repeat("}", 20_000) + "\n",
		"huge document":      head + "  x: \"" + strings.Repeat("a", 32<<20) + "\"\n",
		"50,000 http routes": manyRoutes.String(),
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			res, err := TranslateYAML([]byte(input), Options{DefaultNamespace: "n"})
			d := time.Since(start)
			runtime.ReadMemStats(&after)
			grew := (after.TotalAlloc - before.TotalAlloc) >> 20
			t.Logf("err %.200v; %d unsupported; %v; %d MiB allocated", err, len(res.Unsupported), d, grew)
			if d > 20*time.Second {
				t.Errorf("took %v", d)
			}
			if grew > 2048 {
				t.Errorf("allocated %d MiB", grew)
			}
			if name == "billion laughs" && err == nil {
				t.Error("the alias bomb was accepted")
			}
			if name == "huge document" {
				if err == nil || !strings.Contains(err.Error(), "limit") {
					t.Errorf("a %d MiB document: err %v, want the size limit", len(input)>>20, err)
				}
				if grew > 256 {
					t.Errorf("refusing a %d MiB document allocated %d MiB", len(input)>>20, grew)
				}
			}
		})
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
