package dashboard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/controller/stats"
)

// fakeStats answers from fixed rows and records the queries.
type fakeStats struct {
	rows    map[string][]stats.Row // by resource
	err     error
	queries []url.Values
}

func (f *fakeStats) Stat(_ context.Context, q url.Values) (*stats.Response, error) {
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var rows []stats.Row
	for _, r := range f.rows[q.Get("resource")] {
		if (q.Get("namespace") == "" || r.Namespace == q.Get("namespace")) && (q.Get("name") == "" || r.Name == q.Get("name")) {
			rows = append(rows, r)
		}
	}
	return &stats.Response{Resource: q.Get("resource"), Window: q.Get("window"), Rows: rows}, nil
}

func f(v float64) *float64 { return &v }

func demoStats() *fakeStats {
	return &fakeStats{rows: map[string][]stats.Row{
		"namespace": {{Resource: "namespace", Name: "microservices", MeshedPods: 4, TotalPods: 4, SuccessRate: f(0.9), RequestsPerSecond: f(17.3)}},
		"deployment": {
			{Namespace: "microservices", Resource: "deployment", Name: "order-service", MeshedPods: 1, TotalPods: 1, SuccessRate: f(1), RequestsPerSecond: f(6.7), LatencyP50Ms: f(3), LatencyP95Ms: f(4), LatencyP99Ms: f(23), TCPConnections: f(2)},
			{Namespace: "microservices", Resource: "deployment", Name: "user-service-v1", MeshedPods: 1, TotalPods: 1, SuccessRate: f(0.5), RequestsPerSecond: f(10.25)},
		},
	}}
}

// answer is what a handler answered.
type answer struct {
	StatusCode int
	Header     http.Header
}

func get(t *testing.T, h http.Handler, method, target, host string) (answer, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if host != "" {
		r.Host = host
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return answer{StatusCode: w.Code, Header: w.Header()}, w.Body.String()
}

func newTestServer(t *testing.T, src StatSource, allowed ...string) *Server {
	t.Helper()
	s, err := New(Options{Stats: src, AllowedHosts: allowed})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPagesShowTheStats(t *testing.T) {
	src := demoStats()
	s := newTestServer(t, src)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{`<a href="/namespaces/microservices">microservices</a>`, "4/4", "90.00%", "17.3rps"}},
		{"/namespaces/microservices", []string{"Deployments", `href="/namespaces/microservices/deployment/order-service"`, "6.7rps", "23ms", "user-service-v1", "50.00%", "10.2rps"}},
		{"/namespaces/microservices/deploy/order-service", []string{"deployment microservices/order-service", "Golden metrics", "6.7rps", `id="chart"`, "window 1m0s"}},
	} {
		resp, body := get(t, s, http.MethodGet, tc.path, "localhost:50750")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, resp.StatusCode, body)
		}
		for _, want := range tc.want {
			if !strings.Contains(body, want) {
				t.Errorf("%s does not show %q:\n%s", tc.path, want, body)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	// The workload page asked for that one deployment only.
	last := src.queries[len(src.queries)-1]
	if last.Get("resource") != "deployment" || last.Get("name") != "order-service" || last.Get("namespace") != "microservices" {
		t.Errorf("the workload page queried %v", last)
	}
	// A namespace page leaves out the kinds without rows.
	_, body := get(t, s, http.MethodGet, "/namespaces/microservices", "localhost")
	if strings.Contains(body, "StatefulSets") {
		t.Error("the namespace page shows an empty StatefulSets table")
	}
}

func TestHostMethodAndErrors(t *testing.T) {
	s := newTestServer(t, demoStats(), "mesh-web.lightmesh.svc")
	for _, tc := range []struct {
		method, path, host string
		want               int
	}{
		{http.MethodGet, "/", "evil.example:8080", http.StatusForbidden},
		{http.MethodGet, "/", "127.0.0.1:50750", http.StatusOK},
		{http.MethodGet, "/", "[::1]:50750", http.StatusOK},
		{http.MethodGet, "/", "mesh-web.lightmesh.svc:8084", http.StatusOK},
		{http.MethodPost, "/api/stat?resource=deployment", "localhost", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/stat?resource=widgets", "localhost", http.StatusBadRequest},
		{http.MethodGet, "/api/stat?resource=deployment&window=1s", "localhost", http.StatusBadRequest},
		{http.MethodGet, "/namespaces/x/widget/y", "localhost", http.StatusNotFound},
		{http.MethodGet, "/static/app.js", "localhost", http.StatusOK},
		{http.MethodGet, "/static/nothing.js", "localhost", http.StatusNotFound},
	} {
		resp, body := get(t, s, tc.method, tc.path, tc.host)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s (Host %s): %d, want %d: %s", tc.method, tc.path, tc.host, resp.StatusCode, tc.want, body)
		}
	}

	resp, body := get(t, s, http.MethodGet, "/api/stat?resource=deployment&namespace=microservices", "localhost")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name":"order-service"`) {
		t.Errorf("api/stat: %d %s", resp.StatusCode, body)
	}

	broken := newTestServer(t, &fakeStats{err: errors.New("the stats service does not answer")})
	if resp, body := get(t, broken, http.MethodGet, "/api/stat?resource=deployment", "localhost"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "does not answer") {
		t.Errorf("api/stat with a broken source: %d %s", resp.StatusCode, body)
	}
	if _, body := get(t, broken, http.MethodGet, "/", "localhost"); !strings.Contains(body, `class="error"`) || !strings.Contains(body, "does not answer") {
		t.Errorf("a page with a broken source does not say why:\n%s", body)
	}
}

func TestHTTPStats(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != stats.APIPath {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("resource") == "bad" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"resource \"bad\": give deployment"}`)
			return
		}
		_, _ = io.WriteString(w, `{"resource":"deployment","window":"1m0s","rows":[{"name":"web","resource":"deployment","meshedPods":1,"totalPods":1}]}`)
	}))
	defer api.Close()
	src := &HTTPStats{Base: api.URL}
	resp, err := src.Stat(context.Background(), url.Values{"resource": {"deployment"}})
	if err != nil || len(resp.Rows) != 1 || resp.Rows[0].Name != "web" {
		t.Fatalf("%+v %v", resp, err)
	}
	if _, err := src.Stat(context.Background(), url.Values{"resource": {"bad"}}); err == nil || !strings.Contains(err.Error(), "give deployment") {
		t.Errorf("a refused query: %v", err)
	}
}

func TestNewChecksOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("no stats source accepted")
	}
	if _, err := New(Options{Stats: demoStats(), Window: 1}); err == nil {
		t.Error("a window below the minimum accepted")
	}
}
