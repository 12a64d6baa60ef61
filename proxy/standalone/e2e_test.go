package standalone

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/envoy"
)

// fakeResolver answers from a map that tests change.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
}

func (f *fakeResolver) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hosts == nil {
		f.hosts = map[string][]netip.Addr{}
	}
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	f.hosts[host] = as
}

func (f *fakeResolver) LookupAddrs(_ context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.hosts[host]
	if !ok || len(a) == 0 {
		return nil, fmt.Errorf("no such host %s", host)
	}
	return a, nil
}

// fakeTicker shares one channel among all clusters: each tick refreshes one cluster.
type fakeTicker struct{ ch chan time.Time }

func (f fakeTicker) C() <-chan time.Time { return f.ch }
func (f fakeTicker) Stop()               {}

type harness struct {
	t         *testing.T
	p         *Proxy
	tick      chan time.Time
	refreshed chan string
	sweepTick chan time.Time
	swept     chan string
	clock     *identity.FakeClock
	client    *http.Client

	mu    sync.Mutex
	waits []time.Duration // retry back-offs, in order
}

func start(t *testing.T, yaml string, res *fakeResolver) *harness {
	t.Helper()
	if res == nil {
		res = &fakeResolver{}
	}
	return startWithResolver(t, yaml, res)
}

func startWithResolver(t *testing.T, yaml string, res Resolver) *harness {
	t.Helper()
	bs, _, err := envoy.Parse([]byte(yaml), envoy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, tick: make(chan time.Time), refreshed: make(chan string, 16),
		sweepTick: make(chan time.Time), swept: make(chan string, 16),
		clock: identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	p, err := New(bs, Options{
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Resolver:       res,
		NewTicker:      func(time.Duration) Ticker { return fakeTicker{h.tick} },
		Rand:           rand.New(rand.NewPCG(42, 42)),
		OnRefresh:      func(c string) { h.refreshed <- c },
		Clock:          h.clock,
		NewSweepTicker: func(time.Duration) Ticker { return fakeTicker{h.sweepTick} },
		OnSweep:        func(c string) { h.swept <- c },
		After: func(d time.Duration) <-chan time.Time {
			h.mu.Lock()
			h.waits = append(h.waits, d)
			h.mu.Unlock()
			ch := make(chan time.Time, 1)
			ch <- time.Time{}
			return ch
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.p = p
	tr := &http.Transport{}
	h.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

// refresh ticks the DNS clusters once and waits for the refresh to finish.
func (h *harness) refresh() {
	h.t.Helper()
	select {
	case h.tick <- time.Now():
	case <-time.After(5 * time.Second):
		h.t.Fatal("no cluster took the tick")
	}
	select {
	case <-h.refreshed:
	case <-time.After(5 * time.Second):
		h.t.Fatal("the refresh did not finish")
	}
}

// sweep ticks outlier detection once (one cluster) and waits for the sweep to finish.
func (h *harness) sweep() {
	h.t.Helper()
	select {
	case h.sweepTick <- time.Now():
	case <-time.After(5 * time.Second):
		h.t.Fatal("no cluster took the outlier detection tick")
	}
	select {
	case <-h.swept:
	case <-time.After(5 * time.Second):
		h.t.Fatal("the sweep did not finish")
	}
}

// recordedWaits returns the retry back-offs so far.
func (h *harness) recordedWaits() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.waits...)
}

func (h *harness) get(listener, host, path string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+h.p.ListenerAddr(listener).String()+path, nil)
	if host != "" {
		req.Host = host
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// backend answers "name path".
func backend(t *testing.T, name string) (*httptest.Server, string) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(s.Close)
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return s, port
}

// seedAdapted is the seed's envoy-config.yaml with only its addresses and ports changed.
func seedAdapted(t *testing.T, userPort, orderPort string) string {
	t.Helper()
	b, err := os.ReadFile("../envoy/testdata/seed-envoy-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	s = strings.Replace(s, "address: 0.0.0.0\n        port_value: 8080", "address: 127.0.0.1\n        port_value: 0", 1)
	s = strings.Replace(s, "address: user-service\n                port_value: 80", "address: user-service\n                port_value: "+userPort, 1)
	s = strings.Replace(s, "address: order-service\n                port_value: 80", "address: order-service\n                port_value: "+orderPort, 1)
	if strings.Count(s, "port_value: 80\n") != 0 || strings.Contains(s, "8080") {
		t.Fatal("the seed config was not adapted: its layout changed")
	}
	return s + "admin:\n  address:\n    socket_address: {address: 127.0.0.1, port_value: 0}\n"
}

func TestSeedConfigRoutesToTheRightCluster(t *testing.T) {
	_, up := backend(t, "users")
	_, op := backend(t, "orders")
	res := &fakeResolver{}
	res.set("user-service", "127.0.0.1")
	res.set("order-service", "127.0.0.1")
	h := start(t, seedAdapted(t, up, op), res)

	for path, want := range map[string]string{
		"/api/users/1":  "users /api/users/1",
		"/api/orders":   "orders /api/orders",
		"/api/usersX":   "users /api/usersX",
		"/api/orders/9": "orders /api/orders/9",
	} {
		if code, body := h.get("listener_0", "", path); code != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", path, code, body, want)
		}
	}
	if code, _ := h.get("listener_0", "", "/other"); code != http.StatusNotFound {
		t.Errorf("no route: %d, want 404", code)
	}
	resp, err := h.client.Get("http://" + h.p.AdminAddr().String() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/ready = %d", resp.StatusCode)
	}
	resp, err = h.client.Get("http://" + h.p.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `authority="user_service"`) || !strings.Contains(string(b), "request_total") {
		t.Errorf("/metrics has no request_total for user_service:\n%.2000s", b)
	}
}

func httpConfig(routes, clusters string) string {
	return `
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
` + routes + `
          http_filters:
          - name: envoy.filters.http.router
  clusters:
` + clusters
}

func staticCluster(name string, ports ...string) string {
	s := "  - name: " + name + "\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      endpoints:\n      - lb_endpoints:\n"
	for _, p := range ports {
		s += "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " + p + "}}}\n"
	}
	return s
}

func TestWeightedSplit(t *testing.T) {
	_, v1 := backend(t, "v1")
	_, v2 := backend(t, "v2")
	h := start(t, httpConfig(`
              - match: {prefix: "/"}
                route:
                  weighted_clusters:
                    clusters:
                    - {name: v1, weight: 90}
                    - {name: v2, weight: 10}
`, staticCluster("v1", v1)+staticCluster("v2", v2)), nil)
	const n = 400
	counts := map[string]int{}
	for range n {
		_, body := h.get("http", "", "/")
		counts[strings.Fields(body)[0]]++
	}
	if c := counts["v1"]; c < n*85/100 || c > n*95/100 || counts["v1"]+counts["v2"] != n {
		t.Fatalf("split = %v, want about 90/10", counts)
	}
}

func TestRetriesTimeoutsRewriteAndNoUpstream(t *testing.T) {
	var fails atomic.Int32
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fails.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer flaky.Close()
	release := make(chan struct{})
	defer close(release)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	_, deadPort, _ := net.SplitHostPort(dead.Addr().String())
	dead.Close()
	_, live := backend(t, "live")
	port := func(s *httptest.Server) string { _, p, _ := net.SplitHostPort(s.Listener.Addr().String()); return p }

	h := start(t, httpConfig(`
              - match: {prefix: "/retry2"}
                route: {cluster: flaky, prefix_rewrite: "/r", retry_policy: {retry_on: "5xx", num_retries: 2}}
              - match: {prefix: "/retry1"}
                route: {cluster: flaky, retry_policy: {retry_on: "5xx", num_retries: 1}}
              - match: {prefix: "/slow"}
                route: {cluster: slow, timeout: 0.2s}
              - match: {prefix: "/connect"}
                route: {cluster: half_dead, retry_policy: {retry_on: "connect-failure", num_retries: 1}}
              - match: {prefix: "/nothing"}
                route: {cluster: empty}
`, staticCluster("flaky", port(flaky))+staticCluster("slow", port(slow))+
		staticCluster("half_dead", deadPort, live)+
		"  - name: empty\n    type: STRICT_DNS\n    load_assignment:\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {address: {socket_address: {address: unknown.test, port_value: 1}}}\n"), nil)

	fails.Store(2)
	if code, body := h.get("http", "", "/retry2/x"); code != 200 || body != "ok /r/x" {
		t.Errorf("two failures, two retries: %d %q, want 200 \"ok /r/x\"", code, body)
	}
	fails.Store(2)
	if code, _ := h.get("http", "", "/retry1"); code != http.StatusServiceUnavailable {
		t.Errorf("two failures, one retry: %d, want the upstream's 503", code)
	}
	fails.Store(0)
	if code, _ := h.get("http", "", "/slow"); code != http.StatusGatewayTimeout {
		t.Errorf("timeout: %d, want 504", code)
	}
	for i := range 4 {
		if code, body := h.get("http", "", "/connect"); code != 200 || !strings.HasPrefix(body, "live") {
			t.Errorf("connect-failure retry %d: %d %q", i, code, body)
		}
	}
	if code, body := h.get("http", "", "/nothing"); code != http.StatusServiceUnavailable || body != "no healthy upstream" {
		t.Errorf("no endpoints: %d %q, want 503 no healthy upstream", code, body)
	}
}

func TestTCPProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	h := start(t, `
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
`+staticCluster("echo", p), nil)
	c, err := net.DialTimeout("tcp", h.p.ListenerAddr("tcp").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}

// twoAddrs starts backends on 127.0.0.1:P and 127.0.0.2:P (same port, as DNS gives only
// addresses). closed receives when a connection to the second one closes.
func twoAddrs(t *testing.T) (port string, closed2 chan struct{}) {
	t.Helper()
	closed2 = make(chan struct{}, 16)
	for range 20 {
		ln1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(ln1.Addr().String())
		ln2, err := net.Listen("tcp", "127.0.0.2:"+p)
		if err != nil {
			ln1.Close()
			continue
		}
		for i, ln := range []net.Listener{ln1, ln2} {
			name := "one"
			if i == 1 {
				name = "two"
			}
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/close" {
					w.Header().Set("Connection", "close")
				}
				_, _ = io.WriteString(w, name)
			}))
			s.Listener.Close()
			s.Listener = ln
			if i == 1 {
				s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
					if st == http.StateClosed {
						closed2 <- struct{}{}
					}
				}
			}
			s.Start()
			t.Cleanup(s.Close)
		}
		return p, closed2
	}
	t.Skip("could not bind the same port on 127.0.0.1 and 127.0.0.2")
	return "", nil
}

func dnsConfig(kind, port string) string {
	return httpConfig(`
              - match: {prefix: "/"}
                route: {cluster: svc}
`, "  - name: svc\n    type: "+kind+"\n    dns_refresh_rate: 5s\n    load_assignment:\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {address: {socket_address: {address: svc.test, port_value: "+port+"}}}\n")
}

func TestStrictDNSBalancesAndDrainsRemovedAddresses(t *testing.T) {
	port, closed2 := twoAddrs(t)
	res := &fakeResolver{}
	res.set("svc.test", "127.0.0.1", "127.0.0.2")
	h := start(t, dnsConfig("STRICT_DNS", port), res)
	seen := map[string]int{}
	for range 4 {
		_, body := h.get("http", "", "/")
		seen[body]++
	}
	if seen["one"] != 2 || seen["two"] != 2 {
		t.Fatalf("round robin over both addresses: %v", seen)
	}
	res.set("svc.test", "127.0.0.1")
	h.refresh()
	if got := h.p.Endpoints("svc"); len(got) != 1 || got[0] != "127.0.0.1:"+port {
		t.Fatalf("endpoints = %v", got)
	}
	select {
	case <-closed2:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection to the removed address was not drained")
	}
	for range 4 {
		if _, body := h.get("http", "", "/"); body != "one" {
			t.Fatalf("a removed address still gets traffic: %q", body)
		}
	}
}

func TestLogicalDNSUsesFirstAddressAndNeverDrains(t *testing.T) {
	port, closed2 := twoAddrs(t)
	res := &fakeResolver{}
	res.set("svc.test", "127.0.0.2", "127.0.0.1")
	h := start(t, dnsConfig("LOGICAL_DNS", port), res)
	for range 3 {
		if _, body := h.get("http", "", "/"); body != "two" {
			t.Fatalf("LOGICAL_DNS must use the first address: %q", body)
		}
	}
	res.set("svc.test", "127.0.0.1")
	h.refresh()
	if got := h.p.Endpoints("svc"); len(got) != 1 || got[0] != "127.0.0.1:"+port {
		t.Fatalf("endpoints = %v", got)
	}
	// The existing connection to 127.0.0.2 is kept and reused.
	if _, body := h.get("http", "", "/close"); body != "two" {
		t.Fatalf("the existing connection was drained: %q", body)
	}
	select {
	case <-closed2: // closed by the backend's Connection: close, not by the proxy
	case <-time.After(5 * time.Second):
		t.Fatal("the backend did not close")
	}
	if _, body := h.get("http", "", "/"); body != "one" {
		t.Fatalf("a new connection must use the new first address: %q", body)
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	_, v1 := backend(t, "v1")
	h := start(t, httpConfig(`
              - match: {prefix: "/"}
                route: {cluster: v1}
`, staticCluster("v1", v1)), nil)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + h.p.ListenerAddr("http").String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || string(b) != "v1 /x" {
		t.Fatalf("h2c: proto %s body %q", resp.Proto, b)
	}
}
