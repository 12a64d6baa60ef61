package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
)

// The tests run two proxies on loopback, as iptables would use them:
//
//	client -> A outbound -> (mTLS) -> B inbound -> server
//
// fakeNAT stands for iptables and conntrack: a dial through it connects to a proxy's
// listener and remembers the address the caller meant, which the proxy reads back as the
// original destination.
type fakeNAT struct {
	mu   sync.Mutex
	orig map[string]chan netip.AddrPort // the dialler's local address -> the address it meant
}

func newNAT() *fakeNAT { return &fakeNAT{orig: map[string]chan netip.AddrPort{}} }

func (n *fakeNAT) entry(key string) chan netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.orig[key]
	if !ok {
		ch = make(chan netip.AddrPort, 1)
		n.orig[key] = ch
	}
	return ch
}

// dialVia returns a dial function that connects to listener in place of the address asked.
func (n *fakeNAT) dialVia(listener string) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		meant, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", listener)
		if err != nil {
			return nil, err
		}
		n.entry(c.LocalAddr().String()) <- meant
		return c, nil
	}
}

// origDst answers what the peer meant. Every connection to a proxy in these tests comes
// through a NAT; the dialler may record it just after the proxy accepted it.
func (n *fakeNAT) origDst(c *net.TCPConn) (netip.AddrPort, error) {
	key := c.RemoteAddr().String()
	select {
	case dst := <-n.entry(key):
		n.mu.Lock()
		delete(n.orig, key)
		n.mu.Unlock()
		return dst, nil
	case <-time.After(10 * time.Second):
		return netip.AddrPort{}, fmt.Errorf("fake NAT: no record of %s", key)
	}
}

const (
	clientSA = "spiffe://cluster.local/ns/test/sa/client"
	serverSA = "spiffe://cluster.local/ns/test/sa/server"
)

// mesh is two proxies and the NATs in front of them.
type mesh struct {
	a, b       *Proxy
	natA, natB *fakeNAT
	table      *discovery.Static
	pki        *testpki.PKI
	// behindB are the server addresses only reachable through B (A dials them via B).
	behindB sync.Map
}

type meshConfig struct {
	plaintext   bool // identity disabled in both proxies
	opaquePorts []uint16
	tweakA      func(*Options)
	tweakB      func(*Options)
}

func quietLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("LM_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newMesh(t testing.TB, cfg meshConfig) *mesh {
	t.Helper()
	m := &mesh{natA: newNAT(), natB: newNAT(), table: discovery.NewStatic(), pki: testpki.New(t)}
	if cfg.opaquePorts == nil {
		cfg.opaquePorts = []uint16{}
	}
	optsB := Options{
		InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0",
		OrigDst: m.natB.origDst, OpaquePorts: cfg.opaquePorts, Logger: quietLogger(),
		ShutdownGrace: 5 * time.Second,
	}
	if !cfg.plaintext {
		optsB.TLS = m.newTLS(t, serverSA)
	}
	if cfg.tweakB != nil {
		cfg.tweakB(&optsB)
	}
	m.b = startProxy(t, optsB)
	inboundB := m.b.InboundAddr().String()
	optsA := Options{
		InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0",
		OrigDst: m.natA.origDst, OpaquePorts: cfg.opaquePorts, Logger: quietLogger(),
		Resolver: m.table, PeerInboundPort: m.b.InboundAddr().(*net.TCPAddr).AddrPort().Port(),
		ShutdownGrace: 5 * time.Second,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if _, ok := m.behindB.Load(addr); ok || addr == inboundB {
				return m.natB.dialVia(inboundB)(ctx, network, addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	if !cfg.plaintext {
		optsA.TLS = m.newTLS(t, clientSA)
	}
	if cfg.tweakA != nil {
		cfg.tweakA(&optsA)
	}
	m.a = startProxy(t, optsA)
	return m
}

func (m *mesh) newTLS(t testing.TB, id string) *meshtls.TLS {
	t.Helper()
	tlsConf, err := meshtls.New(meshtls.Options{Source: m.pki.Source(t, id)})
	if err != nil {
		t.Fatal(err)
	}
	return tlsConf
}

func startProxy(t testing.TB, opts Options) *Proxy {
	t.Helper()
	opts.CoalesceWrites = true // as a sidecar runs
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

// serve registers addr as a meshed server behind B (identity id; "" for not meshed, so A
// reaches it without mTLS through B's plaintext path).
func (m *mesh) serve(t testing.TB, addr string, id string) {
	t.Helper()
	m.behindB.Store(addr, true)
	ep := discovery.Endpoint{Addr: netip.MustParseAddrPort(addr)}
	if id != "" {
		ep.Identity = testpki.ID(t, id)
	}
	if err := m.table.Add(addr, ep); err != nil {
		t.Fatal(err)
	}
}

// dial connects to addr as the application would: through A's outbound listener.
func (m *mesh) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	return m.natA.dialVia(m.a.OutboundAddr().String())(ctx, "tcp", addr)
}

// openTCP connects to addr through A as the application would (within 20 s), with a
// deadline d from now on every read and write (none when d is 0); the connection is closed
// when the test ends.
func (m *mesh) openTCP(t testing.TB, addr string, d time.Duration) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := m.dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if d > 0 {
		_ = c.SetDeadline(time.Now().Add(d))
	}
	return c
}

// httpClient sends requests through A; h2 selects HTTP/2 with prior knowledge.
func (m *mesh) httpClient(h2 bool) *http.Client {
	var protocols http.Protocols
	if h2 {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: m.dial, Protocols: &protocols, DisableCompression: true}}
}

// appServer is the application behind B: it records what it saw.
type appServer struct {
	addr     string
	requests atomic.Int64
	srv      *http.Server
}

func startApp(t testing.TB) *appServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &appServer{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		app.requests.Add(1)
		w.Header().Set("X-Seen-Client-Id", r.Header.Get(ClientIDHeader))
		w.Header().Set("X-Seen-Proto", r.Proto)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Mesh-Headers", meshHeaderNames(r.Header))
		if ua, ok := r.Header["User-Agent"]; ok {
			w.Header().Set("X-Seen-User-Agent", "["+strings.Join(ua, ",")+"]")
		}
		if r.Header.Get("X-Hop") != "" || r.Header.Get("Keep-Alive") != "" {
			w.Header().Set("X-Seen-Hop", "yes")
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Lightmesh-Proxy-Error", "spoofed by the app")
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, n)
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		app.requests.Add(1)
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
	})
	mux.HandleFunc("/chunks", func(w http.ResponseWriter, r *http.Request) {
		app.requests.Add(1)
		for i := range 5 {
			fmt.Fprintf(w, "chunk%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		app.requests.Add(1)
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, io.LimitReader(zeros{}, n))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		app.requests.Add(1)
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-Client-Id: %s\r\n\r\n", r.Header.Get(ClientIDHeader))
		_ = rw.Flush()
		// Echo lines until the client half-closes, then say goodbye.
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				break
			}
			fmt.Fprintf(rw, "echo %s", line)
			_ = rw.Flush()
		}
		fmt.Fprint(rw, "bye\n")
		_ = rw.Flush()
	})
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	app.srv = &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = app.srv.Serve(ln) }()
	t.Cleanup(func() { app.srv.Close() })
	return app
}

func meshHeaderNames(h http.Header) string {
	var names []string
	for name := range h {
		if strings.HasPrefix(name, MeshHeaderPrefix) {
			names = append(names, name)
		}
	}
	return strings.Join(names, ",")
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// tcpServer accepts connections and runs handle on each.
func tcpServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// rawRequest writes raw to a connection through A to target and returns what comes back
// until the proxy closes the connection.
func (m *mesh) rawRequest(t testing.TB, target, raw string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := m.dial(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(bufio.NewReader(c))
	return string(out)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func netipAddr(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pkiID(t testing.TB, s string) identity.SpiffeID { return testpki.ID(t, s) }

func newTLSFrom(src meshtls.Source, clock identity.Clock) (*meshtls.TLS, error) {
	return meshtls.New(meshtls.Options{Source: src, Clock: clock})
}

// closedPort returns an address where nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
