package cmd

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/web/dashboard"
)

type oneRowStats struct{}

func (oneRowStats) Stat(_ context.Context, q url.Values) (*stats.Response, error) {
	rps := 12.5
	return &stats.Response{Resource: q.Get("resource"), Rows: []stats.Row{{Namespace: "shop", Resource: q.Get("resource"), Name: "web", MeshedPods: 2, TotalPods: 2, RequestsPerSecond: &rps}}}, nil
}

func TestDashboardServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	opts := newDashboardOptions()
	opts.port = 0
	go func() { done <- runDashboard(ctx, pw, io.Discard, opts, dashboard.Options{Stats: oneRowStats{}}) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "http://localhost:") {
		t.Fatalf("printed %q, want the local URL", line)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/namespaces/shop")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "12.5rps") || !strings.Contains(string(body), "2/2") {
		t.Errorf("the namespace page: %d\n%s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dashboard did not stop when cancelled")
	}
}

func TestDashboardOptionsValidate(t *testing.T) {
	for _, change := range []func(*dashboardOptions){
		func(o *dashboardOptions) { o.port = 70000 },
		func(o *dashboardOptions) { o.address = "localhost" },
	} {
		o := newDashboardOptions()
		change(o)
		if o.validate() == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
