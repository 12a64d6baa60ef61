package stats

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// fakePrometheus answers GET /api/v1/query for the queries it knows (a vector of series,
// each labels and a value) and refuses the others as Prometheus does (400, bad_data).
type fakePrometheus struct {
	t       *testing.T
	answers map[string][]promSeries
	mu      sync.Mutex
	asked   []string // the queries, in no order
	times   []string // their time parameters
}

type promSeries struct {
	labels map[string]string
	value  float64
}

func (f *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query().Get("query")
	f.mu.Lock()
	f.asked = append(f.asked, q)
	f.times = append(f.times, r.URL.Query().Get("time"))
	f.mu.Unlock()
	series, ok := f.answers[q]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": "unexpected query"})
		return
	}
	result := make([]map[string]any, 0, len(series))
	for _, s := range series {
		result = append(result, map[string]any{"metric": s.labels, "value": []any{1767268800.0, jsonFloat(s.value)}})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
}

func jsonFloat(v float64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// series is a series of pod (namespace shop) with the given extra labels (key=value pairs).
func series(pod string, value float64, kv ...string) promSeries {
	l := map[string]string{"namespace": "shop", "pod": pod}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return promSeries{l, value}
}

func startPromService(t *testing.T, clock *fakeClock, prom http.Handler, objects ...runtime.Object) *Service {
	t.Helper()
	srv := httptest.NewServer(prom)
	t.Cleanup(srv.Close)
	s, err := New(Options{Client: fake.NewClientset(objects...), Now: clock.Now, PrometheusURL: srv.URL + "/", PrometheusTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); s.Shutdown() })
	if err := s.Start(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// The PromQL the backend runs: exact text, so a change to it is a visible decision.
func TestPromQueries(t *testing.T) {
	responses, latency, tcpOpen, read, write := PromQueries("shop", time.Minute)
	want := []string{
		`sum by (namespace, pod, direction, client_id, server_id, classification) (increase(response_total{direction=~"inbound|outbound",namespace="shop"}[60s]))`,
		`sum by (namespace, pod, direction, client_id, server_id, le) (increase(response_latency_ms_bucket{direction=~"inbound|outbound",namespace="shop"}[60s]))`,
		`sum by (namespace, pod) (tcp_open_connections{direction="inbound",peer="src",namespace="shop"})`,
		`sum by (namespace, pod) (increase(tcp_read_bytes_total{direction="inbound",peer="src",namespace="shop"}[60s]))`,
		`sum by (namespace, pod) (increase(tcp_write_bytes_total{direction="inbound",peer="src",namespace="shop"}[60s]))`,
	}
	for i, got := range []string{responses, latency, tcpOpen, read, write} {
		if got != want[i] {
			t.Errorf("query %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
	if r, _, _, _, _ := PromQueries("", 90*time.Second); strings.Contains(r, "namespace=") || !strings.Contains(r, "[90s]") {
		t.Errorf("every namespace over 90s: %s", r)
	}
}

// Stat and edges from Prometheus: the same rows the scrapes give, from the queries' answers.
// api-1 and api-2 (deployment api) answered web 90 times (9 failures) and batch 30 times in
// the minute; a plain-text client 6 times; api-1 called db 12 times.
func TestStatAndEdgesFromPrometheus(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	responses, latency, tcpOpen, read, write := PromQueries("shop", time.Minute)
	const (
		web   = "spiffe://cluster.local/ns/shop/sa/web"
		batch = "spiffe://cluster.local/ns/shop/sa/batch"
		db    = "spiffe://cluster.local/ns/shop/sa/db"
		api   = "spiffe://cluster.local/ns/shop/sa/api"
	)
	in := func(pod, client, class string, n float64) promSeries {
		return series(pod, n, "direction", "inbound", "client_id", client, "classification", class)
	}
	bucket := func(pod, dir, peerLabel, peer, le string, n float64) promSeries {
		return series(pod, n, "direction", dir, peerLabel, peer, "le", le)
	}
	fp := &fakePrometheus{t: t, answers: map[string][]promSeries{
		responses: {
			in("api-1", web, "success", 45), in("api-1", web, "failure", 5),
			in("api-2", web, "success", 36), in("api-2", web, "failure", 4),
			in("api-1", batch, "success", 30),
			in("api-2", "", "success", 6),
			series("api-1", 12, "direction", "outbound", "server_id", db, "classification", "success"),
			series("web-1", 81, "direction", "outbound", "server_id", api, "classification", "success"),
			series("web-1", 9, "direction", "outbound", "server_id", api, "classification", "failure"),
			series("gone-1", 1000, "direction", "inbound", "client_id", "", "classification", "success"), // no such pod any more
		},
		latency: {
			// web's 90 answers: 60 within 10 ms, all within 20 ms; batch's 30 all within
			// 100 ms; the plain-text client's 6 within 10 ms.
			bucket("api-1", "inbound", "client_id", web, "10", 30), bucket("api-1", "inbound", "client_id", web, "20", 50), bucket("api-1", "inbound", "client_id", web, "100", 50), bucket("api-1", "inbound", "client_id", web, "+Inf", 50),
			bucket("api-2", "inbound", "client_id", web, "10", 30), bucket("api-2", "inbound", "client_id", web, "20", 40), bucket("api-2", "inbound", "client_id", web, "100", 40), bucket("api-2", "inbound", "client_id", web, "+Inf", 40),
			bucket("api-1", "inbound", "client_id", batch, "10", 0), bucket("api-1", "inbound", "client_id", batch, "20", 0), bucket("api-1", "inbound", "client_id", batch, "100", 30), bucket("api-1", "inbound", "client_id", batch, "+Inf", 30),
			bucket("api-2", "inbound", "client_id", "", "10", 6), bucket("api-2", "inbound", "client_id", "", "20", 6), bucket("api-2", "inbound", "client_id", "", "100", 6), bucket("api-2", "inbound", "client_id", "", "+Inf", 6),
			bucket("api-1", "outbound", "server_id", db, "10", 12), bucket("api-1", "outbound", "server_id", db, "+Inf", 12),
		},
		tcpOpen: {series("api-1", 2), series("api-2", 1)},
		read:    {series("api-1", 6000), series("api-2", 600)},
		write:   {series("api-1", 1200)},
	}}
	s := startPromService(t, clock, fp,
		withSA(deploymentPod("shop", "api", "api-1", true), "api"),
		withSA(deploymentPod("shop", "api", "api-2", true), "api"),
		withSA(deploymentPod("shop", "web", "web-1", true), "web"),
		withSA(deploymentPod("shop", "batch", "batch-1", true), "batch"),
		withSA(deploymentPod("shop", "db", "db-1", true), "db"),
	)
	stat := func(q Query) Row {
		t.Helper()
		q.Resource, q.Namespace, q.Window = ResourceDeployment, "shop", time.Minute
		rows, err := s.Stat(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Name == q.Name {
				return r
			}
		}
		t.Fatalf("no row %s in %+v", q.Name, rows)
		return Row{}
	}
	all := stat(Query{Name: "api"})
	checks := []struct {
		name      string
		got, want float64
	}{
		{"meshed", float64(all.MeshedPods), 2},
		{"rps", val(all.RequestsPerSecond), 126.0 / 60},
		{"success", val(all.SuccessRate), 117.0 / 126},
		{"p50", val(all.LatencyP50Ms), 10 * 63.0 / 66},         // rank 63 of the 66 in (0,10]
		{"p99", val(all.LatencyP99Ms), 20 + 80*(124.74-96)/30}, // rank 124.74 in (20,100]
		{"tcp", val(all.TCPConnections), 3},
		{"read", val(all.ReadBytesPerSecond), 6600.0 / 60},
		{"write", val(all.WriteBytesPerSecond), 20},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("api %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	fromWeb := stat(Query{Name: "api", From: &Ref{Resource: ResourceDeployment, Namespace: "shop", Name: "web"}})
	if !near(val(fromWeb.RequestsPerSecond), 1.5) || !near(val(fromWeb.SuccessRate), 0.9) || fromWeb.TCPConnections != nil || val(fromWeb.LatencyP99Ms) > 20 {
		t.Errorf("api --from deploy/web = %+v, want 1.5 rps, 0.9 success, no TCP, p99 within 20 ms", fromWeb)
	}
	toAPI := stat(Query{Name: "web", To: &Ref{Resource: ResourceDeployment, Namespace: "shop", Name: "api"}})
	if !near(val(toAPI.RequestsPerSecond), 1.5) || !near(val(toAPI.SuccessRate), 0.9) {
		t.Errorf("web --to deploy/api = %+v, want 1.5 rps and 0.9 success", toAPI)
	}
	// A pod Prometheus knows nothing of has no measurements.
	if db := stat(Query{Name: "db"}); db.MeshedPods != 1 || db.RequestsPerSecond != nil {
		t.Errorf("db = %+v, want 1 meshed pod and no measurements", db)
	}

	edges, err := s.Edges(Query{Resource: ResourceDeployment, Namespace: "shop", Name: "api", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	type edge struct {
		src, client string
		secured     bool
		rps, sr     float64
	}
	var got []edge
	for _, e := range edges {
		if e.Dst != "api" || e.DstNamespace != "shop" {
			t.Errorf("edge to %s/%s, want shop/api", e.DstNamespace, e.Dst)
		}
		got = append(got, edge{e.Src, e.ClientID, e.Secured, val(e.RequestsPerSecond), val(e.SuccessRate)})
	}
	want := []edge{{"", "", false, 0.1, 1}, {"batch", batch, true, 0.5, 1}, {"web", web, true, 1.5, 0.9}}
	if len(got) != len(want) {
		t.Fatalf("edges = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.src != w.src || g.client != w.client || g.secured != w.secured || !near(g.rps, w.rps) || !near(g.sr, w.sr) {
			t.Errorf("edge %d = %+v, want %+v", i, g, w)
		}
	}

	// Every query was asked at the service's clock, and only the five known queries.
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for i, q := range fp.asked {
		if fp.times[i] != "1767268800.000" {
			t.Errorf("query %q at time %q, want the clock's 1767268800.000", q, fp.times[i])
		}
		if _, ok := fp.answers[q]; !ok {
			t.Errorf("unexpected query %q", q)
		}
	}
}

// Errors say what went wrong and what to do; the API answers them with 500.
func TestPrometheusErrors(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	pod := deploymentPod("shop", "api", "api-1", true)
	refused := startPromService(t, clock, &fakePrometheus{t: t, answers: map[string][]promSeries{}}, pod)
	_, err := refused.Stat(Query{Resource: ResourceDeployment, Namespace: "shop", Window: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "refused query") || !strings.Contains(err.Error(), "bad_data") {
		t.Errorf("a refused query: err = %v", err)
	}
	notProm := startPromService(t, clock, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html>login</html>"))
	}), pod)
	if _, err := notProm.Edges(Query{Resource: ResourceDeployment, Namespace: "shop", Window: time.Minute}); err == nil || !strings.Contains(err.Error(), "--prometheus-url") {
		t.Errorf("a server that is not Prometheus: err = %v", err)
	}
	hang := startPromService(t, clock, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }), pod)
	hang.prom.timeout = 50 * time.Millisecond
	start := time.Now()
	if _, err := hang.Stat(Query{Resource: ResourcePod, Window: time.Minute}); err == nil || !strings.Contains(err.Error(), "reachable") {
		t.Errorf("a hanging Prometheus: err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a hanging Prometheus held the answer %s although the query timeout is 50ms", d)
	}
	api := httptest.NewServer(refused.Handler())
	t.Cleanup(api.Close)
	resp, err := http.Get(api.URL + APIPath + "?resource=deploy&namespace=shop")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("API status %d for a Prometheus error, want 500", resp.StatusCode)
	}
	for _, bad := range []string{"prometheus:9090", "ftp://x", "http://"} {
		if _, err := New(Options{Client: fake.NewClientset(), PrometheusURL: bad}); err == nil {
			t.Errorf("PrometheusURL %q was accepted", bad)
		}
	}
}
