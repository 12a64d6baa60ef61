package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connCountingApp is an HTTP/1.1 application that echoes the method, path and body length,
// and counts the connections it accepted and closed.
type connCountingApp struct {
	addr string
	srv  *http.Server

	mu             sync.Mutex
	opened, closed int
}

func startConnCountingApp(t *testing.T, idleTimeout time.Duration) *connCountingApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &connCountingApp{addr: ln.Addr().String()}
	app.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idleTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+strconv.FormatInt(n, 10))
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			app.mu.Lock()
			defer app.mu.Unlock()
			switch s {
			case http.StateNew:
				app.opened++
			case http.StateClosed, http.StateHijacked:
				app.closed++
			}
		},
	}
	go func() { _ = app.srv.Serve(ln) }()
	t.Cleanup(func() { app.srv.Close() })
	return app
}

func (a *connCountingApp) conns() (opened, closed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.opened, a.closed
}

// request sends a request through the mesh and returns the status and body.
func request(t *testing.T, client *http.Client, method, url string, body io.Reader, length int64, expect string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	if expect != "" {
		req.Header.Set("Expect", expect)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// The inbound proxy sends HTTP/1 requests whose body is absent or small to the application
// with its own client (on the handler's goroutine, over kept-alive connections, with stale
// ones noticed), and streamed bodies and Expect: 100-continue with net/http's Transport.
func TestHTTP1ToTheApplication(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startConnCountingApp(t, time.Hour)
	m.serve(t, app.addr, serverSA)
	client := m.httpClient(false)
	base := "http://" + app.addr

	t.Run("small bodies and none: one kept-alive connection of the proxy's own client", func(t *testing.T) {
		for i := range 4 {
			method, body := http.MethodPost, "hello"
			if i%2 == 1 {
				method, body = http.MethodGet, ""
			}
			code, got := request(t, client, method, base+"/small", strings.NewReader(body), int64(len(body)), "")
			if want := method + " /small " + strconv.Itoa(len(body)); code != http.StatusOK || got != want {
				t.Fatalf("request %d: %d %q, want 200 %q", i, code, got, want)
			}
		}
		if opened, _ := app.conns(); opened != 1 {
			t.Errorf("the application accepted %d connections for four requests, want 1", opened)
		}
		if n := m.b.clients.app.IdleConns(); n != 1 {
			t.Errorf("the proxy's HTTP/1 client keeps %d idle connections, want the one it used", n)
		}
	})

	t.Run("a body over the in-memory limit streams through", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), 3*smallBodyLimit)
		code, got := request(t, client, http.MethodPut, base+"/big", bytes.NewReader(big), int64(len(big)), "")
		if want := "PUT /big " + strconv.Itoa(len(big)); code != http.StatusOK || got != want {
			t.Fatalf("%d %q, want 200 %q", code, got, want)
		}
	})

	t.Run("Expect: 100-continue", func(t *testing.T) {
		code, got := request(t, client, http.MethodPost, base+"/expect", strings.NewReader("hello"), 5, "100-continue")
		if code != http.StatusOK || got != "POST /expect 5" {
			t.Fatalf("%d %q, want 200 %q", code, got, "POST /expect 5")
		}
	})

	t.Run("a connection the application closed while idle is not used", func(t *testing.T) {
		opened, closed := app.conns()
		// The application closes every idle connection, as a server whose keep-alive
		// timeout ran out does.
		app.srv.SetKeepAlivesEnabled(false)
		waitFor(t, "the application to close its idle connections", func() bool {
			_, c := app.conns()
			return c == opened
		})
		app.srv.SetKeepAlivesEnabled(true)
		if closed == opened {
			t.Fatal("no connection was open to be closed: the test proves nothing")
		}
		// No request is sent again when its connection fails, so this one must not be sent on
		// the closed connection.
		code, got := request(t, client, http.MethodPost, base+"/after-close", strings.NewReader("abc"), 3, "")
		if code != http.StatusOK || got != "POST /after-close 3" {
			t.Fatalf("%d %q, want 200 %q", code, got, "POST /after-close 3")
		}
	})
}

// An application that resets a kept connection after reading a request gets no second copy
// of it: the client sees a 502 connection-reset (Envoy's upstream reset), whatever the
// method; a route's retryOn: reset is what sends such a request again.
func TestApplicationResetIsNotRetried(t *testing.T) {
	m := newMesh(t, meshConfig{})
	var requests atomic.Int32
	addr := tcpServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			requests.Add(1)
			if i == 1 {
				// The second request of the connection: reset, no answer.
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	m.serve(t, addr, serverSA)
	client := m.httpClient(false)
	if code, body := request(t, client, http.MethodGet, "http://"+addr+"/1", nil, 0, ""); code != http.StatusOK || body != "ok" {
		t.Fatalf("first request: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/2", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(ProxyErrorHeader) != reasonReset {
		t.Errorf("the reset request answered %d %s=%q, want 502 %s", resp.StatusCode, ProxyErrorHeader, resp.Header.Get(ProxyErrorHeader), reasonReset)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("the application read %d requests, want 2: the reset one was sent again", n)
	}
}
