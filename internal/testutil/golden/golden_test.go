package golden

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDiffShowsChangedLinesWithContext(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"
	b := "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n12\n13\n"
	want := `--- want
+++ got
@@ -2,7 +2,7 @@
 2
 3
 4
-5
+five
 6
 7
 8
@@ -10,3 +10,4 @@
 10
 11
 12
+13
`
	if got := Diff("want", "got", a, b); got != want {
		t.Errorf("Diff() =\n%s\nwant\n%s", got, want)
	}
}

func TestDiffMergesCloseChanges(t *testing.T) {
	a := "a\nb\nc\nd\ne\n"
	b := "a\nB\nc\nd\nE\n"
	want := `--- x
+++ y
@@ -1,5 +1,5 @@
 a
-b
+B
 c
 d
-e
+E
`
	if got := Diff("x", "y", a, b); got != want {
		t.Errorf("Diff() =\n%s\nwant\n%s", got, want)
	}
}

func TestDiffFromAndToEmpty(t *testing.T) {
	if got, want := Diff("x", "y", "", "a\n"), "--- x\n+++ y\n@@ -0,0 +1 @@\n+a\n"; got != want {
		t.Errorf("Diff(empty, a) = %q, want %q", got, want)
	}
	if got, want := Diff("x", "y", "a\n", ""), "--- x\n+++ y\n@@ -1 +0,0 @@\n-a\n"; got != want {
		t.Errorf("Diff(a, empty) = %q, want %q", got, want)
	}
	if got := Diff("x", "y", "same\n", "same\n"); got != "" {
		t.Errorf("Diff of equal texts = %q, want empty", got)
	}
}

func TestDiffShowsInvisibleDifferences(t *testing.T) {
	got := Diff("x", "y", "a\nb\n", "a\nb")
	if !strings.Contains(got, "+b  (no newline at end)") {
		t.Errorf("a missing final newline is not shown:\n%s", got)
	}
	got = Diff("x", "y", "a\n", "a\r\n")
	if !strings.Contains(got, `+a\r`) {
		t.Errorf("a carriage return is not shown:\n%s", got)
	}
}

// TestDiffEditScriptRebuildsBothSides checks, on random inputs, that keeping and removing
// gives back a and keeping and inserting gives back b, and that the script is no longer than
// the trivial remove-everything-insert-everything script.
func TestDiffEditScriptRebuildsBothSides(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randomLines := func() []string {
		lines := make([]string, rng.IntN(12))
		for i := range lines {
			lines[i] = string(rune('a' + rng.IntN(4)))
		}
		return lines
	}
	for range 500 {
		a, b := randomLines(), randomLines()
		var gotA, gotB []string
		changes := 0
		for _, e := range diffLines(a, b) {
			switch e.kind {
			case keep:
				gotA, gotB = append(gotA, e.text), append(gotB, e.text)
			case remove:
				gotA = append(gotA, e.text)
				changes++
			case insert:
				gotB = append(gotB, e.text)
				changes++
			}
		}
		if strings.Join(gotA, ",") != strings.Join(a, ",") || strings.Join(gotB, ",") != strings.Join(b, ",") {
			t.Fatalf("edit script of %q -> %q rebuilds %q -> %q", a, b, gotA, gotB)
		}
		if changes > len(a)+len(b) {
			t.Fatalf("edit script of %q -> %q has %d changes, more than %d", a, b, changes, len(a)+len(b))
		}
	}
}

func TestAssertMatchesGoldenFile(t *testing.T) {
	Assert(t, "example.golden", []byte("line one\nline two\n"))
}

func TestAssertReportsDiff(t *testing.T) {
	if *update {
		t.Skip("-update would rewrite the golden file with the wrong output on purpose")
	}
	fake := &recordingTB{TB: t}
	Assert(fake, "example.golden", []byte("line one\nline 2\n"))
	if !strings.Contains(fake.errors, "-line two\n+line 2\n") {
		t.Errorf("Assert reported %q, want a diff of the changed line", fake.errors)
	}
}

// recordingTB records errors instead of failing the test.
type recordingTB struct {
	testing.TB
	errors string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors += fmt.Sprintf(format, args...)
}
