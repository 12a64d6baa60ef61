// Package check is the small checker library behind `mesh check`: categories of checks, each
// check a description, a function, a hint (what to do when it fails) and a documentation
// anchor; a Runner that runs them in order, retries failing ones until a deadline (polling
// with an injected Clock), and stops after a failing fatal check; and renderers for the
// results (a table of √ ‼ ×, the failures only, or JSON). The checks lightmesh runs are in
// the subpackage healthcheck.
package check

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DocsURL is the page every check's anchor is on.
const DocsURL = "https://lightmesh.io/checks/"

// Status is the outcome of one check.
type Status string

// The outcomes of a check; the JSON output uses these words.
const (
	StatusSuccess Status = "success"
	StatusWarning Status = "warning"
	StatusError   Status = "error"
)

// Check is one thing to verify.
type Check struct {
	// ID names the check within its category; the documentation anchor is
	// #<category>-<id>.
	ID string
	// Description says what holds when the check passes ("the controller pods are ready").
	Description string
	// Hint says what to do when it fails.
	Hint string
	// Fatal stops the run when the check fails: what follows could only fail too.
	Fatal bool
	// Run returns nil when the check passes, an error made with Warn or Warnf for a warning,
	// and any other error for a failure.
	Run func(ctx context.Context) error
}

// Category is a named, ordered list of checks.
type Category struct {
	// ID is the category's name in the output and the first part of its checks' anchors.
	ID     string
	Checks []Check
}

// Warning is a check error that does not fail the run.
type Warning struct{ Err error }

func (w *Warning) Error() string { return w.Err.Error() }
func (w *Warning) Unwrap() error { return w.Err }

// Warn marks err as a warning.
func Warn(err error) error {
	if err == nil {
		return nil
	}
	return &Warning{Err: err}
}

// Warnf returns a warning with a formatted message.
func Warnf(format string, args ...any) error {
	return &Warning{Err: fmt.Errorf(format, args...)}
}

// Info is a check error that passes: the check succeeded and has something to say (a
// version found, say), shown after its description.
type Info struct{ Detail string }

func (i *Info) Error() string { return i.Detail }

// Passf passes a check with a formatted detail.
func Passf(format string, args ...any) error {
	return &Info{Detail: fmt.Sprintf(format, args...)}
}

// Result is the outcome of one check as the renderers show it.
type Result struct {
	Category    string `json:"-"`
	ID          string `json:"id"`
	Description string `json:"description"`
	Status      Status `json:"result"`
	// Detail is what a passing check found (see Passf).
	Detail string `json:"detail,omitempty"`
	// Error is the failure or warning; empty on success.
	Error string `json:"error,omitempty"`
	// Hint and HintURL are set for warnings and failures.
	Hint    string `json:"hint,omitempty"`
	HintURL string `json:"hintURL,omitempty"`
}

// Anchor returns the documentation address of the check id of category.
func Anchor(category, id string) string { return DocsURL + "#" + category + "-" + id }

// Results are the outcomes of a run.
type Results struct {
	Results []Result
	// Skipped counts the checks not run because a fatal check failed.
	Skipped int
}

// Count returns how many results have status s.
func (r Results) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Success reports whether no check failed (warnings are fine) and none was skipped.
func (r Results) Success() bool { return r.Count(StatusError) == 0 && r.Skipped == 0 }

// Clock tells the time and waits; tests use a FakeClock.
type Clock interface {
	Now() time.Time
	// After delivers the time on the channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultInterval is how often a failing check is re-run while waiting.
const DefaultInterval = 2 * time.Second

// DefaultCheckTimeout bounds one run of one check.
const DefaultCheckTimeout = 30 * time.Second

// Runner runs categories of checks in order.
type Runner struct {
	// Wait is how long failing checks are re-run until they pass; 0 runs each check once.
	// The deadline is counted from the start of the run.
	Wait time.Duration
	// Interval is the pause between runs of a failing check (DefaultInterval when 0).
	Interval time.Duration
	// CheckTimeout bounds each run of a check (DefaultCheckTimeout when 0).
	CheckTimeout time.Duration
	// Clock is the time (SystemClock when nil).
	Clock Clock
	// OnResult, when set, is called with each result as soon as it is known.
	OnResult func(Result)
	// OnRetry, when set, is called the first time a check fails and will be re-run.
	OnRetry func(c Check, err error)
}

// Run runs the checks of categories in order. It returns early with ctx's error when ctx
// ends; the results so far are returned with it.
func (r *Runner) Run(ctx context.Context, categories []Category) (Results, error) {
	clock := r.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	deadline := clock.Now().Add(r.Wait)
	var results Results
	for ci, category := range categories {
		for i, c := range category.Checks {
			res, err := r.runOne(ctx, clock, interval, deadline, category.ID, c)
			if err != nil {
				return results, err
			}
			results.Results = append(results.Results, res)
			if r.OnResult != nil {
				r.OnResult(res)
			}
			if res.Status == StatusError && c.Fatal {
				results.Skipped = len(category.Checks) - i - 1
				for _, rest := range categories[ci+1:] {
					results.Skipped += len(rest.Checks)
				}
				return results, nil
			}
		}
	}
	return results, nil
}

func (r *Runner) runOne(ctx context.Context, clock Clock, interval time.Duration, deadline time.Time, category string, c Check) (Result, error) {
	timeout := r.CheckTimeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	res := Result{Category: category, ID: c.ID, Description: c.Description}
	retried := false
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := runWithTimeout(ctx, timeout, c.Run)
		if info, ok := errors.AsType[*Info](err); ok {
			res.Status, res.Detail = StatusSuccess, info.Detail
			return res, nil
		}
		if err == nil {
			res.Status = StatusSuccess
			return res, nil
		}
		res.Error = err.Error()
		res.Hint = c.Hint
		res.HintURL = Anchor(category, c.ID)
		if _, ok := errors.AsType[*Warning](err); ok {
			res.Status = StatusWarning
			return res, nil
		}
		res.Status = StatusError
		if !clock.Now().Add(interval).Before(deadline) {
			return res, nil
		}
		if !retried && r.OnRetry != nil {
			r.OnRetry(c, err)
		}
		retried = true
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-clock.After(interval):
		}
	}
}

func runWithTimeout(ctx context.Context, timeout time.Duration, run func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return run(ctx)
}
