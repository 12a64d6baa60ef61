package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/internal/tap"
)

// Output formats of mesh top.
const (
	topOutputTable = "table"
	topOutputJSON  = "json"
	// topRefresh is how often the table is redrawn in a terminal.
	topRefresh = time.Second
)

// topOptions are the arguments and flags of `mesh top`: a tap, aggregated.
type topOptions struct {
	tapOptions
	rows int
	// isTerminal says whether out is a terminal (the table is then redrawn every refresh).
	isTerminal func(io.Writer) bool
	refresh    time.Duration
}

func newTopOptions() *topOptions {
	o := &topOptions{tapOptions: *newTapOptions(), rows: 20, isTerminal: isTerminal, refresh: topRefresh}
	o.max = tap.MaxMax
	o.output = topOutputTable
	return o
}

func newTopCmd(kube *kubeOptions) *cobra.Command {
	opts := newTopOptions()
	opts.newClient = func() (rest.Interface, string, error) { return streamClient(kube) }
	return newTopCmdWith(opts)
}

// newTopCmdWith returns the top command filling opts; tests give their own client.
func newTopCmdWith(opts *topOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top RESOURCE [NAME]",
		Short: "Show the busiest paths of a resource's meshed pods, live",
		Long: `Tap the requests of a resource's meshed pods (as mesh tap does) and show the busiest
(method, path) pairs: how many requests, their success rate, and the best, worst and last
latency. In a terminal the table is redrawn every second until --duration (or --max
requests) ends; otherwise, or with -o json, one table is printed at the end.

RESOURCE is TYPE/NAME or TYPE, TYPE one of deployment (deploy), statefulset (sts),
daemonset (ds), job, pod (po) or namespace (ns). You need permission to get services/proxy
in the control plane's namespace.`,
		Example: `  # the busiest paths of deployment web over 30 seconds
  mesh top deploy/web -n shop

  # what web's pods call, for 10 seconds, as JSON
  mesh top deploy web -n shop --direction outbound --duration 10s -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.setArgs(args); err != nil {
				return err
			}
			if err := opts.validate(); err != nil {
				return err
			}
			return runTop(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	opts.addFlags(cmd.Flags(), "output format: table or json")
	cmd.Flags().IntVar(&opts.rows, "rows", opts.rows, "how many of the busiest paths to show (0: all)")
	return cmd
}

func (o *topOptions) validate() error {
	if o.output != topOutputTable && o.output != topOutputJSON {
		return fmt.Errorf("--output %q: use table or json", o.output)
	}
	if o.rows < 0 {
		return fmt.Errorf("--rows %d: give 0 (all) or more", o.rows)
	}
	tapOpts := o.tapOptions
	tapOpts.output = tapOutputText
	return tapOpts.validate()
}

// TopRow is one (method, path) of mesh top: its -o json form is stable.
type TopRow struct {
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Count       int     `json:"count"`
	Successes   int     `json:"successes"`
	SuccessRate float64 `json:"successRate"`
	BestMs      float64 `json:"bestMs"`
	WorstMs     float64 `json:"worstMs"`
	LastMs      float64 `json:"lastMs"`
}

// topTable aggregates events by (method, path).
type topTable struct {
	mu    sync.Mutex
	rows  map[[2]string]*TopRow
	total int
}

func newTopTable() *topTable { return &topTable{rows: map[[2]string]*TopRow{}} }

// add counts ev: a success is a response below 500 that the proxy did not have to make
// itself (and, for gRPC, a grpc-status of 0).
func (t *topTable) add(ev tap.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := [2]string{ev.Method, ev.Path}
	r, ok := t.rows[key]
	if !ok {
		r = &TopRow{Method: ev.Method, Path: ev.Path, BestMs: ev.LatencyMs, WorstMs: ev.LatencyMs}
		t.rows[key] = r
	}
	r.Count++
	t.total++
	if ev.Status != 0 && ev.Status < 500 && ev.Error == "" {
		r.Successes++
	}
	r.SuccessRate = float64(r.Successes) / float64(r.Count)
	r.BestMs = min(r.BestMs, ev.LatencyMs)
	r.WorstMs = max(r.WorstMs, ev.LatencyMs)
	r.LastMs = ev.LatencyMs
}

// top returns the n busiest rows (all when n is 0): most requests first, then by path and
// method.
func (t *topTable) top(n int) []TopRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	rows := make([]TopRow, 0, len(t.rows))
	for _, r := range t.rows {
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Count != rows[j].Count {
			return rows[i].Count > rows[j].Count
		}
		if rows[i].Path != rows[j].Path {
			return rows[i].Path < rows[j].Path
		}
		return rows[i].Method < rows[j].Method
	})
	if n > 0 && len(rows) > n {
		rows = rows[:n]
	}
	return rows
}

// writeTopTable writes rows as a table.
func writeTopTable(out io.Writer, rows []TopRow) error {
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	_, _ = fmt.Fprintln(tw, "METHOD\tPATH\tCOUNT\tSUCCESS\tBEST\tWORST\tLAST")
	for _, r := range rows {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f%%\t%s\t%s\t%s\n", r.Method, r.Path, r.Count, 100*r.SuccessRate,
			latency(r.BestMs), latency(r.WorstMs), latency(r.LastMs))
	}
	return tw.Flush()
}

// latency renders milliseconds as Linkerd's top does: µs below 1 ms, ms below 1 s, else s.
func latency(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%dµs", int64(ms*1000+0.5))
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// clearScreen moves to the top left corner and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

// runTop taps and aggregates; in a terminal (table output) it redraws every refresh.
func runTop(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *topOptions) error {
	table := newTopTable()
	live := opts.output == topOutputTable && opts.isTerminal(out)
	var errs []tap.StreamError
	var mu sync.Mutex
	draw := func(final bool) {
		if !live {
			return
		}
		var b strings.Builder
		b.WriteString(clearScreen)
		state := "tapping"
		if final {
			state = "done"
		}
		resource := opts.resource
		if opts.name != "" {
			resource += "/" + opts.name
		}
		fmt.Fprintf(&b, "mesh top %s (%s, %d requests)\n\n", resource, state, table.total)
		_ = writeTopTable(&b, table.top(opts.rows))
		mu.Lock()
		for _, e := range errs {
			fmt.Fprintf(&b, "\ntap: pod %s: %s", orDash(e.Pod), e.StreamError)
		}
		mu.Unlock()
		_, _ = io.WriteString(out, b.String())
	}
	stopDraw := make(chan struct{})
	drawn := make(chan struct{})
	go func() {
		defer close(drawn)
		if !live {
			return
		}
		ticker := time.NewTicker(opts.refresh)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				draw(false)
			case <-stopDraw:
				return
			}
		}
	}()
	err := streamTap(ctx, &opts.tapOptions, func(ev tap.Event) error {
		table.add(ev)
		return nil
	}, func(e tap.StreamError) {
		if live {
			mu.Lock()
			errs = append(errs, e)
			mu.Unlock()
			return
		}
		writeStreamError(errOut, e)
	})
	close(stopDraw)
	<-drawn
	if err != nil {
		return err
	}
	if live {
		draw(true)
		return nil
	}
	rows := table.top(opts.rows)
	if opts.output == topOutputJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(errOut, "No requests seen within %s.\n", opts.duration)
		return err
	}
	return writeTopTable(out, rows)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
