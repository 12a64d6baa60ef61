package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Output formats of the results.
const (
	OutputTable = "table"
	OutputShort = "short"
	OutputJSON  = "json"
)

// Outputs lists the output formats.
var Outputs = []string{OutputTable, OutputJSON, OutputShort}

// Glyphs of the statuses in the table.
const (
	glyphSuccess = "√"
	glyphWarning = "‼"
	glyphError   = "×"
)

func glyph(s Status) string {
	switch s {
	case StatusSuccess:
		return glyphSuccess
	case StatusWarning:
		return glyphWarning
	}
	return glyphError
}

// TableWriter writes results as they come: a header per category, one line per check
// (√ passed, ‼ warning, × failed), the error, hint and anchor under each warning and failure.
// With Short, only warnings and failures are written.
type TableWriter struct {
	Out   io.Writer
	Short bool
	// category is the category whose header was written last.
	category string
}

// Write writes one result.
func (w *TableWriter) Write(r Result) {
	if w.Short && r.Status == StatusSuccess {
		return
	}
	if r.Category != w.category {
		if w.category != "" {
			fmt.Fprintln(w.Out)
		}
		fmt.Fprintf(w.Out, "%s\n%s\n", r.Category, strings.Repeat("-", len(r.Category)))
		w.category = r.Category
	}
	if r.Detail != "" {
		fmt.Fprintf(w.Out, "%s %s: %s\n", glyph(r.Status), r.Description, r.Detail)
	} else {
		fmt.Fprintf(w.Out, "%s %s\n", glyph(r.Status), r.Description)
	}
	if r.Status == StatusSuccess {
		return
	}
	fmt.Fprintf(w.Out, "    %s\n", indent(r.Error))
	if r.Hint != "" {
		fmt.Fprintf(w.Out, "    hint: %s\n", indent(r.Hint))
	}
	fmt.Fprintf(w.Out, "    see %s\n", r.HintURL)
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

// Summary writes the closing line of the table.
func (w *TableWriter) Summary(rs Results) {
	if w.category != "" {
		fmt.Fprintln(w.Out)
	}
	fmt.Fprintln(w.Out, SummaryLine(rs))
}

// SummaryLine is "Status check results are √ (12 passed, 1 warning)" and the like.
func SummaryLine(rs Results) string {
	status := glyphSuccess
	if !rs.Success() {
		status = glyphError
	}
	parts := []string{fmt.Sprintf("%d passed", rs.Count(StatusSuccess))}
	if n := rs.Count(StatusWarning); n > 0 {
		parts = append(parts, plural(n, "warning"))
	}
	if n := rs.Count(StatusError); n > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", n))
	}
	if rs.Skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped after a fatal failure", rs.Skipped))
	}
	return fmt.Sprintf("Status check results are %s (%s)", status, strings.Join(parts, ", "))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// JSON output: a stable document, one entry per category in run order.
type jsonReport struct {
	Success    bool           `json:"success"`
	Summary    jsonSummary    `json:"summary"`
	Categories []jsonCategory `json:"categories"`
}

type jsonSummary struct {
	Passed   int `json:"passed"`
	Warnings int `json:"warnings"`
	Failed   int `json:"failed"`
	Skipped  int `json:"skipped"`
}

type jsonCategory struct {
	Name   string   `json:"categoryName"`
	Checks []Result `json:"checks"`
}

// WriteJSON writes rs as one indented JSON document.
func WriteJSON(out io.Writer, rs Results) error {
	report := jsonReport{
		Success: rs.Success(),
		Summary: jsonSummary{
			Passed:   rs.Count(StatusSuccess),
			Warnings: rs.Count(StatusWarning),
			Failed:   rs.Count(StatusError),
			Skipped:  rs.Skipped,
		},
		Categories: []jsonCategory{},
	}
	for _, r := range rs.Results {
		if n := len(report.Categories); n == 0 || report.Categories[n-1].Name != r.Category {
			report.Categories = append(report.Categories, jsonCategory{Name: r.Category})
		}
		last := &report.Categories[len(report.Categories)-1]
		last.Checks = append(last.Checks, r)
	}
	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(data, '\n'))
	return err
}
