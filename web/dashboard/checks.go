package dashboard

import (
	"context"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck"
)

// CheckSource runs the `mesh check` checks.
type CheckSource interface {
	Check(ctx context.Context) (check.Results, error)
}

// HealthChecks runs internal/check/healthcheck's categories (those of `mesh check`, without
// --pre) once each, every check bounded by CheckTimeout, with the credentials Options'
// clients carry.
type HealthChecks struct {
	Options      healthcheck.Options
	CheckTimeout time.Duration
}

// Check runs the checks.
func (h *HealthChecks) Check(ctx context.Context) (check.Results, error) {
	opts := h.Options
	opts.Pre = false
	categories, err := healthcheck.New(opts).Categories()
	if err != nil {
		return check.Results{}, err
	}
	timeout := h.CheckTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return (&check.Runner{CheckTimeout: timeout}).Run(ctx, categories)
}

// Statuses the check page shows: the check library's, and skipped.
const statusSkipped = "skipped"

// checkView is one check as the page shows it.
type checkView struct {
	Category, ID, Description string
	Status                    string // success, warning, error or skipped
	Detail, Hint, HintURL     string
}

// viewChecks renders results for the page. A check that failed because the dashboard's
// credentials may not read what it reads is shown as skipped, with that reason: the
// dashboard is read-only and least-privileged, so it does not count as the mesh's failure.
func viewChecks(results check.Results) []checkView {
	out := make([]checkView, 0, len(results.Results))
	for _, r := range results.Results {
		v := checkView{Category: r.Category, ID: r.ID, Description: r.Description, Status: string(r.Status), Detail: r.Detail, Hint: r.Hint, HintURL: r.HintURL}
		if r.Error != "" {
			v.Detail = r.Error
		}
		if r.Status != check.StatusSuccess && forbidden(r.Error) {
			v.Status = statusSkipped
			v.Detail = "not run with the dashboard's read-only credentials: " + r.Error
			v.Hint, v.HintURL = "run mesh check with credentials that may read this", ""
		}
		out = append(out, v)
	}
	return out
}

// forbidden reports whether an error text is the API server's RBAC refusal.
func forbidden(text string) bool {
	return strings.Contains(text, "forbidden") || strings.Contains(text, "Forbidden")
}
