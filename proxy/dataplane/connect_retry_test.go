package dataplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// A destination without a route policy of its own gets Istio's default retries on a
// connection that could not be opened: an endpoint gone (its pod deleted while the proxy
// did not know yet) or whose proxy cannot reach its application costs no request, with or
// without a body; with nothing else to try, the client gets the error.
func TestConnectFailuresGoToAnotherEndpoint(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	gone := closedPort(t)          // nobody there: the dial is refused
	appGone := closedPort(t)       // its proxy (B) answers, its application does not
	m.behindB.Store(appGone, true) // reached through B, like app
	id := testpki.ID(t, serverSA)
	const name = "10.99.0.1:80" // a Service's cluster IP
	if err := m.table.Add(name,
		discovery.Endpoint{Addr: netipAddr(t, gone)},
		discovery.Endpoint{Addr: netipAddr(t, appGone), Identity: id},
		discovery.Endpoint{Addr: netipAddr(t, app.addr), Identity: id}); err != nil {
		t.Fatal(err)
	}
	client := m.httpClient(false)
	for i := range 30 {
		req, _ := http.NewRequest(http.MethodPost, "http://"+name+"/r", strings.NewReader("body"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
		}
	}
	// HTTP/2 requests without a body too.
	h2 := m.httpClient(true)
	for i := range 10 {
		if resp, _ := get(t, h2, "http://"+name+"/h2"); resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP/2 request %d: %d %s", i, resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
		}
	}
	if got := app.requests.Load(); got != 40 {
		t.Errorf("the app served %d requests, want 40", got)
	}

	// Only dead endpoints: the error, after the retries.
	const deadName = "10.99.0.2:80"
	if err := m.table.Add(deadName, discovery.Endpoint{Addr: netipAddr(t, gone)}, discovery.Endpoint{Addr: netipAddr(t, appGone), Identity: id}); err != nil {
		t.Fatal(err)
	}
	resp, _ := get(t, client, "http://"+deadName+"/")
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ProxyErrorHeader) != reasonConnectRefused {
		t.Errorf("with no endpoint alive: %d %q, want 502 %s", resp.StatusCode, resp.Header.Get(ProxyErrorHeader), reasonConnectRefused)
	}
}
