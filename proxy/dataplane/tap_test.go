package dataplane

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/tap"
	proxytap "github.com/lightmesh/lightmesh/proxy/tap"
)

// A meshed request is reported by both proxies: outbound by the client's, inbound by the
// server's, each with the method, authority, path, status and both identities; a request
// the filter leaves out is not reported, and nothing is reported once the tap ends.
func TestTapReportsBothSides(t *testing.T) {
	hubA, hubB := proxytap.NewHub(0, 0), proxytap.NewHub(0, 0)
	app := startApp(t)
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.Tap = hubA }, tweakB: func(o *Options) { o.Tap = hubB }})
	m.serve(t, app.addr, serverSA)

	subA, err := hubA.Subscribe(tap.Filter{PathPrefix: "/tapped"})
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()
	subB, err := hubB.Subscribe(tap.Filter{Direction: tap.Inbound})
	if err != nil {
		t.Fatal(err)
	}
	defer subB.Close()

	client := m.httpClient(false)
	for _, path := range []string{"/other", "/tapped/x"} {
		resp, err := client.Get("http://" + app.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, resp.StatusCode)
		}
	}
	out := nextEvent(t, subA.Events())
	if out.Direction != tap.Outbound || out.Method != http.MethodGet || out.Path != "/tapped/x" || out.Status != 200 ||
		out.Authority != app.addr || out.SourceIdentity != clientSA || out.DestinationIdentity != serverSA ||
		out.DestinationAddr != app.addr || !strings.HasPrefix(out.SourceAddr, "127.0.0.1:") || out.LatencyMs <= 0 || out.Error != "" {
		t.Errorf("client proxy's event: %+v", out)
	}
	for _, want := range []string{"/other", "/tapped/x"} {
		in := nextEvent(t, subB.Events())
		if in.Direction != tap.Inbound || in.Path != want || in.Status != 200 ||
			in.SourceIdentity != clientSA || in.DestinationIdentity != serverSA || !strings.HasPrefix(in.SourceAddr, "127.0.0.1:") ||
			in.DestinationAddr != app.addr {
			t.Errorf("server proxy's event for %s: %+v", want, in)
		}
	}
	select {
	case ev := <-subA.Events():
		t.Errorf("the client proxy reported a request its filter leaves out: %+v", ev)
	default:
	}

	subA.Close()
	subB.Close()
	if hubA.Active() || hubB.Active() {
		t.Fatal("hubs still active after their taps closed")
	}
	resp, err := client.Get("http://" + app.addr + "/tapped/after")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case ev := <-subA.Events():
		t.Errorf("an ended tap got %+v", ev)
	default:
	}
}

// A request the proxy answers itself carries its reason.
func TestTapReportsProxyErrors(t *testing.T) {
	hub := proxytap.NewHub(0, 0)
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.Tap = hub }})
	dead := closedPort(t)
	sub, err := hub.Subscribe(tap.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	resp, err := m.httpClient(false).Get("http://" + dead + "/gone")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ev := nextEvent(t, sub.Events())
	if ev.Status != http.StatusBadGateway || ev.Error != reasonConnectRefused || ev.Path != "/gone" {
		t.Errorf("event %+v, want 502 %s", ev, reasonConnectRefused)
	}
}

func nextEvent(t *testing.T, events <-chan tap.Event) tap.Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no tap event within 10s")
	}
	return tap.Event{}
}

// BenchmarkTapInactive is the cost of the tap step on a request nobody taps.
func BenchmarkTapInactive(b *testing.B) {
	p := &Proxy{opts: Options{Tap: proxytap.NewHub(0, 0)}}
	h := p.tap(inbound)(HandlerFunc(func(*Exchange) {}))
	ex := &Exchange{}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeExchange(ex)
	}
}

func TestUnmapped(t *testing.T) {
	for in, want := range map[string]string{"[::ffff:10.0.0.1]:80": "10.0.0.1:80", "10.0.0.2:81": "10.0.0.2:81", "[fd00::1]:82": "[fd00::1]:82"} {
		if got := unmapped(netip.MustParseAddrPort(in)); got != want {
			t.Errorf("unmapped(%s) = %s, want %s", in, got, want)
		}
	}
}
