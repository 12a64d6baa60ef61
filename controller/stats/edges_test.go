package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/lightmesh/lightmesh/proxy/metrics"
)

func withSA(pod *corev1.Pod, sa string) *corev1.Pod {
	pod.Spec.ServiceAccountName = sa
	return pod
}

// TestFromToAndEdges: web (sa web) and batch (sa batch) call api; api answers web 9 times
// (1 failure) and batch 3 times; a plain-text client twice. api's own outbound calls go to
// db (sa db).
func TestFromToAndEdges(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	p := newProxies(t, "api-1", "web-1")
	s := startService(t, clock, p,
		withSA(deploymentPod("shop", "api", "api-1", true), "api"),
		withSA(deploymentPod("shop", "web", "web-1", true), "web"),
		withSA(deploymentPod("shop", "batch", "batch-1", true), "batch"),
		withSA(deploymentPod("shop", "db", "db-1", true), "db"),
	)
	ctx := context.Background()
	s.ScrapeOnce(ctx)
	respond := func(pod string, labels metrics.Labels, n, failed int, latency time.Duration) {
		rt := p.regs[pod].Route(labels)
		for i := range n {
			rt.Request()
			rt.Response(200+300*btoi(i < failed), i < failed, latency)
		}
	}
	in := func(client string) metrics.Labels {
		l := metrics.Labels{Direction: "inbound", Authority: "api.shop.svc.cluster.local:80"}
		if client != "" {
			l.TLS, l.ClientID = metrics.TLSTrue, "spiffe://cluster.local/ns/shop/sa/"+client
		}
		return l
	}
	respond("api-1", in("web"), 9, 1, 5*time.Millisecond)
	respond("api-1", in("batch"), 3, 0, 50*time.Millisecond)
	respond("api-1", in(""), 2, 0, time.Millisecond)
	respond("api-1", metrics.Labels{Direction: "outbound", Authority: "db.shop.svc.cluster.local:5432", TLS: metrics.TLSTrue, ServerID: "spiffe://cluster.local/ns/shop/sa/db"}, 4, 0, time.Millisecond)
	respond("web-1", metrics.Labels{Direction: "outbound", Authority: "api.shop.svc.cluster.local:80", TLS: metrics.TLSTrue, ServerID: "spiffe://cluster.local/ns/shop/sa/api"}, 9, 1, 6*time.Millisecond)
	clock.Advance(10 * time.Second)
	s.ScrapeOnce(ctx)

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
	if !near(val(all.RequestsPerSecond), 1.4) || all.TCPConnections == nil {
		t.Errorf("api without filter: rps %v tcp %v, want 1.4 and a TCP figure", val(all.RequestsPerSecond), all.TCPConnections)
	}
	fromWeb := stat(Query{Name: "api", From: &Ref{Resource: ResourceDeployment, Namespace: "shop", Name: "web"}})
	if !near(val(fromWeb.RequestsPerSecond), 0.9) || math.Abs(val(fromWeb.SuccessRate)-8.0/9) > 1e-9 || fromWeb.TCPConnections != nil {
		t.Errorf("api --from deploy/web: %+v, want 0.9 rps, 8/9 success, no TCP", fromWeb)
	}
	if p99 := val(fromWeb.LatencyP99Ms); p99 > 5 {
		t.Errorf("api --from deploy/web p99 %v: the 50 ms answers to batch leaked in", p99)
	}
	fromBatch := stat(Query{Name: "api", From: &Ref{Resource: ResourceDeployment, Namespace: "shop", Name: "batch"}})
	if !near(val(fromBatch.RequestsPerSecond), 0.3) {
		t.Errorf("api --from deploy/batch: rps %v, want 0.3", val(fromBatch.RequestsPerSecond))
	}
	toAPI := stat(Query{Name: "web", To: &Ref{Resource: ResourceDeployment, Namespace: "shop", Name: "api"}})
	if !near(val(toAPI.RequestsPerSecond), 0.9) || math.Abs(val(toAPI.SuccessRate)-8.0/9) > 1e-9 {
		t.Errorf("web --to deploy/api: %+v, want 0.9 rps and 8/9 success", toAPI)
	}
	toDB := stat(Query{Name: "web", To: &Ref{Resource: ResourceDeployment, Namespace: "shop", Name: "db"}})
	if toDB.RequestsPerSecond == nil || val(toDB.RequestsPerSecond) != 0 {
		t.Errorf("web --to deploy/db: rps %v, want 0 (web never called db)", val(toDB.RequestsPerSecond))
	}
	if _, err := s.Stat(Query{Resource: ResourceDeployment, Window: time.Minute, From: &Ref{Resource: ResourcePod}, To: &Ref{Resource: ResourcePod}}); err == nil {
		t.Error("from and to together were accepted")
	}

	edges, err := s.Edges(Query{Resource: ResourceDeployment, Namespace: "shop", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range edges {
		got = append(got, e.Src+"->"+e.Dst+" secured="+map[bool]string{true: "y", false: "n"}[e.Secured]+fmt.Sprintf(" rps=%.1f", val(e.RequestsPerSecond)))
	}
	want := "->api secured=n rps=0.2,batch->api secured=y rps=0.3,web->api secured=y rps=0.9"
	if strings.Join(got, ",") != want {
		t.Errorf("edges %v, want %s", got, want)
	}

	// Over the API.
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + EdgesPath + "?resource=deploy&namespace=shop")
	if err != nil {
		t.Fatal(err)
	}
	var body EdgesResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Edges) != 3 {
		t.Errorf("GET edges: %v %+v", err, body)
	}
	resp.Body.Close()
	for _, bad := range []string{"?resource=deploy&from=widget/x", "?resource=deploy&from=deploy/a&to=deploy/b"} {
		resp, err := http.Get(srv.URL + APIPath + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET stat%s: %d, want 400", bad, resp.StatusCode)
		}
	}
	resp, err = http.Get(srv.URL + APIPath + "?resource=deploy&namespace=shop&name=api&from=deploy/web")
	if err != nil {
		t.Fatal(err)
	}
	var statBody Response
	if err := json.NewDecoder(resp.Body).Decode(&statBody); err != nil || len(statBody.Rows) != 1 || !near(val(statBody.Rows[0].RequestsPerSecond), 0.9) {
		t.Errorf("GET stat --from: %v %+v", err, statBody)
	}
	resp.Body.Close()
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
