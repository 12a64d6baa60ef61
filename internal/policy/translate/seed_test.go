package translate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

// TestSeedTranslatesWithoutUnsupportedFields translates each seed example and compares the
// model with testdata/seed/<name>.golden.json (regenerate with -update, then review).
func TestSeedTranslatesWithoutUnsupportedFields(t *testing.T) {
	files, err := filepath.Glob("testdata/seed/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("found %d seed files, want 4: %v", len(files), files)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			result, err := TranslateYAML(data, Options{})
			if err != nil {
				t.Fatalf("TranslateYAML: %v", err)
			}
			for _, u := range result.Unsupported {
				t.Errorf("unsupported: %s", u)
			}
			out, err := json.MarshalIndent(result, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, "seed/"+name+".golden.json", append(out, '\n'))
		})
	}
}
