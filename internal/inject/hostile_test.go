package inject

// Hostile input to inject (issue 13): annotation values that try to pass iptables
// arguments to mesh-init are refused with an error naming the file, document and key, and
// never reach the output; YAML built to cost memory or time (deep nesting, many documents,
// long keys) is refused or handled within bounds.

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestIptablesArgumentsNeverReachProxyInit(t *testing.T) {
	pod := func(key, value string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    " + ConfigAnnotationPrefix + key + ": " + quoteYAML(value) +
			"\nspec: {containers: [{name: a, image: b}]}\n"
	}
	cases := []struct{ key, value string }{
		{KeySkipInboundPorts, "80 -j ACCEPT"},
		{KeySkipInboundPorts, "80,-j,ACCEPT"},
		{KeySkipInboundPorts, "80;iptables -F"},
		{KeySkipInboundPorts, "80\n-A INPUT -j ACCEPT"},
		{KeySkipInboundPorts, "0x50"},
		{KeySkipInboundPorts, "+80"},
		{KeySkipInboundPorts, "８０"}, // full-width digits
		{KeySkipOutboundPorts, "$(iptables -F)"},
		{KeySkipOutboundPorts, "443 --to-ports 22"},
		{KeySkipOutboundPorts, "1-65535 -m owner"},
		{KeySkipOutboundPorts, "1--2"},
		{"opaque-ports", "3306`reboot`"},
		{KeySkipSubnets, "10.0.0.0/8 -j ACCEPT"},
		{KeySkipSubnets, "0.0.0.0/0,--dport 22"},
		{KeySkipSubnets, "10.0.0.0/8\n-F"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			result, err := Run([]Source{{Name: "evil.yaml", Data: []byte(pod(c.key, c.value))}}, Options{Mode: ModeInject, Config: testConfig(t)})
			if err == nil {
				t.Fatalf("injected:\n%s", result.Output)
			}
			for _, want := range []string{"evil.yaml", ConfigAnnotationPrefix + c.key} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not name %q", err, want)
				}
			}
		})
	}
	// The same values as overrides (the CLI's flags) are refused before any document.
	for _, c := range cases {
		if c.key == "opaque-ports" {
			continue
		}
		if err := ValidateOverride(c.key, c.value); err == nil {
			t.Errorf("override %s=%q was accepted", c.key, c.value)
		}
	}
}

func quoteYAML(s string) string {
	return "\"" + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + "\""
}

// YAML that costs without aliases: deep nesting, very many documents, a huge key. Each is
// refused with an error naming the file, or handled, in bounded time and memory.
func TestExpensiveYAMLIsBounded(t *testing.T) {
	var many strings.Builder
	for range 20_000 {
		many.WriteString("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	}
	cases := map[string]string{
		"deep flow sequences": "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: " + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + "\n",
		"deep flow mappings":  "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: " + strings.Repeat("{a: ", 50_000) + "1" + strings.Repeat("}", 50_000) + "\n",
		"deep block nesting":  "apiVersion: v1\nkind: ConfigMap\ndata:\n" + deepBlock(5_000),
		"20,000 documents":    many.String(),
		"a 1 MiB key":         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: k}\ndata:\n  " + strings.Repeat("k", 1<<20) + ": v\n",
	}
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Run([]Source{{Name: "bomb.yaml", Data: []byte(input)}}, Options{Mode: ModeInject, Config: testConfig(t)})
			d := time.Since(start)
			runtime.ReadMemStats(&after)
			t.Logf("%v in %v, %d MiB allocated", err, d, (after.TotalAlloc-before.TotalAlloc)>>20)
			if d > 20*time.Second {
				t.Errorf("took %v", d)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<30 {
				t.Errorf("allocated %d MiB", grew>>20)
			}
			if err != nil && !strings.Contains(err.Error(), "bomb.yaml") {
				t.Errorf("error %v does not name the file", err)
			}
		})
	}
}

func deepBlock(depth int) string {
	var b strings.Builder
	for i := range depth {
		b.WriteString(strings.Repeat(" ", 2*(i+1)))
		b.WriteString("a:\n")
	}
	b.WriteString(strings.Repeat(" ", 2*(depth+1)) + "b: 1\n")
	return b.String()
}
