package dataplane

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// TestHostileRequests sends malformed HTTP/1 on a raw connection through a real proxy and
// checks the answer, that the connection is closed, and that the app saw nothing.
func TestHostileRequests(t *testing.T) {
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.HTTP.MaxHeaderBytes = 4096; o.HTTP.MaxHeaderCount = 20 }})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	host := "Host: " + app.addr + "\r\n"
	many := strings.Repeat("X-A: b\r\n", 21)
	for _, tc := range []struct {
		name, raw string
		status    string
	}{
		{"TE and CL", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "400"},
		{"CL and TE", "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"conflicting CL", "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400"},
		{"negative CL", "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", "400"},
		{"plus CL", "POST / HTTP/1.1\r\n" + host + "Content-Length: +4\r\n\r\nabcd", "400"},
		{"malformed chunk size", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "400"},
		{"chunked twice", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"TE gzip", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "400"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X-A: b\r\n c\r\n\r\n", "400"},
		{"space before colon", "GET / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n", "400"},
		{"bare LF", "GET / HTTP/1.1\n" + host + "\n", "400"},
		{"bare LF in fields", "GET / HTTP/1.1\r\n" + host + "X-A: b\n\r\n", "400"},
		{"control character", "GET / HTTP/1.1\r\n" + host + "X-A: b\x00c\r\n\r\n", "400"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"two Hosts", "GET / HTTP/1.1\r\n" + host + host + "\r\n", "400"},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "405"},
		{"head too large", "GET / HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", "431"},
		{"too many fields", "GET / HTTP/1.1\r\n" + host + many + "\r\n", "431"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := app.requests.Load()
			out := m.rawRequest(t, app.addr, tc.raw)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tc.status+" ") {
				t.Fatalf("answered %q, want %s", out, tc.status)
			}
			if !strings.Contains(out, "Connection: close\r\n") || !strings.Contains(strings.ToLower(out), "lightmesh-proxy-error: ") {
				t.Errorf("answer lacks Connection: close or the error header: %q", out)
			}
			if n := app.requests.Load() - before; n != 0 {
				t.Errorf("%d requests reached the app", n)
			}
		})
	}
}

func TestSmugglingAttemptOnKeepAlive(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	host := "Host: " + app.addr + "\r\n"
	// A valid request, then one that would hide a second request in its body for a server
	// that prefers Content-Length.
	out := m.rawRequest(t, app.addr, "GET /first HTTP/1.1\r\n"+host+"\r\n"+
		"POST /second HTTP/1.1\r\n"+host+"Content-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"+host+"\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK") || !strings.Contains(out, "GET /first 0") || !strings.Contains(out, "HTTP/1.1 400 Bad Request") {
		t.Fatalf("answered %q", out)
	}
	if strings.Contains(out, "smuggled") || app.requests.Load() != 1 {
		t.Errorf("the app saw %d requests; answer %q", app.requests.Load(), out)
	}
}

func TestH2CUpgradeIsNotPerformed(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	out := m.rawRequest(t, app.addr, "GET /up HTTP/1.1\r\nHost: "+app.addr+"\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK") || !strings.Contains(out, "GET /up 0") {
		t.Fatalf("answered %q", out)
	}
}

func TestHeaderLimitsOnHTTP2(t *testing.T) {
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.HTTP.MaxHeaderCount = 10 }})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	req, _ := http.NewRequest(http.MethodGet, "http://"+app.addr+"/", nil)
	for i := range 11 {
		req.Header.Add("X-Many", strings.Repeat("v", i+1))
	}
	resp, err := m.httpClient(true).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get(ProxyErrorHeader) != "too-many-headers" {
		t.Errorf("answered %d %v", resp.StatusCode, resp.Header)
	}
	if app.requests.Load() != 0 {
		t.Error("the request reached the app")
	}
}

func TestProxyErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		m := newMesh(t, meshConfig{})
		addr := closedPort(t)
		resp, _ := get(t, m.httpClient(false), "http://"+addr+"/")
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ProxyErrorHeader) != "connection-refused" {
			t.Errorf("answered %d %q", resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
		}
	})
	t.Run("identity mismatch fails closed", func(t *testing.T) {
		m := newMesh(t, meshConfig{})
		app := startApp(t)
		m.serve(t, app.addr, "spiffe://cluster.local/ns/test/sa/someone-else")
		resp, _ := get(t, m.httpClient(false), "http://"+app.addr+"/")
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ProxyErrorHeader) != "identity-mismatch" {
			t.Errorf("answered %d %q", resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
		}
		if app.requests.Load() != 0 {
			t.Error("the request reached the app")
		}
	})
	t.Run("server from an unknown CA", func(t *testing.T) {
		m := newMesh(t, meshConfig{tweakB: func(o *Options) {
			other := testpki.New(t)
			o.TLS, _ = newTLSFrom(other.Source(t, serverSA), nil)
		}})
		app := startApp(t)
		m.serve(t, app.addr, serverSA)
		resp, _ := get(t, m.httpClient(false), "http://"+app.addr+"/")
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ProxyErrorHeader) != "tls-handshake-failed" {
			t.Errorf("answered %d %q", resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
		}
		if app.requests.Load() != 0 {
			t.Error("the request reached the app")
		}
	})
	t.Run("expired client certificate", func(t *testing.T) {
		var pki *testpki.PKI
		m := newMesh(t, meshConfig{tweakA: func(o *Options) {}})
		pki = m.pki
		src := pki.Source(t, clientSA)
		src.SetCertificate(pki.LeafAt(t, clientSA, time.Now().Add(-48*time.Hour), time.Hour))
		m.a.opts.TLS, _ = newTLSFrom(src, nil)
		app := startApp(t)
		m.serve(t, app.addr, serverSA)
		resp, err := m.httpClient(false).Get("http://" + app.addr + "/")
		if err == nil {
			resp.Body.Close()
			// Refused before any byte is sent, and said so (not a later "upstream error").
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ProxyErrorHeader) != reasonTLS {
				t.Errorf("answered %d %q, want 502 %s", resp.StatusCode, resp.Header.Get(ProxyErrorHeader), reasonTLS)
			}
		}
		if app.requests.Load() != 0 {
			t.Error("the request reached the app")
		}
	})
	t.Run("server clock past the certificates", func(t *testing.T) {
		clock := identity.NewFakeClock(time.Now().Add(48 * time.Hour))
		m := newMesh(t, meshConfig{})
		// B sees every client certificate as expired.
		srcB := m.pki.Source(t, serverSA)
		m.b.opts.TLS, _ = newTLSFrom(srcB, clock)
		app := startApp(t)
		m.serve(t, app.addr, serverSA)
		resp, err := m.httpClient(false).Get("http://" + app.addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		if app.requests.Load() != 0 {
			t.Error("the request reached the app")
		}
	})
	t.Run("opaque identity mismatch closes", func(t *testing.T) {
		addr := tcpServer(t, func(c net.Conn) { _, _ = io.WriteString(c, "secret") })
		m := newMesh(t, meshConfig{opaquePorts: []uint16{netipAddr(t, addr).Port()}})
		m.serve(t, addr, "spiffe://cluster.local/ns/test/sa/someone-else")
		c := m.openTCP(t, addr, 20*time.Second)
		got, _ := io.ReadAll(c)
		if len(got) != 0 {
			t.Errorf("read %q through a connection to the wrong identity", got)
		}
	})
}
