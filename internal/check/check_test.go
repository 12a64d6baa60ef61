package check

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func pass(context.Context) error { return nil }

func fail(msg string) func(context.Context) error {
	return func(context.Context) error { return errors.New(msg) }
}

// sample has a pass, a warning, a failure, then a fatal failure that stops the run.
func sample() []Category {
	return []Category{
		{ID: "alpha", Checks: []Check{
			{ID: "ok", Description: "the first thing holds", Run: pass},
			{ID: "soon", Description: "the second thing is not expiring soon", Hint: "renew it",
				Run: func(context.Context) error { return Warnf("it expires in %d days", 12) }},
		}},
		{ID: "beta", Checks: []Check{
			{ID: "broken", Description: "the third thing works", Hint: "fix the third thing\nthen run again", Run: fail("it is broken:\nin two ways")},
			{ID: "gone", Description: "the fourth thing exists", Hint: "create it", Fatal: true, Run: fail("it does not exist")},
			{ID: "never", Description: "never runs", Run: pass},
		}},
		{ID: "gamma", Checks: []Check{{ID: "never", Description: "never runs either", Run: pass}}},
	}
}

func TestRunnerStatusesAndFatal(t *testing.T) {
	var streamed []Result
	r := &Runner{Clock: NewFakeClock(start), OnResult: func(res Result) { streamed = append(streamed, res) }}
	results, err := r.Run(context.Background(), sample())
	if err != nil {
		t.Fatal(err)
	}
	want := []Status{StatusSuccess, StatusWarning, StatusError, StatusError}
	if len(results.Results) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(results.Results), len(want), results)
	}
	for i, s := range want {
		if got := results.Results[i].Status; got != s {
			t.Errorf("result %d: %s, want %s", i, got, s)
		}
	}
	if results.Skipped != 2 || results.Success() {
		t.Errorf("skipped %d, success %v; want 2 skipped, failure", results.Skipped, results.Success())
	}
	if len(streamed) != len(results.Results) {
		t.Errorf("OnResult saw %d results, want %d", len(streamed), len(results.Results))
	}
	warning := results.Results[1]
	if warning.Hint != "renew it" || warning.HintURL != "https://lightmesh.io/checks/#alpha-soon" || warning.Error != "it expires in 12 days" {
		t.Errorf("warning result: %+v", warning)
	}
	if results.Results[0].Hint != "" || results.Results[0].HintURL != "" {
		t.Errorf("a passing check carries a hint: %+v", results.Results[0])
	}
}

func TestWarningsDoNotFail(t *testing.T) {
	results, err := (&Runner{}).Run(context.Background(), []Category{{ID: "a", Checks: []Check{
		{ID: "w", Description: "w", Run: func(context.Context) error { return Warn(errors.New("meh")) }},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if !results.Success() || results.Count(StatusWarning) != 1 {
		t.Errorf("got %+v, want one warning and success", results)
	}
	if Warn(nil) != nil {
		t.Error("Warn(nil) is not nil")
	}
}

// flaky fails until it has been called n times.
func flaky(n int, calls *int) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls < n {
			return errors.New("not yet")
		}
		return nil
	}
}

func TestRunnerWaitRetriesUntilPass(t *testing.T) {
	clock := NewFakeClock(start)
	calls := 0
	var retried []string
	r := &Runner{Wait: time.Minute, Interval: 5 * time.Second, Clock: clock,
		OnRetry: func(c Check, err error) { retried = append(retried, c.ID+": "+err.Error()) }}
	results, err := r.Run(context.Background(), []Category{{ID: "a", Checks: []Check{{ID: "f", Description: "f", Run: flaky(4, &calls)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !results.Success() || calls != 4 {
		t.Errorf("success %v after %d calls, want success after 4", results.Success(), calls)
	}
	if got := clock.Now().Sub(start); got != 15*time.Second {
		t.Errorf("waited %s, want 15s (three intervals)", got)
	}
	if len(retried) != 1 || retried[0] != "f: not yet" {
		t.Errorf("OnRetry calls: %q, want one", retried)
	}
}

func TestRunnerWaitEnds(t *testing.T) {
	clock := NewFakeClock(start)
	calls := 0
	r := &Runner{Wait: 20 * time.Second, Interval: 5 * time.Second, Clock: clock}
	results, err := r.Run(context.Background(), []Category{{ID: "a", Checks: []Check{
		{ID: "f", Description: "f", Run: flaky(100, &calls)},
		{ID: "g", Description: "g", Run: flaky(100, new(int))},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if results.Success() || calls != 4 {
		t.Errorf("success %v after %d calls, want failure after 4 (at 0s, 5s, 10s, 15s)", results.Success(), calls)
	}
	if waited := clock.Now().Sub(start); waited > 20*time.Second {
		t.Errorf("waited %s, more than --wait", waited)
	}
}

func TestRunnerNoWaitRunsOnce(t *testing.T) {
	calls := 0
	results, err := (&Runner{Clock: NewFakeClock(start)}).Run(context.Background(), []Category{{ID: "a", Checks: []Check{{ID: "f", Description: "f", Run: flaky(2, &calls)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if results.Success() || calls != 1 {
		t.Errorf("success %v after %d calls, want one failing call", results.Success(), calls)
	}
}

func TestRunnerStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Runner{}).Run(ctx, sample())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func render(t *testing.T, output string) []byte {
	t.Helper()
	var out bytes.Buffer
	table := &TableWriter{Out: &out, Short: output == OutputShort}
	r := &Runner{Clock: NewFakeClock(start)}
	if output != OutputJSON {
		r.OnResult = table.Write
	}
	results, err := r.Run(context.Background(), sample())
	if err != nil {
		t.Fatal(err)
	}
	if output == OutputJSON {
		if err := WriteJSON(&out, results); err != nil {
			t.Fatal(err)
		}
	} else {
		table.Summary(results)
	}
	return out.Bytes()
}

func TestRenderGolden(t *testing.T) {
	golden.Assert(t, "sample.table", render(t, OutputTable))
	golden.Assert(t, "sample.short", render(t, OutputShort))
	golden.Assert(t, "sample.json", render(t, OutputJSON))
}

func TestSummaryLine(t *testing.T) {
	cases := []struct {
		results Results
		want    string
	}{
		{Results{}, "Status check results are √ (0 passed)"},
		{Results{Results: []Result{{Status: StatusSuccess}, {Status: StatusWarning}}}, "Status check results are √ (1 passed, 1 warning)"},
		{Results{Results: []Result{{Status: StatusError}, {Status: StatusWarning}, {Status: StatusWarning}}, Skipped: 3},
			"Status check results are × (0 passed, 2 warnings, 1 failed, 3 skipped after a fatal failure)"},
	}
	for _, tc := range cases {
		if got := SummaryLine(tc.results); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestPassfPassesWithADetail(t *testing.T) {
	results, err := (&Runner{}).Run(context.Background(), []Category{{ID: "a", Checks: []Check{
		{ID: "v", Description: "the thing is installed", Hint: "install it", Run: func(context.Context) error { return Passf("version %s", "v1.3.0") }},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	r := results.Results[0]
	if r.Status != StatusSuccess || r.Detail != "version v1.3.0" || r.Error != "" || r.Hint != "" {
		t.Errorf("result %+v", r)
	}
	var buf strings.Builder
	(&TableWriter{Out: &buf}).Write(r)
	if !strings.Contains(buf.String(), "√ the thing is installed: version v1.3.0\n") {
		t.Errorf("table line %q", buf.String())
	}
}
