package stats

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// deploymentPod is a running pod of Deployment deploy (through ReplicaSet deploy-<hash>),
// meshed or not.
func deploymentPod(ns, deploy, name string, meshed bool) *corev1.Pod {
	const hash = "7d9f8b6c5"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(name + "-uid"),
			Labels:          map[string]string{"app": deploy, "pod-template-hash": hash},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: deploy + "-" + hash}},
		},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	if meshed {
		always := corev1.ContainerRestartPolicyAlways
		pod.Labels[inject.LabelControlPlaneNS] = "lightmesh"
		pod.Spec.InitContainers = []corev1.Container{{Name: inject.ProxyContainerName, RestartPolicy: &always}}
	}
	return pod
}

// proxies serve the real proxy metrics registry of each pod, by pod name.
type proxies struct {
	regs    map[string]*metrics.Registry
	servers map[string]*httptest.Server
}

func newProxies(t *testing.T, names ...string) *proxies {
	p := &proxies{regs: map[string]*metrics.Registry{}, servers: map[string]*httptest.Server{}}
	for _, n := range names {
		reg := metrics.New()
		srv := httptest.NewServer(reg.Handler())
		t.Cleanup(srv.Close)
		p.regs[n], p.servers[n] = reg, srv
	}
	return p
}

func (p *proxies) url(pod *corev1.Pod) string {
	if srv, ok := p.servers[pod.Name]; ok {
		return srv.URL + "/metrics"
	}
	return "http://127.0.0.1:1/metrics" // nothing listens
}

var inboundLabels = metrics.Labels{Direction: "inbound", Authority: "echo.shop.svc.cluster.local", TLS: metrics.TLSTrue, ClientID: "spiffe://cluster.local/ns/shop/sa/client"}

// serve records n inbound responses of pod's proxy, failing ones with code 500.
func (p *proxies) serve(pod string, n int, failed int, elapsed time.Duration) {
	rt := p.regs[pod].Route(inboundLabels)
	for i := range n {
		rt.Request()
		if i < failed {
			rt.Response(500, true, elapsed)
		} else {
			rt.Response(200, false, elapsed)
		}
	}
	// Outbound traffic is not the resource's own and must not count.
	out := p.regs[pod].Route(metrics.Labels{Direction: "outbound", Authority: "db:5432", TLS: metrics.TLSTrue})
	for range 100 {
		out.Request()
		out.Response(200, false, time.Second)
	}
}

func startService(t *testing.T, clock *fakeClock, p *proxies, objects ...runtime.Object) *Service {
	t.Helper()
	s, err := New(Options{
		Client: fake.NewClientset(objects...), Now: clock.Now, MetricsURL: p.url,
		ScrapeTimeout: 2 * time.Second, Concurrency: 2,
	})
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

func val(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func TestScrapeAndAggregateByDeployment(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	p := newProxies(t, "echo-a", "echo-b")
	s := startService(t, clock, p,
		deploymentPod("shop", "echo", "echo-a", true),
		deploymentPod("shop", "echo", "echo-b", true),
		deploymentPod("shop", "plain", "plain-a", false),
		deploymentPod("other", "echo", "echo-x", true), // meshed, but its proxy does not answer
	)
	ctx := context.Background()
	s.ScrapeOnce(ctx)
	p.serve("echo-a", 4, 0, 5*time.Millisecond)  // le=5
	p.serve("echo-b", 4, 1, 15*time.Millisecond) // le=20
	tcp := p.regs["echo-a"].TCP(metrics.TCPLabels{Labels: inboundLabels, Peer: "src"})
	tcp.Open()
	tcp.Open()
	tcp.Read(1000)
	tcp.Write(500)
	clock.Advance(10 * time.Second)
	s.ScrapeOnce(ctx)

	rows, err := s.Stat(Query{Resource: ResourceDeployment, Namespace: "shop", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "echo" || rows[1].Name != "plain" {
		t.Fatalf("rows = %+v, want echo and plain", rows)
	}
	echo, plain := rows[0], rows[1]
	if echo.MeshedPods != 2 || echo.TotalPods != 2 {
		t.Errorf("echo meshed %d/%d, want 2/2", echo.MeshedPods, echo.TotalPods)
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"success", val(echo.SuccessRate), 7.0 / 8},
		{"rps", val(echo.RequestsPerSecond), 0.8},
		// merged: le5=4, le10=4, le20=8, +Inf=8.
		{"p50", val(echo.LatencyP50Ms), 5},    // rank 4: all of (4,5]
		{"p95", val(echo.LatencyP95Ms), 19},   // rank 7.6: 3.6 of 4 in (10,20]
		{"p99", val(echo.LatencyP99Ms), 19.8}, // rank 7.92
		{"tcp", val(echo.TCPConnections), 2},
		{"read", val(echo.ReadBytesPerSecond), 100},
		{"write", val(echo.WriteBytesPerSecond), 50},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("echo %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if plain.MeshedPods != 0 || plain.TotalPods != 1 || plain.RequestsPerSecond != nil || plain.SuccessRate != nil {
		t.Errorf("plain = %+v, want 0/1 meshed and no measurements", plain)
	}

	// Across namespaces, the unreachable proxy's deployment has no measurements.
	rows, err = s.Stat(Query{Resource: ResourceDeployment, Name: "echo", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Namespace != "other" || rows[0].RequestsPerSecond != nil || rows[1].Namespace != "shop" {
		t.Errorf("rows for echo in every namespace = %+v", rows)
	}

	// By pod and by namespace.
	rows, _ = s.Stat(Query{Resource: ResourcePod, Namespace: "shop", Window: time.Minute})
	if len(rows) != 3 || rows[0].Name != "echo-a" || val(rows[0].RequestsPerSecond) != 0.4 {
		t.Errorf("pod rows = %+v", rows)
	}
	rows, _ = s.Stat(Query{Resource: ResourceNamespace, Window: time.Minute})
	if len(rows) != 2 || rows[1].Name != "shop" || rows[1].MeshedPods != 2 || rows[1].TotalPods != 3 {
		t.Errorf("namespace rows = %+v", rows)
	}
}

// A proxy that does not answer costs one scrape timeout, not the whole round.
func TestScrapeTimeout(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	s, err := New(Options{
		Client: fake.NewClientset(deploymentPod("shop", "echo", "echo-a", true)), Now: clock.Now,
		MetricsURL: func(*corev1.Pod) string { return hang.URL }, ScrapeTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Shutdown() }()
	if err := s.Start(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.ScrapeOnce(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ScrapeOnce did not return within 10s although the scrape timeout is 50ms")
	}
	if len(s.lastErrs) != 1 {
		t.Errorf("scrape errors = %v, want one", s.lastErrs)
	}
}

func TestAPI(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	p := newProxies(t, "echo-a")
	s := startService(t, clock, p, deploymentPod("shop", "echo", "echo-a", true))
	s.ScrapeOnce(context.Background())
	p.serve("echo-a", 10, 0, time.Millisecond)
	clock.Advance(10 * time.Second)
	s.ScrapeOnce(context.Background())
	api := httptest.NewServer(s.Handler())
	t.Cleanup(api.Close)

	get := func(query string) (int, []byte) {
		resp, err := http.Get(api.URL + APIPath + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var body json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	code, body := get("resource=deploy&namespace=shop&window=30s")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Resource != "deployment" || r.Window != "30s" || len(r.Rows) != 1 || val(r.Rows[0].RequestsPerSecond) != 1 || val(r.Rows[0].SuccessRate) != 1 {
		t.Errorf("response = %s", body)
	}
	for _, bad := range []string{"resource=service", "resource=pod&window=1s", "resource=pod&window=1h", "resource=pod&window=soon"} {
		if code, body := get(bad); code != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", bad, code, body)
		}
	}
}
