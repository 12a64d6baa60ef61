package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

func f(v float64) *float64 { return &v }

var statRows = []stats.Row{
	{Namespace: "shop", Resource: "deployment", Name: "echo", MeshedPods: 2, TotalPods: 2,
		SuccessRate: f(0.875), RequestsPerSecond: f(0.8), LatencyP50Ms: f(5), LatencyP95Ms: f(19), LatencyP99Ms: f(19.8),
		TCPConnections: f(2), ReadBytesPerSecond: f(100), WriteBytesPerSecond: f(50)},
	{Namespace: "shop", Resource: "deployment", Name: "plain", MeshedPods: 0, TotalPods: 1},
	{Namespace: "web", Resource: "deployment", Name: "frontend-long-name", MeshedPods: 3, TotalPods: 3,
		SuccessRate: f(1), RequestsPerSecond: f(12.345), LatencyP50Ms: f(1.4), LatencyP95Ms: f(230), LatencyP99Ms: f(4800),
		TCPConnections: f(17), ReadBytesPerSecond: f(2048.25), WriteBytesPerSecond: f(0)},
}

// fakeAPIServer answers the service-proxy path of the stats service in namespace lightmesh
// with rows, recording the queries it got.
func fakeAPIServer(t *testing.T, rows []stats.Row, queries *[]url.Values) func() (rest.Interface, string, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/lightmesh/services/stats:8085/proxy/api/v1/stat" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"services \"stats\" not found"}`))
			return
		}
		*queries = append(*queries, r.URL.Query())
		if r.URL.Query().Get("window") == "14m0s" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "window too long"})
			return
		}
		_ = json.NewEncoder(w).Encode(stats.Response{Resource: r.URL.Query().Get("resource"), Window: r.URL.Query().Get("window"), Rows: rows})
	}))
	t.Cleanup(srv.Close)
	return func() (rest.Interface, string, error) {
		client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
		if err != nil {
			return nil, "", err
		}
		return client.CoreV1().RESTClient(), "shop", nil
	}
}

func runStatArgs(t *testing.T, newClient func() (rest.Interface, string, error), args ...string) (string, string, error) {
	t.Helper()
	opts := newStatOptions()
	opts.newClient = newClient
	c := newStatCmdWith(opts)
	var out, errOut bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&errOut)
	c.SetArgs(args)
	c.SilenceUsage = true
	err := c.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestStatGolden(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		rows  []stats.Row
		query url.Values
	}{
		{"stat-deploy.table", []string{"deploy"}, statRows[:2], url.Values{"resource": {"deployment"}, "namespace": {"shop"}, "window": {"1m0s"}}},
		{"stat-all.table", []string{"deployment", "-A"}, statRows, url.Values{"resource": {"deployment"}, "window": {"1m0s"}}},
		{"stat-one.wide", []string{"deploy", "frontend-long-name", "-n", "web", "-t", "5m", "-o", "wide"}, statRows[2:], url.Values{"resource": {"deployment"}, "namespace": {"web"}, "name": {"frontend-long-name"}, "window": {"5m0s"}}},
		{"stat-deploy.json", []string{"deploy", "-o", "json"}, statRows[:2], url.Values{"resource": {"deployment"}, "namespace": {"shop"}, "window": {"1m0s"}}},
		{"stat-from.table", []string{"deploy", "echo", "--from", "deploy/web", "--from-namespace", "front"}, statRows[:1], url.Values{"resource": {"deployment"}, "namespace": {"shop"}, "name": {"echo"}, "window": {"1m0s"}, "from": {"deploy/web"}, "from_namespace": {"front"}}},
		{"stat-to.table", []string{"deploy", "--to", "deployment"}, statRows[:1], url.Values{"resource": {"deployment"}, "namespace": {"shop"}, "window": {"1m0s"}, "to": {"deployment"}}},
		{"stat-ns.table", []string{"ns", "-n", "ignored"}, []stats.Row{{Resource: "namespace", Name: "shop", MeshedPods: 2, TotalPods: 3, SuccessRate: f(0.5), RequestsPerSecond: f(1), TCPConnections: f(0)}}, url.Values{"resource": {"namespace"}, "window": {"1m0s"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var queries []url.Values
			out, errOut, err := runStatArgs(t, fakeAPIServer(t, tc.rows, &queries), tc.args...)
			if err != nil {
				t.Fatalf("mesh stat %s: %v (stderr %q)", strings.Join(tc.args, " "), err, errOut)
			}
			if len(queries) != 1 || queries[0].Encode() != tc.query.Encode() {
				t.Errorf("queries = %v, want %v", queries, tc.query)
			}
			golden.Assert(t, tc.name, []byte(out))
		})
	}
}

func TestStatErrors(t *testing.T) {
	var queries []url.Values
	client := fakeAPIServer(t, nil, &queries)
	_, errOut, err := runStatArgs(t, client, "pod")
	if err != nil || errOut != "No resources found.\n" {
		t.Errorf("no rows: err %v, stderr %q", err, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service"}, `unknown resource type "service"`},
		{[]string{"deploy", "-o", "yaml"}, "--output"},
		{[]string{"deploy", "-t", "1s"}, "--time-window"},
		{[]string{"deploy", "-n", "a", "-A"}, "exclude each other"},
		{[]string{"deploy", "--control-plane-namespace", "mesh"}, "no stats service in namespace mesh"},
		{[]string{"deploy", "-t", "14m"}, "the stats service refused the query: window too long"},
		{[]string{"deploy", "--from", "deploy/a", "--to", "deploy/b"}, "--from and --to exclude each other"},
		{[]string{"deploy", "--from", "svc/a"}, `--from "svc/a": write TYPE or TYPE/NAME`},
		{[]string{"deploy", "--to", "ns/a"}, `--to "ns/a"`},
	} {
		if _, _, err := runStatArgs(t, client, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mesh stat %s: err %v, want it to contain %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
