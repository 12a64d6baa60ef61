package dataplane

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// The inbound policy tests run proxy B (the server's) with a StaticPolicy, and three
// clients: "order" (a proxy with the order-service identity of the seed's policy), "other"
// (proxy A, identity clientSA) and "plain" (plaintext straight to B's inbound listener, as
// an unmeshed pod or the kubelet would).

const inboundOrderSA = "spiffe://cluster.local/ns/microservices/sa/order-service"

// seedAuthz is demo/istio/mtls-policy.yaml's AuthorizationPolicy, translated.
func seedAuthz() policy.AuthorizationPolicy {
	return policy.AuthorizationPolicy{
		Namespace: "microservices", Name: "user-service-policy",
		Selector: map[string]string{"app": "user-service"},
		Action:   policy.ActionAllow,
		Rules: []policy.Rule{{
			From: []policy.Source{{Principals: []string{"cluster.local/ns/microservices/sa/order-service"}}},
			To:   []policy.Operation{{Methods: []string{"GET", "POST"}, Paths: []string{"/api/users/*"}}},
		}},
	}
}

// allowNothing is `spec: {}`: an ALLOW policy without rules, which denies everything.
func allowNothing() policy.AuthorizationPolicy {
	return policy.AuthorizationPolicy{Namespace: "microservices", Name: "allow-nothing", Action: policy.ActionAllow}
}

func inboundWith(mode policy.PeerAuthnMode, policies ...policy.AuthorizationPolicy) *policy.InboundPolicy {
	return &policy.InboundPolicy{
		PeerAuthentication:    policy.WorkloadPeerAuthentication{Mode: mode},
		AuthorizationPolicies: policies,
	}
}

// inboundApp is an HTTP application that records the request target it received.
type inboundApp struct {
	addr     string
	requests atomic.Int64
	mu       sync.Mutex
	last     string
}

func startInboundApp(t testing.TB) *inboundApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &inboundApp{addr: ln.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.requests.Add(1)
		app.mu.Lock()
		app.last = r.RequestURI
		app.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "app: "+r.Method+" "+r.RequestURI)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return app
}

func (a *inboundApp) lastTarget() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// policyLogBuffer is a log destination safe for the proxy's goroutines.
type policyLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *policyLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *policyLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// policyEnv is a mesh whose server proxy B enforces src, an HTTP app and a TCP echo server
// (on an opaque port) behind B, and the three clients.
type policyEnv struct {
	m        *mesh
	src      *discovery.StaticPolicy
	app      *inboundApp
	echo     string
	accepted atomic.Int64 // connections the echo server accepted
	logs     *policyLogBuffer

	order, other, plain             *http.Client
	orderDial, otherDial, plainDial DialFunc
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	env := &policyEnv{src: discovery.NewStaticPolicy(), logs: &policyLogBuffer{}}
	env.echo = tcpServer(t, func(c net.Conn) {
		env.accepted.Add(1)
		_, _ = io.Copy(c, c)
	})
	opaque := []uint16{netipAddr(t, env.echo).Port()}
	env.m = newMesh(t, meshConfig{opaquePorts: opaque, tweakB: func(o *Options) {
		o.Policy = env.src
		o.Logger = slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}})
	env.app = startInboundApp(t)
	env.m.serve(t, env.app.addr, serverSA)
	env.m.serve(t, env.echo, serverSA)

	env.other, env.otherDial = env.m.httpClient(false), env.m.dial
	env.order, env.orderDial = env.m.clientProxyAs(t, inboundOrderSA, opaque)
	inboundB := env.m.b.InboundAddr().String()
	env.plainDial = func(ctx context.Context, _, addr string) (net.Conn, error) {
		return env.m.natB.dialVia(inboundB)(ctx, "tcp", addr)
	}
	env.plain = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: env.plainDial, DisableCompression: true}}
	for _, c := range []*http.Client{env.order, env.other, env.plain} {
		t.Cleanup(c.CloseIdleConnections)
	}
	return env
}

// clientProxyAs starts another client proxy, with identity id, in front of B and returns an HTTP
// client and a dial function that go through it.
func (m *mesh) clientProxyAs(t testing.TB, id string, opaquePorts []uint16) (*http.Client, DialFunc) {
	t.Helper()
	nat := newNAT()
	inboundB := m.b.InboundAddr().String()
	px := startProxy(t, Options{
		InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0",
		OrigDst: nat.origDst, OpaquePorts: opaquePorts, Logger: quietLogger(),
		Resolver: m.table, PeerInboundPort: m.b.InboundAddr().(*net.TCPAddr).AddrPort().Port(),
		ShutdownGrace: 5 * time.Second, TLS: m.newTLS(t, id),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if _, ok := m.behindB.Load(addr); ok || addr == inboundB {
				return m.natB.dialVia(inboundB)(ctx, network, addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	})
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		return nat.dialVia(px.OutboundAddr().String())(ctx, "tcp", addr)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dial, DisableCompression: true}}, dial
}

type policyAnswer struct {
	status int
	reason string // ProxyErrorHeader
	body   string
	close  bool // the response said Connection: close
}

func (env *policyEnv) do(t *testing.T, c *http.Client, method, path string) policyAnswer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+env.app.addr+path, strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodGet || method == http.MethodHead {
		req.Body, req.ContentLength = nil, 0
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return policyAnswer{status: resp.StatusCode, reason: resp.Header.Get(ProxyErrorHeader), body: string(body), close: resp.Close}
}

// checkHTTP sends a request and checks the answer: allowed ones reach the app with
// wantTarget (when set), denied ones (status 403) never reach it.
func (env *policyEnv) checkHTTP(t *testing.T, c *http.Client, method, path string, wantStatus int, wantReason, wantTarget string) policyAnswer {
	t.Helper()
	before := env.app.requests.Load()
	got := env.do(t, c, method, path)
	if got.status != wantStatus || got.reason != wantReason {
		t.Fatalf("%s %s: answered %d %q (%q), want %d %q", method, path, got.status, got.reason, got.body, wantStatus, wantReason)
	}
	reached := env.app.requests.Load() - before
	switch {
	case wantStatus == http.StatusOK && reached != 1:
		t.Errorf("%s %s: %d requests reached the app, want 1", method, path, reached)
	case wantStatus != http.StatusOK && reached != 0:
		t.Errorf("%s %s: denied, yet %d requests reached the app", method, path, reached)
	}
	if wantStatus == http.StatusOK && wantTarget != "" {
		if target := env.app.lastTarget(); target != wantTarget {
			t.Errorf("%s %s: the app received %q, want %q", method, path, target, wantTarget)
		}
	}
	if wantStatus == http.StatusForbidden && wantReason == reasonInboundForbidden && got.body != rbacDeniedBody {
		t.Errorf("%s %s: body %q, want %q", method, path, got.body, rbacDeniedBody)
	}
	return got
}

// tcpEcho sends "ping" on a connection to the echo server through dial, half-closes, and
// returns what came back before the connection ended.
func (env *policyEnv) tcpEcho(t *testing.T, dial DialFunc) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", env.echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = io.WriteString(c, "ping")
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	out, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the connection was neither answered nor closed: %v", err)
	}
	return string(out)
}

// checkTCP checks that a connection through dial is echoed (allowed) or closed without the
// echo server ever accepting it (denied).
func (env *policyEnv) checkTCP(t *testing.T, dial DialFunc, allowed bool) {
	t.Helper()
	before := env.accepted.Load()
	out := env.tcpEcho(t, dial)
	reached := env.accepted.Load() - before
	if allowed {
		if out != "ping" || reached != 1 {
			t.Errorf("allowed connection: echoed %q, %d connections reached the app", out, reached)
		}
		return
	}
	if out != "" || reached != 0 {
		t.Errorf("denied connection: echoed %q, %d connections reached the app", out, reached)
	}
}

func TestInboundSeedAuthorizationPolicy(t *testing.T) {
	env := newPolicyEnv(t)
	env.src.SetInbound(inboundWith(policy.ModePermissive, seedAuthz()))
	for _, tc := range []struct {
		name         string
		client       *http.Client
		method, path string
		status       int
		reason       string
		target       string // what the app must receive
	}{
		{"GET from order-service", env.order, "GET", "/api/users/42", 200, "", "/api/users/42"},
		{"POST from order-service", env.order, "POST", "/api/users/42", 200, "", "/api/users/42"},
		{"query is forwarded, not matched", env.order, "GET", "/api/users/42?expand=orders", 200, "", "/api/users/42?expand=orders"},
		{"GET from another identity", env.other, "GET", "/api/users/42", 403, reasonInboundForbidden, ""},
		{"POST from another identity", env.other, "POST", "/api/users/42", 403, reasonInboundForbidden, ""},
		{"PUT from order-service", env.order, "PUT", "/api/users/42", 403, reasonInboundForbidden, ""},
		{"DELETE from order-service", env.order, "DELETE", "/api/users/42", 403, reasonInboundForbidden, ""},
		{"/api/users is not /api/users/*", env.order, "GET", "/api/users", 403, reasonInboundForbidden, ""},
		{"another path", env.order, "GET", "/api/orders/1", 403, reasonInboundForbidden, ""},
		{"merged slashes", env.order, "GET", "//api/users/42", 200, "", "/api/users/42"},
		{"percent-encoded unreserved", env.order, "GET", "/api/%75sers/42", 200, "", "/api/users/42"},
		{"dot segments", env.order, "GET", "/api/x/../users/42", 200, "", "/api/users/42"},
		{"dot segments leaving the prefix", env.order, "GET", "/api/users/../admin/1", 403, reasonInboundForbidden, ""},
		{"encoded slash stays one segment", env.order, "GET", "/api/users/a%2Fb", 200, "", "/api/users/a%2Fb"},
		{"plaintext client (no principal)", env.plain, "GET", "/api/users/42", 403, reasonInboundForbidden, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.checkHTTP(t, tc.client, tc.method, tc.path, tc.status, tc.reason, tc.target)
		})
	}
	if n := env.m.b.Metrics().Sample("inbound_http_authz_allow_total", map[string]string{"authz_name": "microservices/user-service-policy", "reason": "allowed"}); n < 6 {
		t.Errorf("inbound_http_authz_allow_total = %v, want the 6 allowed requests", n)
	}
	if n := env.m.b.Metrics().Sample("inbound_http_authz_deny_total", map[string]string{"reason": "no-allow-matched", "target_addr": env.app.addr}); n < 8 {
		t.Errorf("inbound_http_authz_deny_total = %v, want the 8 denied requests", n)
	}
}

func TestInboundAuthorizationSemantics(t *testing.T) {
	env := newPolicyEnv(t)
	denyOne := policy.AuthorizationPolicy{Namespace: "microservices", Name: "deny-13", Action: policy.ActionDeny,
		Rules: []policy.Rule{{To: []policy.Operation{{Paths: []string{"/api/users/13"}}}}}}
	audit := policy.AuthorizationPolicy{Namespace: "microservices", Name: "audit-posts", Action: policy.ActionAudit,
		Rules: []policy.Rule{{To: []policy.Operation{{Methods: []string{"POST"}}}}}}
	for _, tc := range []struct {
		name         string
		inbound      *policy.InboundPolicy
		client       *http.Client
		method, path string
		status       int
		reason       string
	}{
		{"no policy source answer: allowed", nil, env.plain, "GET", "/anything", 200, ""},
		{"spec {} denies order-service", inboundWith(policy.ModePermissive, allowNothing()), env.order, "GET", "/api/users/42", 403, reasonInboundForbidden},
		{"spec {} denies plaintext", inboundWith(policy.ModePermissive, allowNothing()), env.plain, "GET", "/", 403, reasonInboundForbidden},
		{"DENY before ALLOW: denied", inboundWith(policy.ModePermissive, seedAuthz(), denyOne), env.order, "GET", "/api/users/13", 403, reasonInboundForbidden},
		{"DENY before ALLOW: dot segments do not dodge it", inboundWith(policy.ModePermissive, seedAuthz(), denyOne), env.order, "GET", "/api/users/x/../13", 403, reasonInboundForbidden},
		{"DENY before ALLOW: others allowed", inboundWith(policy.ModePermissive, seedAuthz(), denyOne), env.order, "GET", "/api/users/42", 200, ""},
		{"DENY only: the rest allowed", inboundWith(policy.ModePermissive, denyOne), env.plain, "GET", "/api/users/42", 200, ""},
		{"AUDIT does not decide", inboundWith(policy.ModePermissive, audit), env.other, "POST", "/api/users/42", 200, ""},
		{"PERMISSIVE accepts plaintext", inboundWith(policy.ModePermissive), env.plain, "GET", "/api/users/42", 200, ""},
		{"DISABLE accepts plaintext", inboundWith(policy.ModeDisable), env.plain, "GET", "/api/users/42", 200, ""},
		{"DISABLE still accepts mesh TLS", inboundWith(policy.ModeDisable, seedAuthz()), env.order, "GET", "/api/users/42", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.src.SetInbound(tc.inbound)
			env.checkHTTP(t, tc.client, tc.method, tc.path, tc.status, tc.reason, "")
		})
	}
	if n := strings.Count(env.logs.String(), `"msg":"authorization audit"`); n != 1 {
		t.Errorf("logged %d audit lines, want 1:\n%s", n, env.logs.String())
	}
	if !strings.Contains(env.logs.String(), `"audit_policy":"microservices/audit-posts"`) {
		t.Errorf("the audit line does not name the policy:\n%s", env.logs.String())
	}
}

// rawPlain sends raw on a plaintext connection to B and returns what came back until B
// closed the connection; closed is false when B kept it open.
func (env *policyEnv) rawPlain(t *testing.T, raw string) (out string, closed bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := env.plainDial(ctx, "tcp", env.app.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	return string(b), err == nil
}

func TestInboundPeerAuthentication(t *testing.T) {
	env := newPolicyEnv(t)
	appPort := uint32(netipAddr(t, env.app.addr).Port())
	strict := inboundWith(policy.ModeStrict, allowNothing())
	strict.Probes = []policy.Probe{{Port: appPort, Path: "/healthz"}, {Port: appPort, Path: "/ready"}}
	env.src.SetInbound(strict)
	host := "Host: " + env.app.addr + "\r\n"

	t.Run("probe GET passes STRICT and a deny-all policy", func(t *testing.T) {
		env.checkHTTP(t, env.plain, "GET", "/healthz", 200, "", "/healthz")
		env.checkHTTP(t, env.plain, "HEAD", "/ready", 200, "", "")
	})
	for _, tc := range []struct{ name, raw string }{
		{"plaintext GET", "GET /api/users/42 HTTP/1.1\r\n" + host + "\r\n"},
		{"probe path with POST", "POST /healthz HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
		{"invalid path", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n"},
	} {
		t.Run("STRICT refuses "+tc.name, func(t *testing.T) {
			before := env.app.requests.Load()
			out, closed := env.rawPlain(t, tc.raw)
			if !strings.HasPrefix(out, "HTTP/1.1 403 ") || !strings.Contains(out, "\r\nConnection: close\r\n") ||
				!strings.Contains(out, ProxyErrorHeader+": "+reasonInboundMTLS+"\r\n") {
				t.Errorf("answered %q, want 403 mtls-required with Connection: close", out)
			}
			if !closed {
				t.Error("the proxy kept the connection open")
			}
			if n := env.app.requests.Load() - before; n != 0 {
				t.Errorf("%d requests reached the app", n)
			}
		})
	}
	t.Run("STRICT: a probe path on a port without that probe is refused", func(t *testing.T) {
		other := *strict
		other.Probes = []policy.Probe{{Port: appPort + 1, Path: "/healthz"}}
		env.src.SetInbound(&other)
		defer env.src.SetInbound(strict)
		env.checkHTTP(t, env.plain, "GET", "/healthz", 403, reasonInboundMTLS, "")
	})
	t.Run("STRICT refuses plaintext TCP", func(t *testing.T) {
		env.checkTCP(t, env.plainDial, false)
	})
	t.Run("STRICT accepts mesh TLS", func(t *testing.T) {
		env.src.SetInbound(inboundWith(policy.ModeStrict, seedAuthz()))
		defer env.src.SetInbound(strict)
		env.checkHTTP(t, env.order, "GET", "/api/users/42", 200, "", "/api/users/42")
	})
	t.Run("a PERMISSIVE port of a STRICT workload accepts plaintext", func(t *testing.T) {
		pa := inboundWith(policy.ModeStrict)
		pa.PeerAuthentication.PortModes = map[uint32]policy.PeerAuthnMode{appPort: policy.ModePermissive}
		env.src.SetInbound(pa)
		defer env.src.SetInbound(strict)
		env.checkHTTP(t, env.plain, "GET", "/api/users/42", 200, "", "/api/users/42")
		env.checkTCP(t, env.plainDial, false) // the echo port is still STRICT
	})
	t.Run("a STRICT port of a PERMISSIVE workload refuses plaintext", func(t *testing.T) {
		pa := inboundWith(policy.ModePermissive)
		pa.PeerAuthentication.PortModes = map[uint32]policy.PeerAuthnMode{appPort: policy.ModeStrict}
		env.src.SetInbound(pa)
		defer env.src.SetInbound(strict)
		env.checkHTTP(t, env.plain, "GET", "/api/users/42", 403, reasonInboundMTLS, "")
		env.checkTCP(t, env.plainDial, true)
	})
	t.Run("PERMISSIVE accepts plaintext HTTP and TCP", func(t *testing.T) {
		env.src.SetInbound(inboundWith(policy.ModePermissive))
		defer env.src.SetInbound(strict)
		env.checkHTTP(t, env.plain, "GET", "/api/users/42", 200, "", "/api/users/42")
		env.checkTCP(t, env.plainDial, true)
	})
	if n := env.m.b.Metrics().Sample("inbound_tcp_authz_deny_total", map[string]string{"reason": reasonInboundMTLS}); n != 2 {
		t.Errorf("inbound_tcp_authz_deny_total{reason=mtls-required} = %v, want 2", n)
	}
	if n := env.m.b.Metrics().Sample("inbound_http_authz_allow_total", map[string]string{"reason": "probe"}); n != 2 {
		t.Errorf("inbound_http_authz_allow_total{reason=probe} = %v, want 2", n)
	}
}

func TestInboundInvalidPath(t *testing.T) {
	env := newPolicyEnv(t)
	env.src.SetInbound(inboundWith(policy.ModePermissive))
	out, _ := env.rawPlain(t, "OPTIONS * HTTP/1.1\r\nHost: "+env.app.addr+"\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, ProxyErrorHeader+": "+reasonInboundInvalidPath+"\r\n") {
		t.Errorf("answered %q, want 400 invalid-path", out)
	}
	if n := env.app.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the app", n)
	}
}

func TestInboundTCPAuthorization(t *testing.T) {
	env := newPolicyEnv(t)
	tcpAllow := policy.AuthorizationPolicy{Namespace: "microservices", Name: "tcp-from-order", Action: policy.ActionAllow,
		Rules: []policy.Rule{{From: []policy.Source{{Principals: []string{"cluster.local/ns/microservices/sa/order-service"}}}}}}
	denyPort := policy.AuthorizationPolicy{Namespace: "microservices", Name: "deny-echo", Action: policy.ActionDeny,
		Rules: []policy.Rule{{To: []policy.Operation{{Ports: []uint32{uint32(netipAddr(t, env.echo).Port())}, Methods: []string{"GET"}}}}}}
	for _, tc := range []struct {
		name    string
		inbound *policy.InboundPolicy
		dial    DialFunc
		allowed bool
	}{
		{"no policy: meshed allowed", nil, env.orderDial, true},
		{"no policy: plaintext allowed", nil, env.plainDial, true},
		{"principal rule allows order-service", inboundWith(policy.ModePermissive, tcpAllow), env.orderDial, true},
		{"principal rule denies another identity", inboundWith(policy.ModePermissive, tcpAllow), env.otherDial, false},
		{"principal rule denies plaintext", inboundWith(policy.ModePermissive, tcpAllow), env.plainDial, false},
		{"an ALLOW rule with HTTP fields never allows TCP", inboundWith(policy.ModePermissive, seedAuthz()), env.orderDial, false},
		{"a DENY rule ignores its HTTP fields for TCP", inboundWith(policy.ModePermissive, tcpAllow, denyPort), env.orderDial, false},
		{"spec {} denies TCP", inboundWith(policy.ModePermissive, allowNothing()), env.orderDial, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.src.SetInbound(tc.inbound)
			env.checkTCP(t, tc.dial, tc.allowed)
		})
	}
}

func TestInboundPolicyChangeAppliesToTheNextRequest(t *testing.T) {
	env := newPolicyEnv(t)
	env.src.SetInbound(inboundWith(policy.ModePermissive, seedAuthz()))
	// The same client, so the same kept-alive connections: no reconnection is needed.
	env.checkHTTP(t, env.order, "GET", "/api/users/42", 200, "", "")
	env.checkTCP(t, env.orderDial, false)
	env.src.SetInbound(inboundWith(policy.ModePermissive, allowNothing()))
	env.checkHTTP(t, env.order, "GET", "/api/users/42", 403, reasonInboundForbidden, "")
	env.src.SetInbound(nil)
	env.checkHTTP(t, env.order, "GET", "/api/users/42", 200, "", "")
	env.checkHTTP(t, env.other, "PUT", "/api/users/42", 200, "", "")
	env.checkTCP(t, env.orderDial, true)
	env.src.SetInbound(inboundWith(policy.ModeStrict))
	env.checkHTTP(t, env.plain, "GET", "/api/users/42", 403, reasonInboundMTLS, "")
	env.checkTCP(t, env.plainDial, false)
}

func TestInboundStrictRefusesPlaintextHTTP2(t *testing.T) {
	env := newPolicyEnv(t)
	env.src.SetInbound(inboundWith(policy.ModeStrict))
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: env.plainDial, Protocols: &protocols}}
	defer h2.CloseIdleConnections()
	got := env.checkHTTP(t, h2, "GET", "/api/users/42", 403, reasonInboundMTLS, "")
	if got.body != mtlsRequiredBody {
		t.Errorf("body %q", got.body)
	}
}

// BenchmarkInboundAuthorize measures the authorize step with the seed's policy on an
// in-memory exchange from order-service (allowed), for a clean path and one that needs
// normalising.
func BenchmarkInboundAuthorize(b *testing.B) {
	src := discovery.NewStaticPolicy()
	src.SetInbound(inboundWith(policy.ModeStrict, seedAuthz()))
	p, err := New(Options{InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0", Policy: src, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	allowed := 0
	h := Chain(HandlerFunc(func(ex *Exchange) { allowed++ }), p.authorize)
	ci := &connInfo{direction: inbound, origDst: netipAddr(b, "10.0.0.7:8080"), remote: netipAddr(b, "10.0.0.9:41234"),
		meshed: true, clientID: inboundOrderSA, principal: istioPrincipal(inboundOrderSA), tls: "true"}
	ctx := withConnInfo(context.Background(), ci)
	w := &nopWriter{h: http.Header{}}
	for _, path := range []string{"/api/users/42", "//api/users/../users/42"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://user-service:8080"+path, nil)
			req.Header = http.Header{"Accept": {"*/*"}, ClientIDHeader: {inboundOrderSA}}
			u := *req.URL
			allowed = 0
			b.ReportAllocs()
			for b.Loop() {
				*req.URL = u
				h.ServeHTTP(w, req)
			}
			if allowed != b.N {
				b.Fatalf("%d of %d requests allowed", allowed, b.N)
			}
		})
	}
}
