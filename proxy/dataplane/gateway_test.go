package dataplane

import (
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// The seed's Gateway and VirtualService (demo/istio/istio-gateway.yaml) on a gateway proxy:
// /api/users/... from outside goes to user-service and /api/orders/... to order-service,
// each over mTLS to the service's proxy; anything else gets 404.
func TestGatewayRoutesTheSeedIntoTheMesh(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "demo", "istio", "istio-gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.TranslateYAML(data, translate.Options{DefaultNamespace: "microservices"})
	if err != nil {
		t.Fatal(err)
	}
	gw := policy.BuildGatewayPolicy(&res.Model, map[string]string{"istio": "ingressgateway"})
	users, orders := startApp(t), startApp(t)
	m := newMesh(t, meshConfig{tweakA: func(o *Options) {
		o.Gateway = &GatewayOptions{Listeners: map[uint32]string{80: "127.0.0.1:0"}, Policy: func() *policy.GatewayPolicy { return &gw }}
	}})
	for svc, app := range map[string]*appServer{"user-service": users, "order-service": orders} {
		m.behindB.Store(app.addr, true)
		ep := discovery.Endpoint{Addr: netip.MustParseAddrPort(app.addr), Identity: testpki.ID(t, serverSA)}
		if err := m.table.Add(svc+".microservices.svc.cluster.local:80", ep); err != nil {
			t.Fatal(err)
		}
	}
	addr := m.a.GatewayAddr(80)
	if addr == nil {
		t.Fatal("no gateway listener for port 80")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "shop.example.com"
		req.Header.Set("Lightmesh-Client-Id", "spiffe://cluster.local/ns/forged/sa/admin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	code, body, h := get("/api/users/1")
	if code != http.StatusOK || body != "GET /api/users/1 0" || users.requests.Load() != 1 {
		t.Fatalf("/api/users/1: %d %q (user-service saw %d requests)", code, body, users.requests.Load())
	}
	// The forged identity header from outside is gone: the app sees the gateway's verified one.
	if got := h.Get("X-Seen-Client-Id"); got != clientSA {
		t.Errorf("user-service saw client %q, want the gateway's identity %s over mTLS", got, clientSA)
	}
	if code, body, _ := get("/api/orders/7"); code != http.StatusOK || body != "GET /api/orders/7 0" || orders.requests.Load() != 1 {
		t.Errorf("/api/orders/7: %d %q", code, body)
	}
	if code, _, h := get("/admin"); code != http.StatusNotFound || h.Get(ProxyErrorHeader) != reasonNoRoute {
		t.Errorf("/admin: %d %q, want 404 no-route", code, h.Get(ProxyErrorHeader))
	}
	if n := m.a.metrics.Sample("request_total", map[string]string{"direction": "outbound", "tls": "true"}); n != 2 {
		t.Errorf("the gateway counted %v mTLS requests, want 2", n)
	}
}
