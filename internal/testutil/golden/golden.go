// Package golden compares test output with files under testdata/ and rewrites them when the
// test binary runs with -update. It is lightmesh's one shared differ: on a mismatch it prints a
// unified line diff, so a failing golden test says what changed, not only that it did.
//
//	go test ./proxy-init/... -run TestSimulate -update   # regenerate, then read `git diff`
package golden

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/ with the output the tests produce")

// contextLines is how many unchanged lines a diff shows around each change.
const contextLines = 3

// Assert fails t when got differs from the contents of testdata/<name>, printing a unified
// diff from the golden file (-) to got (+). With -update it writes got to the file instead.
func Assert(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", filepath.FromSlash(name))
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatalf("golden: create the folder of %s: %v", path, err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatalf("golden: write %s: %v", path, err)
		}
		t.Logf("golden: updated %s", path)
		return
	}
	want, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Fatalf("golden: %s does not exist; create it with `go test -run '%s' -update` and review it", path, t.Name())
	}
	if err != nil {
		t.Fatalf("golden: read %s: %v", path, err)
	}
	if bytes.Equal(want, got) {
		return
	}
	t.Errorf("golden: output differs from %s (-want +got); if the change is intended, rerun with -update and review the diff:\n%s",
		path, Diff(path, "got", string(want), string(got)))
}

// Diff returns a unified diff turning a into b, with headers naming them aName and bName. It
// returns "" when a and b are equal. Differences that a line diff cannot show (a missing final
// newline, carriage returns) are spelled out.
func Diff(aName, bName, a, b string) string {
	if a == b {
		return ""
	}
	aLines, bLines := splitLines(a), splitLines(b)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", aName, bName)
	for _, h := range hunks(diffLines(aLines, bLines), len(aLines), len(bLines)) {
		out.WriteString(h)
	}
	return out.String()
}

// splitLines splits s into lines, keeping what a line diff would otherwise hide visible: a
// last line without newline is marked, and carriage returns are shown as \r.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, line := range lines {
		text, hasNewline := strings.CutSuffix(line, "\n")
		text = strings.ReplaceAll(text, "\r", `\r`)
		if !hasNewline {
			text += "  (no newline at end)"
		}
		lines[i] = text
	}
	return lines
}

type editKind int

const (
	keep editKind = iota
	remove
	insert
)

// edit is one step of a line edit script: keep a[aIndex] (== b[bIndex]), remove a[aIndex], or
// insert b[bIndex].
type edit struct {
	kind           editKind
	aIndex, bIndex int
	text           string
}

// diffLines returns a shortest edit script from a to b (Myers' O(ND) algorithm).
func diffLines(a, b []string) []edit {
	n, m := len(a), len(b)
	limit := n + m
	offset := limit + 1
	v := make([]int, 2*limit+3)
	var trace [][]int
	found := false
	for d := 0; d <= limit && !found; d++ {
		snapshot := make([]int, len(v))
		copy(snapshot, v)
		trace = append(trace, snapshot)
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[offset+k-1] < v[offset+k+1]) {
				x = v[offset+k+1] // step down: insert b[y]
			} else {
				x = v[offset+k-1] + 1 // step right: remove a[x]
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[offset+k] = x
			if x >= n && y >= m {
				found = true
				break
			}
		}
	}

	// Walk the trace backwards from (n, m) to (0, 0), collecting edits in reverse.
	var reversed []edit
	x, y := n, m
	for d := len(trace) - 1; d >= 0; d-- {
		v := trace[d]
		k := x - y
		var prevK int
		if k == -d || (k != d && v[offset+k-1] < v[offset+k+1]) {
			prevK = k + 1
		} else {
			prevK = k - 1
		}
		prevX := v[offset+prevK]
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x--
			y--
			reversed = append(reversed, edit{kind: keep, aIndex: x, bIndex: y, text: a[x]})
		}
		if d == 0 {
			break
		}
		if x == prevX {
			y--
			reversed = append(reversed, edit{kind: insert, aIndex: x, bIndex: y, text: b[y]})
		} else {
			x--
			reversed = append(reversed, edit{kind: remove, aIndex: x, bIndex: y, text: a[x]})
		}
	}
	edits := make([]edit, len(reversed))
	for i, e := range reversed {
		edits[len(reversed)-1-i] = e
	}
	return edits
}

// hunks groups an edit script into unified-diff hunks with contextLines of context.
func hunks(edits []edit, aLen, bLen int) []string {
	var result []string
	i := 0
	for i < len(edits) {
		// Find the next change.
		for i < len(edits) && edits[i].kind == keep {
			i++
		}
		if i == len(edits) {
			break
		}
		start := max(i-contextLines, 0)
		// Extend the hunk while changes are closer than 2*contextLines to each other.
		end := i
		for end < len(edits) {
			if edits[end].kind != keep {
				end++
				continue
			}
			run := end
			for run < len(edits) && edits[run].kind == keep {
				run++
			}
			if run == len(edits) || run-end > 2*contextLines {
				end = min(end+contextLines, run)
				break
			}
			end = run
		}

		var body strings.Builder
		aStart, bStart := -1, -1
		aCount, bCount := 0, 0
		for _, e := range edits[start:end] {
			if aStart < 0 {
				aStart, bStart = e.aIndex, e.bIndex
			}
			switch e.kind {
			case keep:
				body.WriteString(" " + e.text + "\n")
				aCount++
				bCount++
			case remove:
				body.WriteString("-" + e.text + "\n")
				aCount++
			case insert:
				body.WriteString("+" + e.text + "\n")
				bCount++
			}
		}
		result = append(result, fmt.Sprintf("@@ -%s +%s @@\n%s", hunkRange(aStart, aCount, aLen), hunkRange(bStart, bCount, bLen), body.String()))
		i = end
	}
	return result
}

// hunkRange formats a hunk's line range as unified diff does: 1-based start, and for an empty
// range the line before it.
func hunkRange(start, count, total int) string {
	if count == 0 {
		return fmt.Sprintf("%d,0", min(start, total))
	}
	if count == 1 {
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, count)
}
