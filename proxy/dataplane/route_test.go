package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// The outbound policy tests run the client proxy A in plaintext with a StaticPolicy and a
// static discovery table; the services' endpoints are test servers on loopback that A
// reaches directly.

const (
	userSvc   = "user-service.default.svc.cluster.local"
	userSvcV2 = "user-service-v2.default.svc.cluster.local"
	// userAddr is the ClusterIP the application dials.
	userAddr = "10.96.0.20:80"
)

// backend is a test server that names itself in X-Backend and records what it saw.
type backend struct {
	name string
	addr netip.AddrPort
	hits atomic.Int64
	// handle, when set, answers instead of the default.
	handle func(w http.ResponseWriter, r *http.Request, hit int64)
	mu     sync.Mutex
	last   *http.Request
}

func startBackend(t *testing.T, name string, handle func(w http.ResponseWriter, r *http.Request, hit int64)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().(*net.TCPAddr).AddrPort(), handle: handle}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit := b.hits.Add(1)
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		w.Header().Set("X-Backend", name)
		if b.handle != nil {
			b.handle(w, r, hit)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %d", name, r.URL.RequestURI(), n)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *backend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *backend) endpoint(labels map[string]string) discovery.Endpoint {
	return discovery.Endpoint{Addr: b.addr, Labels: labels}
}

// policyMesh is a mesh whose client proxy applies pol.
type policyMesh struct {
	*mesh
	pol    *discovery.StaticPolicy
	ticks  chan time.Time
	clock  *identity.FakeClock
	client *http.Client
}

// lockedRand is a seeded generator safe for concurrent use.
func lockedRand(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

func newPolicyMesh(t *testing.T, tweak func(*Options)) *policyMesh {
	t.Helper()
	pm := &policyMesh{pol: discovery.NewStaticPolicy(), ticks: make(chan time.Time),
		clock: identity.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	pm.mesh = newMesh(t, meshConfig{plaintext: true, tweakA: func(o *Options) {
		o.Policy = pm.pol
		o.clock = pm.clock
		o.random = lockedRand(1)
		o.ticker = func(time.Duration) (<-chan time.Time, func()) { return pm.ticks, func() {} }
		if tweak != nil {
			tweak(o)
		}
	}})
	pm.client = pm.httpClient(false)
	pm.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return pm
}

// service registers host:80 (and its ClusterIP for the default service) with endpoints.
func (pm *policyMesh) service(t *testing.T, host string, eps ...discovery.Endpoint) {
	t.Helper()
	if err := pm.table.Add(host+":80", eps...); err != nil {
		t.Fatal(err)
	}
}

// setPolicy applies model to the user service: its VirtualHost and every Destination.
func (pm *policyMesh) setPolicy(vh *policy.VirtualHost, dests ...policy.Destination) {
	pm.pol.SetOutbound(userSvc+":80", &policy.OutboundPolicy{Authority: userSvc + ":80", VirtualHost: vh, Destinations: dests})
}

// do sends method path (with body) to the user service through A.
func (pm *policyMesh) do(t *testing.T, method, path string, body io.Reader, header http.Header) (response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+userAddr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = userSvc
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := pm.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{StatusCode: resp.StatusCode, Proto: resp.Proto, ProtoMajor: resp.ProtoMajor, Header: resp.Header}, string(data)
}

func (pm *policyMesh) get(t *testing.T, path string) (response, string) {
	t.Helper()
	return pm.do(t, http.MethodGet, path, nil, nil)
}

func vhost(routes ...policy.Route) *policy.VirtualHost {
	return &policy.VirtualHost{Hosts: []string{userSvc}, Gateways: []string{policy.MeshGateway}, Routes: routes}
}

func to(host string, weight uint32) []policy.WeightedDestination {
	return []policy.WeightedDestination{{Host: host, Port: 80, Weight: weight}}
}

func prefix(p string) policy.Match {
	return policy.Match{Path: &policy.StringMatch{Kind: policy.MatchPrefix, Value: p}}
}

func TestRouteFirstMatchWinsAndNoRoute(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	pm.service(t, userSvc, a.endpoint(nil))
	pm.service(t, userSvcV2, b.endpoint(nil))
	pm.setPolicy(vhost(
		policy.Route{Match: prefix("/api/users"), Destinations: to(userSvcV2, 1)},
		policy.Route{Match: prefix("/api"), Destinations: to(userSvc, 1)},
		policy.Route{Match: policy.Match{Headers: []policy.HeaderMatch{{Name: "X-Canary", Value: policy.StringMatch{Kind: policy.MatchExact, Value: "yes"}}}}, Destinations: to(userSvcV2, 1)},
	))
	for _, tc := range []struct {
		path    string
		header  http.Header
		status  int
		backend string
	}{
		{"/api/users/1", nil, 200, "b"},
		{"/api/usersX", nil, 200, "b"}, // Istio's prefix is a plain string prefix
		{"/api/orders", nil, 200, "a"},
		{"/api/users/../orders", nil, 200, "a"}, // matched after normalisation
		{"/other", http.Header{"X-Canary": {"yes"}}, 200, "b"},
		{"/other", nil, 404, ""},
	} {
		resp, _ := pm.do(t, http.MethodGet, tc.path, nil, tc.header)
		if resp.StatusCode != tc.status || resp.Header.Get("X-Backend") != tc.backend {
			t.Errorf("%s %v: status %d backend %q, want %d %q", tc.path, tc.header, resp.StatusCode, resp.Header.Get("X-Backend"), tc.status, tc.backend)
		}
		if tc.status == 404 && resp.Header.Get(ProxyErrorHeader) != reasonNoRoute {
			t.Errorf("%s: proxy error %q, want %q", tc.path, resp.Header.Get(ProxyErrorHeader), reasonNoRoute)
		}
	}
}

func TestSeedTrafficSplit90To10(t *testing.T) {
	data, err := os.ReadFile("../../demo/istio/traffic-splitting.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.TranslateYAML(data, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	vh, ok := policy.SelectVirtualHost(res.Model.VirtualHosts, policy.MeshGateway, userSvc+":80", 80)
	if !ok {
		t.Fatal("the seed has no VirtualHost for the user service")
	}
	pm := newPolicyMesh(t, nil)
	v1, v2 := startBackend(t, "v1", nil), startBackend(t, "v2", nil)
	pm.service(t, userSvc, v1.endpoint(nil))
	pm.service(t, userSvcV2, v2.endpoint(nil))
	pm.setPolicy(vh, res.Model.Destinations...)
	const requests = 2000
	for range requests {
		if resp, _ := pm.get(t, "/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	share := 100 * float64(v2.hits.Load()) / requests
	if share < 7 || share > 13 || v1.hits.Load()+v2.hits.Load() != requests {
		t.Fatalf("v2 got %.1f%% (%d), v1 %d; want 10%% within 3 points", share, v2.hits.Load(), v1.hits.Load())
	}
}

func TestSubsetsSelectEndpointsByLabels(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	v1, v2 := startBackend(t, "v1", nil), startBackend(t, "v2", nil)
	pm.service(t, userSvc, v1.endpoint(map[string]string{"app": "user", "version": "v1"}), v2.endpoint(map[string]string{"app": "user", "version": "v2"}))
	dr := policy.Destination{Host: userSvc, Subsets: []policy.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: policy.TrafficPolicy{LoadBalancer: policy.LoadBalancerRoundRobin}},
	}}
	pm.setPolicy(vhost(
		policy.Route{Match: prefix("/v2"), Destinations: []policy.WeightedDestination{{Host: userSvc, Subset: "v2", Weight: 1}}},
		policy.Route{Match: prefix("/missing"), Destinations: []policy.WeightedDestination{{Host: userSvc, Subset: "v3", Weight: 1}}},
		policy.Route{Destinations: []policy.WeightedDestination{{Host: userSvc, Subset: "v1", Weight: 1}}},
	), dr)
	for range 20 {
		if resp, _ := pm.get(t, "/v2/x"); resp.Header.Get("X-Backend") != "v2" {
			t.Fatalf("/v2 went to %q", resp.Header.Get("X-Backend"))
		}
		if resp, _ := pm.get(t, "/x"); resp.Header.Get("X-Backend") != "v1" {
			t.Fatalf("/x went to %q", resp.Header.Get("X-Backend"))
		}
	}
	if resp, _ := pm.get(t, "/missing"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("an undefined subset: status %d, want 503", resp.StatusCode)
	}
}

func TestRouteActions(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	a := startBackend(t, "a", nil)
	pm.service(t, userSvc, a.endpoint(nil))
	pm.setPolicy(vhost(
		policy.Route{Match: prefix("/old/"), Destinations: to(userSvc, 1),
			Rewrite: &policy.Rewrite{Path: &policy.PathRewrite{Kind: policy.RewritePrefix, Value: "/new/"}, Authority: "rewritten.example"}},
		policy.Route{Match: prefix("/moved"), Redirect: &policy.Redirect{Scheme: "https", Authority: "elsewhere.example", Path: &policy.PathRewrite{Kind: policy.RewriteFullPath, Value: "/landing"}, StatusCode: 302}},
		policy.Route{Match: prefix("/direct"), DirectResponse: &policy.DirectResponse{Status: 418, Body: "teapot"}},
		policy.Route{Match: prefix("/headers"), Destinations: []policy.WeightedDestination{{Host: userSvc, Port: 80, Weight: 1,
			RequestHeaders: &policy.HeaderModifier{Add: []policy.Header{{Name: "X-Dest", Value: "d"}}}}},
			RequestHeaders:  &policy.HeaderModifier{Set: []policy.Header{{Name: "X-Set", Value: "s"}}, Remove: []string{"X-Drop"}},
			ResponseHeaders: &policy.HeaderModifier{Set: []policy.Header{{Name: "X-Resp", Value: "r"}}, Remove: []string{"X-Backend"}}},
		policy.Route{Match: prefix("/abort"), Destinations: to(userSvc, 1), Fault: &policy.Fault{Abort: &policy.FaultAbort{Status: 503, Percent: 100}}},
		policy.Route{Match: prefix("/delay"), Destinations: to(userSvc, 1), Fault: &policy.Fault{Delay: &policy.FaultDelay{Delay: policy.Duration(100 * time.Millisecond), Percent: 100}}},
	))
	t.Run("rewrite", func(t *testing.T) {
		resp, body := pm.get(t, "/old/thing?q=1")
		if resp.StatusCode != http.StatusOK || body != "a /new/thing?q=1 0" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if got := a.lastRequest().Host; got != "rewritten.example" {
			t.Fatalf("backend saw host %q", got)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		before := a.hits.Load()
		resp, _ := pm.get(t, "/moved/x?y=2")
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://elsewhere.example/landing?y=2" {
			t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if a.hits.Load() != before {
			t.Fatal("a redirect reached the backend")
		}
	})
	t.Run("direct response", func(t *testing.T) {
		resp, body := pm.get(t, "/direct")
		if resp.StatusCode != http.StatusTeapot || body != "teapot" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("header modifiers", func(t *testing.T) {
		resp, _ := pm.do(t, http.MethodGet, "/headers", nil, http.Header{"X-Drop": {"1"}, "X-Set": {"old"}})
		seen := a.lastRequest().Header
		if seen.Get("X-Set") != "s" || seen.Get("X-Drop") != "" || seen.Get("X-Dest") != "d" {
			t.Fatalf("backend saw %v", seen)
		}
		if resp.Header.Get("X-Resp") != "r" || resp.Header.Get("X-Backend") != "" {
			t.Fatalf("client saw %v", resp.Header)
		}
	})
	t.Run("fault abort", func(t *testing.T) {
		before := a.hits.Load()
		resp, _ := pm.get(t, "/abort")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ProxyErrorHeader) != reasonFaultAbort || a.hits.Load() != before {
			t.Fatalf("status %d reason %q, backend hit %d times", resp.StatusCode, resp.Header.Get(ProxyErrorHeader), a.hits.Load()-before)
		}
	})
	t.Run("fault delay", func(t *testing.T) {
		start := time.Now()
		resp, _ := pm.get(t, "/delay")
		if resp.StatusCode != http.StatusOK || time.Since(start) < 100*time.Millisecond {
			t.Fatalf("status %d after %s, want 200 after the 100ms delay", resp.StatusCode, time.Since(start))
		}
	})
}

func TestFaultPercentage(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	a := startBackend(t, "a", nil)
	pm.service(t, userSvc, a.endpoint(nil))
	pm.setPolicy(vhost(policy.Route{Destinations: to(userSvc, 1), Fault: &policy.Fault{Abort: &policy.FaultAbort{Status: 500, Percent: 25}}}))
	aborted := 0
	const n = 400
	for range n {
		if resp, _ := pm.get(t, "/"); resp.StatusCode == http.StatusInternalServerError {
			aborted++
		}
	}
	if aborted < n*15/100 || aborted > n*35/100 {
		t.Fatalf("%d of %d aborted, want about 25%%", aborted, n)
	}
}

// blocking answers once release is closed or the request ends.
func blocking(release <-chan struct{}) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, _ int64) {
		select {
		case <-release:
			fmt.Fprint(w, "released")
		case <-r.Context().Done():
		}
	}
}

func TestRouteTimeoutAndRetries(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	release := make(chan struct{})
	defer close(release)
	slow := startBackend(t, "slow", blocking(release))
	flaky := startBackend(t, "flaky", func(w http.ResponseWriter, r *http.Request, hit int64) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hit <= 2 || r.URL.Path == "/always" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	firstHangs := startBackend(t, "first-hangs", func(w http.ResponseWriter, r *http.Request, hit int64) {
		if hit == 1 {
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, "ok")
	})
	const slowSvc, flakySvc, hangSvc = "slow.default.svc.cluster.local", "flaky.default.svc.cluster.local", "hang.default.svc.cluster.local"
	pm.service(t, slowSvc, slow.endpoint(nil))
	pm.service(t, flakySvc, flaky.endpoint(nil))
	pm.service(t, hangSvc, firstHangs.endpoint(nil))
	pm.service(t, userSvc, slow.endpoint(nil))
	retry503 := &policy.RetryPolicy{Attempts: 3, RetryOn: []string{"gateway-error"}}
	pm.setPolicy(vhost(
		policy.Route{Match: prefix("/timeout"), Destinations: to(slowSvc, 1), Timeout: policy.Duration(200 * time.Millisecond)},
		policy.Route{Match: prefix("/flaky"), Destinations: to(flakySvc, 1), Retries: retry503},
		policy.Route{Match: prefix("/always"), Destinations: to(flakySvc, 1), Retries: retry503},
		policy.Route{Match: prefix("/pertry"), Destinations: to(hangSvc, 1), Timeout: policy.Duration(10 * time.Second),
			Retries: &policy.RetryPolicy{Attempts: 1, PerTryTimeout: policy.Duration(200 * time.Millisecond), RetryOn: []string{"5xx"}}},
	))

	t.Run("timeout 504", func(t *testing.T) {
		resp, _ := pm.get(t, "/timeout")
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(ProxyErrorHeader) != reasonTimeout {
			t.Fatalf("status %d reason %q", resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
		}
	})
	t.Run("retried on 503 then success", func(t *testing.T) {
		resp, body := pm.do(t, http.MethodPost, "/flaky", strings.NewReader("small body"), nil)
		if resp.StatusCode != http.StatusOK || body != "ok" || flaky.hits.Load() != 3 {
			t.Fatalf("status %d body %q after %d attempts", resp.StatusCode, body, flaky.hits.Load())
		}
	})
	t.Run("attempts run out", func(t *testing.T) {
		before := flaky.hits.Load()
		resp, _ := pm.get(t, "/always")
		if resp.StatusCode != http.StatusServiceUnavailable || flaky.hits.Load()-before != 4 {
			t.Fatalf("status %d after %d attempts, want 503 after 4", resp.StatusCode, flaky.hits.Load()-before)
		}
	})
	t.Run("large body not retried", func(t *testing.T) {
		before := flaky.hits.Load()
		big := strings.Repeat("x", maxReplayBody+1)
		resp, _ := pm.do(t, http.MethodPost, "/always", strings.NewReader(big), nil)
		if resp.StatusCode != http.StatusServiceUnavailable || flaky.hits.Load()-before != 1 {
			t.Fatalf("status %d after %d attempts, want 503 after 1", resp.StatusCode, flaky.hits.Load()-before)
		}
		// The same without a known length: streamed, then found too large.
		before = flaky.hits.Load()
		resp, _ = pm.do(t, http.MethodPost, "/always", io.MultiReader(strings.NewReader(big)), nil)
		if resp.StatusCode != http.StatusServiceUnavailable || flaky.hits.Load()-before != 1 {
			t.Fatalf("chunked: status %d after %d attempts, want 503 after 1", resp.StatusCode, flaky.hits.Load()-before)
		}
	})
	t.Run("per-try timeout", func(t *testing.T) {
		resp, body := pm.get(t, "/pertry")
		if resp.StatusCode != http.StatusOK || body != "ok" || firstHangs.hits.Load() != 2 {
			t.Fatalf("status %d body %q after %d attempts", resp.StatusCode, body, firstHangs.hits.Load())
		}
	})
	if n := pm.a.traffic.retries.Load(); n != 2+3+1 {
		t.Fatalf("%d retries counted, want 6", n)
	}
	if n := pm.a.Metrics().Sample("retry_total", map[string]string{"authority": userSvc + ":80"}); n != 6 {
		t.Fatalf("retry_total is %v, want 6", n)
	}
	// Requests are counted once, whatever their attempts; local answers too.
	if n := pm.a.Metrics().Sample("request_total", map[string]string{"direction": "outbound", "authority": userSvc + ":80"}); n != 6 {
		t.Fatalf("request_total is %v, want 6 (one per request)", n)
	}
}

func TestRetryReplaysTheBody(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	var bodies sync.Map
	b := startBackend(t, "b", func(w http.ResponseWriter, r *http.Request, hit int64) {
		data, _ := io.ReadAll(r.Body)
		bodies.Store(hit, string(data))
		if hit == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, "ok")
	})
	pm.service(t, userSvc, b.endpoint(nil))
	pm.setPolicy(vhost(policy.Route{Destinations: to(userSvc, 1), Retries: &policy.RetryPolicy{Attempts: 1, RetryOn: []string{"5xx"}}}))
	payload := strings.Repeat("payload;", 1000)
	resp, _ := pm.do(t, http.MethodPost, "/", io.MultiReader(strings.NewReader(payload)), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for hit := int64(1); hit <= 2; hit++ {
		if got, _ := bodies.Load(hit); got != payload {
			t.Fatalf("attempt %d got a body of %d bytes, want %d", hit, len(fmt.Sprint(got)), len(payload))
		}
	}
}

func TestSeedCircuitBreakerOverflow(t *testing.T) {
	data, err := os.ReadFile("../../demo/istio/circuit-breaker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.TranslateYAML(data, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pm := newPolicyMesh(t, nil)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	slow := startBackend(t, "slow", blocking(release))
	pm.service(t, userSvc, slow.endpoint(nil))
	pm.setPolicy(nil, res.Model.Destinations...)

	type result struct {
		status int
		err    error
	}
	results := make(chan result, 20)
	for range 20 {
		go func() {
			// Each request on its own connection, as 20 callers would.
			c := pm.httpClient(false)
			req, _ := http.NewRequest(http.MethodGet, "http://"+userAddr+"/", nil)
			req.Host = userSvc
			resp, err := c.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{status: resp.StatusCode}
		}()
	}
	waitFor(t, "10 requests at the backend and 10 pending", func() bool {
		c, err := pm.a.traffic.get(&policy.OutboundPolicy{Destinations: res.Model.Destinations}, userSvc, 80, "")
		if err != nil {
			t.Fatal(err)
		}
		active, pending := c.limiter.inFlight()
		return slow.hits.Load() == 10 && active == 10 && pending == 10
	})
	resp, _ := pm.get(t, "/")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ProxyErrorHeader) != reasonOverflow || resp.Header.Get("X-Envoy-Overloaded") != "true" {
		t.Fatalf("the 21st request: status %d reason %q overloaded %q", resp.StatusCode, resp.Header.Get(ProxyErrorHeader), resp.Header.Get("X-Envoy-Overloaded"))
	}
	if slow.hits.Load() != 10 {
		t.Fatalf("the backend saw %d requests, want 10", slow.hits.Load())
	}
	open()
	for range 20 {
		r := <-results
		if r.err != nil || r.status != 200 {
			t.Fatalf("a held request ended with %d, %v", r.status, r.err)
		}
	}
	if slow.hits.Load() != 20 {
		t.Fatalf("the backend saw %d requests, want 20", slow.hits.Load())
	}
}

func TestOutlierEjectsAndReturnsEndpoint(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	bad := startBackend(t, "bad", func(w http.ResponseWriter, _ *http.Request, _ int64) { w.WriteHeader(http.StatusInternalServerError) })
	good := startBackend(t, "good", nil)
	pm.service(t, userSvc, bad.endpoint(nil), good.endpoint(nil))
	od := &policy.OutlierDetection{Consecutive5xxErrors: 3, Interval: policy.Duration(30 * time.Second),
		BaseEjectionTime: policy.Duration(30 * time.Second), MaxEjectionPercent: 50}
	pm.setPolicy(nil, policy.Destination{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{LoadBalancer: policy.LoadBalancerRoundRobin, OutlierDetection: od}})
	for i := 0; bad.hits.Load() < 3; i++ {
		if i > 20 {
			t.Fatalf("the bad endpoint got %d requests out of 20", bad.hits.Load())
		}
		pm.get(t, "/")
	}
	for range 10 {
		if resp, _ := pm.get(t, "/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d from %q after the bad endpoint's 3rd error", resp.StatusCode, resp.Header.Get("X-Backend"))
		}
	}
	if bad.hits.Load() != 3 {
		t.Fatalf("the ejected endpoint got %d requests", bad.hits.Load())
	}
	// An interval before the ejection time has passed: still ejected.
	pm.clock.Advance(29 * time.Second)
	pm.ticks <- pm.clock.Now()
	pm.ticks <- pm.clock.Now() // the sweeper has finished the first sweep once it takes the second tick
	for range 4 {
		pm.get(t, "/")
	}
	if bad.hits.Load() != 3 {
		t.Fatal("the endpoint came back before baseEjectionTime")
	}
	pm.clock.Advance(time.Second)
	pm.ticks <- pm.clock.Now()
	pm.ticks <- pm.clock.Now()
	for range 4 {
		pm.get(t, "/")
	}
	if bad.hits.Load() == 3 {
		t.Fatal("the endpoint did not come back after baseEjectionTime")
	}
}

func TestAdmitTCPCapsConnections(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	pm.setPolicy(nil, policy.Destination{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{ConnectionPool: &policy.ConnectionPool{MaxConnections: 2}}})
	dst := &discovery.Destination{Name: userSvc + ":80"}
	r1, ok1 := pm.a.admitTCP(dst)
	r2, ok2 := pm.a.admitTCP(dst)
	_, ok3 := pm.a.admitTCP(dst)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("admitted %v %v %v, want true true false", ok1, ok2, ok3)
	}
	r1()
	r3, ok := pm.a.admitTCP(dst)
	if !ok {
		t.Fatal("not admitted after a release")
	}
	r2()
	r3()
	if _, ok := pm.a.admitTCP(&discovery.Destination{Name: "other.default.svc.cluster.local:80"}); !ok {
		t.Fatal("a destination without policy was refused")
	}
}

func TestRoutingOverMTLSRetriesPeerConnectFailures(t *testing.T) {
	pol := discovery.NewStaticPolicy()
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.Policy = pol }})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	dead := closedPort(t)
	m.behindB.Store(dead, true)
	id := pkiID(t, serverSA)
	// The dead endpoint's proxy (B) answers 502 connection-refused: a connect failure.
	if err := m.table.Add(userSvc+":80", discovery.Endpoint{Addr: netipAddr(t, dead), Identity: id}, discovery.Endpoint{Addr: netipAddr(t, app.addr), Identity: id}); err != nil {
		t.Fatal(err)
	}
	pol.SetOutbound(userSvc+":80", &policy.OutboundPolicy{
		VirtualHost: vhost(policy.Route{Destinations: to(userSvc, 1),
			Rewrite:        &policy.Rewrite{Path: &policy.PathRewrite{Kind: policy.RewriteFullPath, Value: "/rewritten"}},
			RequestHeaders: &policy.HeaderModifier{Set: []policy.Header{{Name: "X-Hop", Value: "1"}}},
			Retries:        &policy.RetryPolicy{Attempts: 2, RetryOn: []string{"connect-failure"}}}),
		Destinations: []policy.Destination{{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{LoadBalancer: policy.LoadBalancerRoundRobin}}},
	})
	client := m.httpClient(false)
	for i := range 6 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+userAddr+"/x", nil)
		req.Host = userSvc
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "GET /rewritten 0" {
			t.Fatalf("request %d: status %d body %q (%s)", i, resp.StatusCode, body, resp.Header.Get(ProxyErrorHeader))
		}
		if resp.Header.Get("X-Seen-Client-Id") != clientSA || resp.Header.Get("X-Seen-Proto") != "HTTP/1.1" || resp.Header.Get("X-Seen-Hop") != "yes" {
			t.Fatalf("request %d: the app saw client %q proto %q hop %q", i, resp.Header.Get("X-Seen-Client-Id"), resp.Header.Get("X-Seen-Proto"), resp.Header.Get("X-Seen-Hop"))
		}
	}
	// Round robin: each request's first attempt goes to the dead endpoint, its retry to the app.
	if m.a.traffic.retries.Load() != 6 {
		t.Fatalf("%d retries, want 6", m.a.traffic.retries.Load())
	}
}

func TestRoutingHTTP2AndWebSocket(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	app := startApp(t)
	pm.service(t, userSvc, discovery.Endpoint{Addr: netipAddr(t, app.addr)})
	pm.setPolicy(vhost(
		policy.Route{Match: prefix("/socket"), Destinations: to(userSvc, 1), Rewrite: &policy.Rewrite{Path: &policy.PathRewrite{Kind: policy.RewriteFullPath, Value: "/ws"}}},
		policy.Route{Destinations: to(userSvc, 1)},
	), policy.Destination{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{ConnectionPool: &policy.ConnectionPool{MaxConnections: 1, HTTP2MaxRequests: 4}}})

	// HTTP/2 with prior knowledge: requests share one connection and count against
	// http2MaxRequests, not maxConnections.
	h2 := pm.httpClient(true)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+userAddr+"/chunks", nil)
			req.Host = userSvc
			resp, err := h2.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || string(body) != "chunk0;chunk1;chunk2;chunk3;chunk4;" {
				errs <- fmt.Sprintf("HTTP/%d %d %q", resp.ProtoMajor, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	// An upgrade is routed (and rewritten), then copied both ways.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pm.dial(ctx, "tcp", userAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /socket HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nfirst\n", userSvc)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d %v", resp.StatusCode, resp.Header)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if rest, _ := io.ReadAll(br); string(rest) != "echo first\nbye\n" {
		t.Fatalf("after the upgrade: %q", rest)
	}
}

func TestPassthroughLoadBalancer(t *testing.T) {
	pm := newPolicyMesh(t, nil)
	a := startBackend(t, "a", nil)
	// Discovery's endpoint is dead; PASSTHROUGH goes to the address the application dialled.
	pm.service(t, userSvc, discovery.Endpoint{Addr: netipAddr(t, closedPort(t))})
	pm.setPolicy(nil, policy.Destination{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{LoadBalancer: policy.LoadBalancerPassthrough}})
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.addr.String()+"/p", nil)
	req.Host = userSvc
	resp, err := pm.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "a /p 0" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}
