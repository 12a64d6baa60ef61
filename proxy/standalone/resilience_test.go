package standalone

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/proxy/envoy"
)

// countingBackend answers status with its name and counts requests.
type countingBackend struct {
	name   string
	status atomic.Int32
	hits   atomic.Int32
	port   string
}

func newCountingBackend(t *testing.T, name string, status int) *countingBackend {
	t.Helper()
	b := &countingBackend{name: name}
	b.status.Store(int32(status))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.WriteHeader(int(b.status.Load()))
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	_, b.port, _ = net.SplitHostPort(s.Listener.Addr().String())
	return b
}

// blockingBackend holds every request until release is closed.
type blockingBackend struct {
	hits    atomic.Int32
	release chan struct{}
	port    string
}

func newBlockingBackend(t *testing.T) *blockingBackend {
	t.Helper()
	b := &blockingBackend{release: make(chan struct{})}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		select {
		case <-b.release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "held")
	}))
	t.Cleanup(func() { b.open(); s.Close() })
	_, b.port, _ = net.SplitHostPort(s.Listener.Addr().String())
	return b
}

var releaseOnce sync.Map

func (b *blockingBackend) open() {
	if _, loaded := releaseOnce.LoadOrStore(b, true); !loaded {
		close(b.release)
	}
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// getAsync sends a request in the background; the result arrives on the channel.
func (h *harness) getAsync(path string) <-chan int {
	ch := make(chan int, 1)
	go func() {
		resp, err := h.client.Get("http://" + h.p.ListenerAddr("http").String() + path)
		if err != nil {
			ch <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- resp.StatusCode
	}()
	return ch
}

// getResp returns the status, headers and body of GET path.
func (h *harness) getResp(path string) (int, http.Header, string) {
	h.t.Helper()
	resp, err := h.client.Get("http://" + h.p.ListenerAddr("http").String() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (h *harness) metric(name string, labels map[string]string) float64 {
	return h.p.registry.Sample(name, labels)
}

func outlierCluster(name, outlier string, ports ...string) string {
	return strings.Replace(staticCluster(name, ports...), "    connect_timeout: 1s\n",
		"    connect_timeout: 1s\n    outlier_detection:\n"+outlier, 1)
}

func TestOutlierDetectionEjectsAndReturnsAfterBaseEjectionTime(t *testing.T) {
	bad := newCountingBackend(t, "bad", http.StatusInternalServerError)
	good := newCountingBackend(t, "good", http.StatusOK)
	h := start(t, httpConfig(`
              - match: {prefix: "/"}
                route: {cluster: svc}
`, outlierCluster("svc", "      consecutive_5xx: 3\n      interval: 10s\n      base_ejection_time: 30s\n      max_ejection_percent: 50\n",
		bad.port, good.port)), nil)

	// Round robin: the bad endpoint answers every other request; its third 500 ejects it.
	for range 6 {
		h.get("http", "", "/")
	}
	if bad.hits.Load() != 3 {
		t.Fatalf("bad endpoint hits = %d, want 3", bad.hits.Load())
	}
	if got := h.metric("outlier_ejections_total", map[string]string{"cluster": "svc"}); got != 1 {
		t.Fatalf("outlier_ejections_total = %v, want 1", got)
	}
	for range 6 {
		if code, body := h.get("http", "", "/"); code != 200 || body != "good" {
			t.Fatalf("an ejected endpoint got traffic: %d %q", code, body)
		}
	}
	// Not back before base_ejection_time x 1 ejection.
	h.clock.Advance(29 * time.Second)
	h.sweep()
	for range 4 {
		if _, body := h.get("http", "", "/"); body != "good" {
			t.Fatalf("the endpoint came back before base_ejection_time: %q", body)
		}
	}
	if bad.hits.Load() != 3 {
		t.Fatalf("bad endpoint hits = %d while ejected", bad.hits.Load())
	}
	h.clock.Advance(time.Second)
	h.sweep()
	seen := map[string]int{}
	for range 4 {
		_, body := h.get("http", "", "/")
		seen[body]++
	}
	if seen["bad"] != 2 || seen["good"] != 2 {
		t.Fatalf("after base_ejection_time both endpoints must share traffic again: %v", seen)
	}
}

func TestOutlierDetectionRespectsMaxEjectionPercent(t *testing.T) {
	var ports []string
	var bads []*countingBackend
	for _, n := range []string{"bad1", "bad2", "bad3"} {
		b := newCountingBackend(t, n, http.StatusBadGateway)
		bads = append(bads, b)
		ports = append(ports, b.port)
	}
	good := newCountingBackend(t, "good", http.StatusOK)
	ports = append(ports, good.port)
	// 50 % of 4 endpoints: two may be ejected, never the third. Gateway failures count
	// only with enforcing_consecutive_gateway_failure (Envoy's default is 0).
	h := start(t, httpConfig(`
              - match: {prefix: "/"}
                route: {cluster: svc}
`, outlierCluster("svc", "      consecutive_5xx: 0\n      consecutive_gateway_failure: 1\n      enforcing_consecutive_gateway_failure: 100\n      max_ejection_percent: 50\n",
		ports...)), nil)
	for range 12 {
		h.get("http", "", "/")
	}
	if got := h.metric("outlier_ejections_total", map[string]string{"cluster": "svc"}); got != 2 {
		t.Fatalf("outlier_ejections_total = %v, want 2 (50%% of 4)", got)
	}
	before := make([]int32, 3)
	for i, b := range bads {
		before[i] = b.hits.Load()
	}
	for range 8 {
		h.get("http", "", "/")
	}
	stillServing := 0
	for i, b := range bads {
		if b.hits.Load() > before[i] {
			stillServing++
		}
	}
	if stillServing != 1 {
		t.Fatalf("%d failing endpoints still get traffic, want exactly 1 (the one max_ejection_percent keeps)", stillServing)
	}
}

func TestOutlierDetectionDefaultsNeverEjectFromSmallClustersOrOnGatewayErrors(t *testing.T) {
	bad := newCountingBackend(t, "bad", http.StatusInternalServerError)
	good := newCountingBackend(t, "good", http.StatusOK)
	gw := newCountingBackend(t, "gw", http.StatusServiceUnavailable)
	good2 := newCountingBackend(t, "good2", http.StatusOK)
	h := start(t, httpConfig(`
              - match: {prefix: "/default"}
                route: {cluster: small}
              - match: {prefix: "/gateway"}
                route: {cluster: gw}
`, outlierCluster("small", "      consecutive_5xx: 1\n", bad.port, good.port)+
		outlierCluster("gw", "      consecutive_5xx: 0\n      consecutive_gateway_failure: 1\n      max_ejection_percent: 100\n", gw.port, good2.port)), nil)
	for range 6 {
		h.get("http", "", "/default")
		h.get("http", "", "/gateway")
	}
	// 10 % of 2 endpoints is less than one; enforcing_consecutive_gateway_failure defaults to 0.
	if bad.hits.Load() != 3 || gw.hits.Load() != 3 {
		t.Fatalf("hits bad=%d gw=%d, want 3 each (no ejection)", bad.hits.Load(), gw.hits.Load())
	}
	if got := h.metric("outlier_ejections_total", nil); got != 0 {
		t.Fatalf("outlier_ejections_total = %v, want 0", got)
	}
}

func breakerCluster(name, thresholds, port string) string {
	return strings.Replace(staticCluster(name, port), "    connect_timeout: 1s\n",
		"    connect_timeout: 1s\n    circuit_breakers:\n      thresholds:\n      - "+thresholds+"\n", 1)
}

func assertOverloaded(t *testing.T, h *harness, path, breaker string) {
	t.Helper()
	code, header, _ := h.getResp(path)
	if code != http.StatusServiceUnavailable || header.Get("X-Envoy-Overloaded") != "true" {
		t.Fatalf("%s: %d x-envoy-overloaded=%q, want 503 with x-envoy-overloaded: true", path, code, header.Get("X-Envoy-Overloaded"))
	}
	if got := h.metric("circuit_breaker_overflow_total", map[string]string{"breaker": breaker}); got < 1 {
		t.Fatalf("circuit_breaker_overflow_total{breaker=%s} = %v", breaker, got)
	}
}

func TestCircuitBreakersOverflow(t *testing.T) {
	conns := newBlockingBackend(t)
	pending := newBlockingBackend(t)
	requests := newBlockingBackend(t)
	failing := newCountingBackend(t, "failing", http.StatusInternalServerError)
	h := start(t, httpConfig(`
              - match: {prefix: "/conns"}
                route: {cluster: conns}
              - match: {prefix: "/pending"}
                route: {cluster: pending}
              - match: {prefix: "/requests"}
                route: {cluster: requests}
              - match: {prefix: "/retries"}
                route: {cluster: retries, retry_policy: {retry_on: "5xx", num_retries: 2}}
`, breakerCluster("conns", "{max_connections: 1, max_pending_requests: 0}", conns.port)+
		breakerCluster("pending", "{max_connections: 1, max_pending_requests: 1}", pending.port)+
		breakerCluster("requests", "{max_requests: 1}", requests.port)+
		breakerCluster("retries", "{max_retries: 0}", failing.port)), nil)

	t.Run("max_connections with no pending queue", func(t *testing.T) {
		first := h.getAsync("/conns")
		waitFor(t, "the first request to reach the backend", func() bool { return conns.hits.Load() == 1 })
		assertOverloaded(t, h, "/conns", BreakerMaxPendingRequests)
		conns.open()
		if code := <-first; code != 200 {
			t.Fatalf("first request: %d", code)
		}
		if conns.hits.Load() != 1 {
			t.Fatalf("the overflowing request reached the backend: hits = %d", conns.hits.Load())
		}
	})
	t.Run("max_pending_requests", func(t *testing.T) {
		first := h.getAsync("/pending")
		waitFor(t, "the first request to reach the backend", func() bool { return pending.hits.Load() == 1 })
		second := h.getAsync("/pending")
		waitFor(t, "the second request to wait as pending", func() bool { return h.p.clusters["pending"].br.pending.Load() == 1 })
		assertOverloaded(t, h, "/pending", BreakerMaxPendingRequests)
		pending.open()
		if a, b := <-first, <-second; a != 200 || b != 200 {
			t.Fatalf("first and pending requests: %d %d, want 200 200", a, b)
		}
		if pending.hits.Load() != 2 {
			t.Fatalf("backend hits = %d, want 2 (the overflow sent nothing)", pending.hits.Load())
		}
	})
	t.Run("max_requests", func(t *testing.T) {
		first := h.getAsync("/requests")
		waitFor(t, "the first request to reach the backend", func() bool { return requests.hits.Load() == 1 })
		assertOverloaded(t, h, "/requests", BreakerMaxRequests)
		requests.open()
		<-first
		if requests.hits.Load() != 1 {
			t.Fatalf("backend hits = %d, want 1", requests.hits.Load())
		}
	})
	t.Run("max_retries", func(t *testing.T) {
		// Envoy does not retry past max_retries: the upstream's answer is returned as is.
		code, header, body := h.getResp("/retries")
		if code != http.StatusInternalServerError || body != "failing" || header.Get("X-Envoy-Overloaded") != "" {
			t.Fatalf("retry overflow: %d %q (x-envoy-overloaded %q), want the upstream's 500 as is", code, body, header.Get("X-Envoy-Overloaded"))
		}
		if failing.hits.Load() != 1 {
			t.Fatalf("backend hits = %d, want 1 (no retry sent)", failing.hits.Load())
		}
		if got := h.metric("circuit_breaker_overflow_total", map[string]string{"cluster": "retries", "breaker": BreakerMaxRetries}); got != 1 {
			t.Fatalf("circuit_breaker_overflow_total{breaker=max_retries} = %v, want 1", got)
		}
	})
}

func TestRetryBackOffStaysWithinEnvoysJitterBounds(t *testing.T) {
	rng := &lockedRand{r: rand.New(rand.NewPCG(7, 7))}
	base, maxI := 25*time.Millisecond, 250*time.Millisecond
	ceilings := []time.Duration{25, 75, 175, 250, 250, 250} // ms: (2^n-1) x base, capped
	var top [6]time.Duration
	for range 2000 {
		b := newBackOff(base, maxI)
		for i, c := range ceilings {
			d := b.next(rng)
			limit := c * time.Millisecond
			if d < 0 || d > limit || (c != 250 && d == limit) {
				t.Fatalf("retry %d waited %v, want [0, %v)", i+1, d, limit)
			}
			top[i] = max(top[i], d)
		}
	}
	// Full jitter: the draws reach close to each ceiling.
	for i, c := range ceilings {
		if top[i] < c*time.Millisecond*9/10 {
			t.Errorf("retry %d: largest wait %v, want close to %vms", i+1, top[i], c)
		}
	}
}

func TestRetryBackOffIsAppliedBetweenRetries(t *testing.T) {
	var fails atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fails.Add(-1) >= 0 {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer s.Close()
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	h := start(t, httpConfig(`
              - match: {prefix: "/custom"}
                route:
                  cluster: flaky
                  retry_policy:
                    retry_on: retriable-status-codes
                    retriable_status_codes: [418]
                    num_retries: 3
                    retry_back_off: {base_interval: 0.1s, max_interval: 0.15s}
              - match: {prefix: "/default"}
                route: {cluster: flaky, retry_policy: {retry_on: retriable-status-codes, retriable_status_codes: [418], num_retries: 1}}
              - match: {prefix: "/unlisted"}
                route: {cluster: flaky, retry_policy: {retry_on: retriable-status-codes, retriable_status_codes: [429], num_retries: 1}}
`, staticCluster("flaky", port)), nil)

	fails.Store(3)
	if code, body := h.get("http", "", "/custom"); code != 200 || body != "ok" {
		t.Fatalf("three 418s, three retries: %d %q", code, body)
	}
	waits := h.recordedWaits()
	if len(waits) != 3 {
		t.Fatalf("waits = %v, want one per retry", waits)
	}
	for i, limit := range []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond} {
		if waits[i] < 0 || waits[i] > limit {
			t.Errorf("retry %d waited %v, want within [0, %v]", i+1, waits[i], limit)
		}
	}
	fails.Store(1)
	if code, _ := h.get("http", "", "/default"); code != 200 {
		t.Fatalf("default back-off route: %d", code)
	}
	if w := h.recordedWaits(); len(w) != 4 || w[3] >= DefaultRetryBaseInterval {
		t.Fatalf("default first back-off %v, want below 25ms", w)
	}
	fails.Store(1)
	if code, _ := h.get("http", "", "/unlisted"); code != http.StatusTeapot {
		t.Fatalf("a status not in retriable_status_codes was retried: %d", code)
	}
}

func newFromYAML(yaml string) (*Proxy, error) {
	bs, _, err := envoy.Parse([]byte(yaml), envoy.Options{})
	if err != nil {
		return nil, err
	}
	return New(bs, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func TestDNSFailureKeepsTheLastAnswerAndCounts(t *testing.T) {
	for _, kind := range []string{"STRICT_DNS", "LOGICAL_DNS"} {
		t.Run(kind, func(t *testing.T) {
			b := newCountingBackend(t, "svc", http.StatusOK)
			res := &fakeResolver{}
			res.set("svc.test", "127.0.0.1")
			h := start(t, dnsConfig(kind, b.port), res)
			res.set("svc.test") // NXDOMAIN from now on
			h.refresh()
			if got := h.metric("dns_resolution_failures_total", map[string]string{"cluster": "svc"}); got != 1 {
				t.Fatalf("dns_resolution_failures_total = %v, want 1", got)
			}
			if got := h.p.Endpoints("svc"); len(got) != 1 || got[0] != "127.0.0.1:"+b.port {
				t.Fatalf("endpoints after a failed resolution = %v, want the last good answer", got)
			}
			if code, body := h.get("http", "", "/"); code != 200 || body != "svc" {
				t.Fatalf("request after a failed resolution: %d %q", code, body)
			}
		})
	}
}

func TestOutlierDetectionCountsConnectFailuresAndPanics(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	_, deadPort, _ := net.SplitHostPort(dead.Addr().String())
	dead.Close()
	live := newCountingBackend(t, "live", http.StatusOK)
	bad1 := newCountingBackend(t, "bad1", http.StatusInternalServerError)
	bad2 := newCountingBackend(t, "bad2", http.StatusInternalServerError)
	h := start(t, httpConfig(`
              - match: {prefix: "/connect"}
                route: {cluster: connect}
              - match: {prefix: "/panic"}
                route: {cluster: panic}
`, outlierCluster("connect", "      consecutive_5xx: 2\n      max_ejection_percent: 50\n", deadPort, live.port)+
		outlierCluster("panic", "      consecutive_5xx: 1\n      max_ejection_percent: 100\n", bad1.port, bad2.port)), nil)

	// Connection failures count as 5xx: the dead endpoint is ejected after two.
	failures := 0
	for range 4 {
		if code, _ := h.get("http", "", "/connect"); code == http.StatusServiceUnavailable {
			failures++
		}
	}
	if failures != 2 {
		t.Fatalf("connect failures before the ejection = %d, want 2", failures)
	}
	for range 4 {
		if code, body := h.get("http", "", "/connect"); code != 200 || body != "live" {
			t.Fatalf("after the ejection: %d %q", code, body)
		}
	}
	// Both endpoints ejected: below the 50 % panic threshold every endpoint is used again.
	h.get("http", "", "/panic")
	h.get("http", "", "/panic")
	if got := h.metric("outlier_ejections_total", map[string]string{"cluster": "panic"}); got != 2 {
		t.Fatalf("ejections = %v, want 2", got)
	}
	before1, before2 := bad1.hits.Load(), bad2.hits.Load()
	for range 4 {
		if code, _ := h.get("http", "", "/panic"); code != http.StatusInternalServerError {
			t.Fatalf("panic mode must still send traffic: %d", code)
		}
	}
	if bad1.hits.Load()-before1 != 2 || bad2.hits.Load()-before2 != 2 {
		t.Fatalf("panic mode must balance over every endpoint: +%d +%d", bad1.hits.Load()-before1, bad2.hits.Load()-before2)
	}
}

func TestTCPProxyMaxConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
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
`+breakerCluster("echo", "{max_connections: 1}", p), nil)
	addr := h.p.ListenerAddr("tcp").String()
	first, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_ = first.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 3)
	if _, err := io.WriteString(first, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(first, buf); err != nil || string(buf) != "one" {
		t.Fatalf("first connection echo = %q, %v", buf, err)
	}
	second, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(buf); err == nil {
		t.Fatalf("the connection over max_connections was served: read %d bytes", n)
	}
	if accepted.Load() != 1 {
		t.Fatalf("upstream connections = %d, want 1", accepted.Load())
	}
	if got := h.metric("circuit_breaker_overflow_total", map[string]string{"cluster": "echo", "breaker": BreakerMaxConnections}); got != 1 {
		t.Fatalf("overflow count = %v, want 1", got)
	}
}
