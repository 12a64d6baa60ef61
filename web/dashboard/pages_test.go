package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/tap"
)

// fullStats is a fake stats service with edges and a tap stream.
type fullStats struct {
	*fakeStats
	edges    []stats.Edge
	edgeErr  error
	tapLines string
	tapQuery url.Values
	tapErr   error
}

func (f *fullStats) Edges(_ context.Context, q url.Values) (*stats.EdgesResponse, error) {
	if f.edgeErr != nil {
		return nil, f.edgeErr
	}
	var out []stats.Edge
	for _, e := range f.edges {
		if (q.Get("namespace") == "" || e.DstNamespace == q.Get("namespace")) && (q.Get("name") == "" || e.Dst == q.Get("name")) {
			out = append(out, e)
		}
	}
	return &stats.EdgesResponse{Resource: q.Get("resource"), Window: q.Get("window"), Edges: out}, nil
}

func (f *fullStats) Tap(_ context.Context, q url.Values) (io.ReadCloser, error) {
	f.tapQuery = q
	if f.tapErr != nil {
		return nil, f.tapErr
	}
	return io.NopCloser(strings.NewReader(f.tapLines)), nil
}

const (
	orderID   = "spiffe://cluster.local/ns/microservices/sa/order-service"
	trafficID = "spiffe://cluster.local/ns/microservices/sa/traffic"
)

// demoFull: traffic calls order-service; order-service calls user-service-v1 and -v2; a
// plain-text client calls order-service.
func demoFull() *fullStats {
	return &fullStats{fakeStats: demoStats(), edges: []stats.Edge{
		{Src: "traffic", SrcNamespace: "microservices", Dst: "order-service", DstNamespace: "microservices", ClientID: trafficID, Secured: true, RequestsPerSecond: f(3.3), SuccessRate: f(1)},
		{Dst: "order-service", DstNamespace: "microservices", RequestsPerSecond: f(0.2), SuccessRate: f(0.5)},
		{Src: "order-service", SrcNamespace: "microservices", Dst: "user-service-v1", DstNamespace: "microservices", ClientID: orderID, Secured: true, RequestsPerSecond: f(9), SuccessRate: f(1)},
		{Src: "order-service", SrcNamespace: "microservices", Dst: "user-service-v2", DstNamespace: "microservices", ClientID: orderID, Secured: true, RequestsPerSecond: f(1), SuccessRate: f(1)},
	}}
}

type fakeRoutes struct {
	routes *WorkloadRoutes
	err    error
	asked  string
}

func (r *fakeRoutes) Routes(_ context.Context, namespace, kind, name string) (*WorkloadRoutes, error) {
	r.asked = namespace + "/" + kind + "/" + name
	return r.routes, r.err
}

type fakeChecks struct {
	results check.Results
	err     error
}

func (c *fakeChecks) Check(context.Context) (check.Results, error) { return c.results, c.err }

func newFullServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func page(t *testing.T, s http.Handler, path string) string {
	t.Helper()
	resp, body := get(t, s, http.MethodGet, path, "localhost")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("%s does not show %q:\n%s", what, want, body)
		}
	}
}

func TestTopologyPage(t *testing.T) {
	src := demoFull()
	s := newFullServer(t, Options{Stats: src})
	body := page(t, s, "/namespaces/microservices/topology")
	mustContain(t, "the topology page", body,
		`<svg id="topology"`,
		`<g class="edge secured" data-from="order-service" data-to="user-service-v1">`,
		`<g class="edge secured" data-from="traffic" data-to="order-service">`,
		`<g class="edge plain" data-from="plain text" data-to="order-service">`,
		`<g class="node" data-name="user-service-v2">`,
		`<tr class="edge" data-from="order-service" data-to="user-service-v2">`,
		"9.0rps", `href="/namespaces/microservices/topology"`, `href="/check"`, `href="/tap?namespace=microservices"`)
	// Every node and arrow lies within the drawing.
	for _, m := range regexp.MustCompile(`(?:x1|x2|cx|x)="(-?[\d.]+)"`).FindAllStringSubmatch(body, -1) {
		var v float64
		_, _ = fmt.Sscan(m[1], &v)
		if v < 0 || v > topoWidth {
			t.Errorf("x coordinate %v outside the drawing", v)
		}
	}
	if n := strings.Count(body, `<g class="node`); n != 5 {
		t.Errorf("%d nodes, want 5 (traffic, plain text, order-service, user-service-v1, -v2)", n)
	}

	src.edgeErr = errors.New("the stats service does not answer")
	mustContain(t, "the topology page of a broken source", page(t, s, "/namespaces/microservices/topology"), `class="error"`, "does not answer")
}

func TestLayoutTopology(t *testing.T) {
	topo := layoutTopology(demoFull().edges, "microservices")
	pos := map[string]topoNode{}
	for _, n := range topo.Nodes {
		pos[n.Name] = n
	}
	for _, e := range topo.Edges {
		a, b := pos[e.Src], pos[e.Dst]
		// The arrow starts at the source's border and ends before the destination's.
		if d := dist(e.X1, e.Y1, a.X, a.Y); d < topoRadius-1 || d > topoRadius+1 {
			t.Errorf("%s -> %s starts %v from its source's centre", e.Src, e.Dst, d)
		}
		if d := dist(e.X2, e.Y2, b.X, b.Y); d < topoRadius || d > topoRadius+6 {
			t.Errorf("%s -> %s ends %v from its destination's centre", e.Src, e.Dst, d)
		}
	}
	if !pos["plain text"].Remote || pos["order-service"].Remote {
		t.Errorf("remote flags: %+v", pos)
	}
	// Another namespace's workloads are named with their namespace.
	other := layoutTopology([]stats.Edge{{Src: "web", SrcNamespace: "front", Dst: "api", DstNamespace: "shop", ClientID: "spiffe://cluster.local/ns/front/sa/web", Secured: true}}, "shop")
	if len(other.Edges) != 1 || other.Edges[0].Src != "front/web" {
		t.Errorf("cross-namespace edge: %+v", other.Edges)
	}
}

func dist(x1, y1, x2, y2 float64) float64 {
	dx, dy := x1-x2, y1-y2
	return sqrt(dx*dx + dy*dy)
}

func sqrt(v float64) float64 {
	r := v
	for range 50 {
		if r == 0 {
			return 0
		}
		r = (r + v/r) / 2
	}
	return r
}

func TestWorkloadPageEdgesAndRoutes(t *testing.T) {
	src := demoFull()
	routes := &fakeRoutes{routes: &WorkloadRoutes{
		Services: []string{"user-service.microservices.svc.cluster.local"},
		Tables: []policy.VirtualHost{{
			Source: "VirtualService microservices/user-service", Hosts: []string{"user-service.microservices.svc.cluster.local"}, Gateways: []string{policy.MeshGateway},
			Routes: []policy.Route{
				{Source: "VirtualService microservices/user-service spec.http[0]", Match: policy.Match{Path: &policy.StringMatch{Kind: policy.MatchPrefix, Value: "/api/users"}, Headers: []policy.HeaderMatch{{Name: "x-canary", Value: policy.StringMatch{Kind: policy.MatchExact, Value: "true"}}}},
					Destinations: []policy.WeightedDestination{{Host: "user-service-v2.microservices.svc.cluster.local", Port: 80, Weight: 1}}},
				{Destinations: []policy.WeightedDestination{
					{Host: "user-service.microservices.svc.cluster.local", Port: 80, Weight: 90},
					{Host: "user-service-v2.microservices.svc.cluster.local", Port: 80, Weight: 10},
				}, Timeout: policy.Duration(3 * time.Second)},
			},
		}},
		Unsupported: []string{"VirtualService microservices/user-service: spec.http[0].mirror: not supported"},
	}}
	s := newFullServer(t, Options{Stats: src, Routes: routes})
	body := page(t, s, "/namespaces/microservices/deployment/order-service")
	in := body[strings.Index(body, `id="inbound"`):strings.Index(body, `id="outbound"`)]
	out := body[strings.Index(body, `id="outbound"`):strings.Index(body, `id="routes"`)]
	mustContain(t, "the inbound edges", in, `data-from="traffic" data-to="order-service"`, `data-from="plain text" data-to="order-service"`, "3.3rps")
	mustContain(t, "the outbound edges", out, `data-from="order-service" data-to="user-service-v1"`, `data-from="order-service" data-to="user-service-v2"`)
	if strings.Contains(out, `data-to="order-service"`) {
		t.Errorf("the outbound edges list an inbound one:\n%s", out)
	}
	rs := body[strings.Index(body, `id="routes"`):]
	mustContain(t, "the routes", rs,
		"<code>user-service.microservices.svc.cluster.local</code>",
		`<h3>VirtualService microservices/user-service</h3>`,
		"path prefix /api/users, header x-canary = true",
		`data-host="user-service.microservices.svc.cluster.local:80" data-subset="" data-weight="90"`, `<span class="pct">90%</span>`, `<span class="pct">10%</span>`, `<span class="pct">100%</span>`,
		"every request", "timeout 3s", "spec.http[0].mirror")
	mustContain(t, "the workload page", body, `href="/tap?namespace=microservices&amp;resource=deployment/order-service"`)
	if routes.asked != "microservices/deployment/order-service" {
		t.Errorf("routes asked for %s", routes.asked)
	}

	routes.err = errors.New(`read deployment microservices/order-service: deployments.apps "order-service" is forbidden`)
	mustContain(t, "routes that cannot be read", page(t, s, "/namespaces/microservices/deployment/order-service"), "is forbidden")
	noRoutes := newFullServer(t, Options{Stats: demoStats()})
	mustContain(t, "a dashboard without edges and routes", page(t, noRoutes, "/namespaces/microservices/deployment/order-service"), "edges are not available", "routes are not available")
}

func TestCheckPage(t *testing.T) {
	checks := &fakeChecks{results: check.Results{Results: []check.Result{
		{Category: "kubernetes-api", ID: "reach", Description: "can reach the API server", Status: check.StatusSuccess},
		{Category: "control-plane", ID: "pods-ready", Description: "the controller pods are ready", Status: check.StatusWarning, Error: "1 of 2 ready", Hint: "wait", HintURL: "https://example.invalid/#x"},
		{Category: "identity", ID: "issuer", Description: "the issuer certificate is valid", Status: check.StatusError, Error: `secrets "lightmesh-issuer" is forbidden: User "jane" cannot get resource "secrets"`},
		{Category: "identity", ID: "anchors", Description: "the trust anchors are valid", Status: check.StatusError, Error: "the anchors expired"},
	}, Skipped: 3}}
	s := newFullServer(t, Options{Stats: demoStats(), Checks: checks})
	body := page(t, s, "/check")
	mustContain(t, "the check page", body,
		`data-id="kubernetes-api-reach" data-status="success"`,
		`data-id="control-plane-pods-ready" data-status="warning"`,
		`data-id="identity-issuer" data-status="skipped"`, "not run with the dashboard&#39;s read-only credentials",
		`data-id="identity-anchors" data-status="error"`, "the anchors expired",
		"1 passed", "1 warnings", "1 failed", "1 skipped", "3 not run after a fatal failure", `<a href="/check" class="active">`)
	checks.err = errors.New("kubernetes-api: no kubeconfig")
	mustContain(t, "a check run that failed", page(t, s, "/check"), `class="error"`, "no kubeconfig")
	mustContain(t, "a dashboard without checks", page(t, newFullServer(t, Options{Stats: demoStats()}), "/check"), "checks are not available")
}

func TestTapPageAndAPI(t *testing.T) {
	src := demoFull()
	src.tapLines = `{"time":"2026-01-01T12:00:00Z","pod":"order-service-1","namespace":"microservices","direction":"inbound","method":"GET","authority":"order-service","path":"/api/orders","status":200,"latencyMs":3.5}
not json
{"streamError":"proxy did not answer","pod":"order-service-2"}

`
	s := newFullServer(t, Options{Stats: src})
	body := page(t, s, "/tap?namespace=microservices&resource=deploy/order-service&max=10&duration=5s&method=get")
	mustContain(t, "the tap page", body, `<table id="tap" class="tap" data-query="`, `value="deploy/order-service"`, `<a href="/tap?namespace=microservices" class="active">`)
	m := regexp.MustCompile(`data-query="([^"]*)"`).FindStringSubmatch(body)
	query, _ := url.ParseQuery(strings.ReplaceAll(m[1], "&amp;", "&"))
	if query.Get("resource") != "deployment/order-service" || query.Get("namespace") != "microservices" || query.Get(tap.ParamMax) != "10" || query.Get(tap.ParamMethod) != "GET" {
		t.Errorf("the page streams %v", query)
	}
	mustContain(t, "the tap page without a resource", page(t, s, "/tap"), `data-query=""`, "Choose a resource")
	mustContain(t, "the tap page with a bad query", page(t, s, "/tap?namespace=microservices&resource=namespace/x"), `class="error"`, "write TYPE or TYPE/NAME")

	// The API passes the stream through, line by line, dropping what is not JSON.
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/api/tap?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tap.ContentType {
		t.Fatalf("api/tap: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"path":"/api/orders"`) || !strings.Contains(lines[1], `"streamError"`) {
		t.Errorf("api/tap streamed:\n%s", got)
	}
	if src.tapQuery.Get("resource") != "deployment/order-service" || src.tapQuery.Get(tap.ParamDuration) != "5s" {
		t.Errorf("the tap source was asked %v", src.tapQuery)
	}
	for _, bad := range []string{"namespace=microservices", "resource=deploy/x", "namespace=microservices&resource=deploy/x&max=0", "namespace=microservices&resource=deploy/x&duration=1h"} {
		if resp, body := get(t, s, http.MethodGet, "/api/tap?"+bad, "localhost"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("api/tap?%s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}
	src.tapErr = errors.New("the tap API refused the query: no pods")
	if resp, body := get(t, s, http.MethodGet, "/api/tap?namespace=microservices&resource=deploy/x", "localhost"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "no pods") {
		t.Errorf("api/tap with a failing source: %d %s", resp.StatusCode, body)
	}
	noTap := newFullServer(t, Options{Stats: demoStats()})
	if resp, _ := get(t, noTap, http.MethodGet, "/api/tap?namespace=microservices&resource=deploy/x", "localhost"); resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("api/tap without a source: %d", resp.StatusCode)
	}
}

// KubeRoutes finds the Services selecting the workload and translates the seed's
// VirtualService with the controller's translation.
func TestKubeRoutes(t *testing.T) {
	labels := map[string]string{"app": "user-service", "version": "v1"}
	client := fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "microservices", Name: "user-service-v1"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "microservices", Name: "user-service"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "user-service"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "microservices", Name: "user-service-v2"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "user-service", "version": "v2"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "microservices", Name: "headless"}},
	)
	vs := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: user-service, namespace: microservices}
spec:
  hosts: [user-service]
  http:
  - route:
    - destination: {host: user-service, port: {number: 80}}
      weight: 90
    - destination: {host: user-service-v2, port: {number: 80}}
      weight: 10
`), &vs.Object); err != nil {
		t.Fatal(err)
	}
	other := vs.DeepCopy()
	other.SetName("orders")
	_ = unstructured.SetNestedStringSlice(other.Object, []string{"order-service"}, "spec", "hosts")
	kinds := map[schema.GroupVersionResource]string{
		{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}:  "VirtualServiceList",
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}: "HTTPRouteList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds, vs, other)
	r := &KubeRoutes{Client: client, Dynamic: dyn}
	got, err := r.Routes(context.Background(), "microservices", stats.ResourceDeployment, "user-service-v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != 1 || got.Services[0] != "user-service.microservices.svc.cluster.local" {
		t.Errorf("services %v, want user-service only (v2 selects version v2)", got.Services)
	}
	if len(got.Tables) != 1 || got.Tables[0].Source != "VirtualService microservices/user-service" {
		t.Fatalf("tables %+v, want the user-service VirtualService only", got.Tables)
	}
	dests := got.Tables[0].Routes[0].Destinations
	if len(dests) != 2 || dests[0].Weight != 90 || dests[1].Host != "user-service-v2.microservices.svc.cluster.local" {
		t.Errorf("destinations %+v", dests)
	}
	if _, err := r.Routes(context.Background(), "microservices", stats.ResourceDeployment, "nothing"); err == nil || !strings.Contains(err.Error(), "nothing") {
		t.Errorf("a missing deployment: %v", err)
	}
}
