package translate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// FuzzTranslateYAML: translation never panics on any stream, and the model it produces
// survives its JSON form (what the destination service streams to proxies) unchanged.
func FuzzTranslateYAML(f *testing.F) {
	seeds, err := filepath.Glob("../../../demo/istio/*.yaml")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{kind: Service, name: s, port: 80}]\n  rules: [{matches: [{path: {type: PathPrefix, value: /api}}], backendRefs: [{name: s, port: 80}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		res, _ := TranslateYAML(data, Options{DefaultNamespace: "fuzz"})
		first, err := json.Marshal(res.Model)
		if err != nil {
			t.Fatalf("the model does not encode: %v", err)
		}
		var back policy.Model
		if err := json.Unmarshal(first, &back); err != nil {
			t.Fatalf("the model's JSON does not decode: %v\n%s", err, first)
		}
		second, err := json.Marshal(back)
		if err != nil || string(first) != string(second) {
			t.Fatalf("the model changed through JSON:\n%s\n%s", first, second)
		}
	})
}
