package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBodyReadTimeout: a client that stops sending mid-body fails the handler's read with
// ErrBodyReadTimeout, and the connection is closed.
func TestBodyReadTimeout(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"Content-Length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\nhello"},
		{"chunked", "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5\r\nhello\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{respond: func(w http.ResponseWriter, _ *http.Request, s seen) {
				if s.BodyErr != nil {
					w.WriteHeader(http.StatusRequestTimeout)
				}
			}}
			s := newTestServer(t, rec, func(o *Options) { o.BodyReadTimeout = 50 * time.Millisecond })
			client, done := serve(t, s)
			_ = client.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := client.Write([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			// The client stays connected and silent; the server must give up by itself.
			out, err := io.ReadAll(client)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			client.Close() // the server lingers until the client closes
			<-done
			saw := rec.seen()
			if len(saw) != 1 || saw[0].Body != "hello" || !errors.Is(saw[0].BodyErr, ErrBodyReadTimeout) {
				t.Fatalf("the handler saw %+v; want body hello and %v", saw, ErrBodyReadTimeout)
			}
			if rs := parseResponses(t, string(out)); len(rs) != 1 || rs[0].status != http.StatusRequestTimeout || !rs[0].close {
				t.Fatalf("responses %+v", rs)
			}
		})
	}
	t.Run("first chunk never comes", func(t *testing.T) {
		rec := &recorder{}
		s := newTestServer(t, rec, func(o *Options) { o.BodyReadTimeout = 50 * time.Millisecond })
		client, done := serve(t, s)
		_ = client.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Write([]byte("POST / HTTP/1.1\r\n" + host + chunked + "\r\n")); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(client)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		client.Close() // the server lingers until the client closes
		<-done
		if rs := parseResponses(t, string(out)); len(rs) != 1 || rs[0].status != http.StatusRequestTimeout || len(rec.seen()) != 0 {
			t.Fatalf("responses %+v, handler saw %d", rs, len(rec.seen()))
		}
	})
}

// TestClientGoneCancelsContext: once the request is read, a client that closes its
// connection cancels the request's context, as net/http does.
func TestClientGoneCancelsContext(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"no body", get},
		{"body read to the end", "POST / HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi"},
		{"chunked body read to the end", "POST / HTTP/1.1\r\n" + host + chunked + "\r\n2\r\nhi\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			cause := make(chan error, 1)
			h := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				close(started)
				select {
				case <-r.Context().Done():
					cause <- context.Cause(r.Context())
				case <-time.After(10 * time.Second):
					cause <- errors.New("the context was not cancelled")
				}
			})
			client, done := serve(t, newTestServer(t, h, nil))
			if _, err := client.Write([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			<-started
			client.Close()
			if err := <-cause; !errors.Is(err, errClientGone) {
				t.Fatalf("cause %v, want %v", err, errClientGone)
			}
			<-done
		})
	}
	t.Run("pipelined request does not cancel", func(t *testing.T) {
		first, second := make(chan struct{}), make(chan struct{})
		var firstErr error
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/2" {
				close(second)
				return
			}
			close(first)
			// The next request arriving is not the client going away.
			waitFor(t, "the pipelined bytes", func() bool {
				return r.Context().Err() != nil || cr(w).hasPendingByte()
			})
			firstErr = r.Context().Err()
		})
		client, _ := serve(t, newTestServer(t, h, nil))
		if _, err := client.Write([]byte(get)); err != nil {
			t.Fatal(err)
		}
		<-first
		if _, err := client.Write([]byte("GET /2 HTTP/1.1\r\n" + host + "\r\n")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-second:
		case <-time.After(10 * time.Second):
			t.Fatal("the pipelined request was not served")
		}
		if firstErr != nil {
			t.Fatalf("first request's context: %v", firstErr)
		}
	})
}

// cr returns the connReader behind w (tests only).
func cr(w http.ResponseWriter) *connReader { return w.(*responseWriter).cr }

func (cr *connReader) hasPendingByte() bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.hasByte
}

// TestHijackKeepsEarlyBytes: bytes the client sent right behind an upgrade request (read in
// the background or buffered) reach the handler that hijacks the connection.
func TestHijackKeepsEarlyBytes(t *testing.T) {
	got := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 10)
		_, err = io.ReadFull(rw, b)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	})
	client, _ := serve(t, newTestServer(t, h, nil))
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n" + host + "Upgrade: test\r\nConnection: Upgrade\r\n\r\nhello")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := client.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "helloworld" {
		t.Fatalf("the handler read %q", s)
	}
}

// TestBodyReadAfterHandler: a goroutine that still reads the body when the handler returns
// (a transport streaming the request upstream) gets an error, and the connection closes.
func TestBodyReadAfterHandler(t *testing.T) {
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			readErr <- err
		}()
		// Return while that read waits for body bytes that do not come.
		b := r.Body.(*serverBody)
		waitFor(t, "the body read to block", func() bool {
			if b.mu.TryLock() {
				b.mu.Unlock()
				return false
			}
			return true
		})
		_, _ = io.WriteString(w, "early answer")
	})
	client, done := serve(t, newTestServer(t, h, nil))
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("POST / HTTP/1.1\r\n" + host + chunked + "\r\n5\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	client.Close() // the server lingers until the client closes
	<-done
	if !strings.Contains(string(out), "early answer") {
		t.Errorf("answer %q", out)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("the body read ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the body read never ended")
	}
}

// TestForwardThroughTransport passes requests the server read to net/http's transport, as
// the data plane does, and checks what the upstream receives: request trailers, and
// HTTP/1.0 requests as HTTP/1.1.
func TestForwardThroughTransport(t *testing.T) {
	type upstreamSaw struct {
		proto, body string
		trailer     http.Header
	}
	saw := make(chan upstreamSaw, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		saw <- upstreamSaw{proto: r.Proto, body: string(b), trailer: r.Trailer}
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "up")
	}))
	defer upstream.Close()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	rtErr := make(chan error, 1)
	proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Scheme, r.URL.Host, r.RequestURI = "http", upstream.Listener.Addr().String(), ""
		r.Close = false // hop-by-hop: the client's connection, not the upstream's
		resp, err := transport.RoundTrip(r)
		if err != nil {
			rtErr <- err
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Length", resp.Header.Get("Content-Length"))
		_, _ = io.Copy(w, resp.Body)
	})
	s := newTestServer(t, proxy, nil)

	rs := parseResponses(t, exchangeOpen(t, s, "POST / HTTP/1.1\r\n"+host+"Connection: close\r\n"+chunked+"Trailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"))
	u := <-saw
	if len(rs) != 1 || rs[0].status != http.StatusOK || u.body != "hello" || u.trailer.Get("X-Checksum") != "abc" {
		t.Errorf("trailers: responses %+v, upstream saw %+v", rs, u)
	}

	rs = parseResponses(t, exchangeOpen(t, s, "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi"))
	u = <-saw
	if len(rs) != 1 || rs[0].status != http.StatusOK || u.proto != "HTTP/1.1" || u.body != "hi" {
		t.Errorf("HTTP/1.0: responses %+v, upstream saw %+v", rs, u)
	}

	// A body that turns malformed: the transport's error says so, and the client's
	// connection is closed.
	rs = parseResponses(t, exchangeOpen(t, s, "POST / HTTP/1.1\r\n"+host+chunked+"\r\n5\r\nhello\r\nzz\r\n"+get))
	if err := <-rtErr; !errors.Is(err, ErrMalformedBody) {
		t.Errorf("RoundTrip error %v, want %v", err, ErrMalformedBody)
	}
	if len(rs) != 1 || rs[0].status != http.StatusBadGateway || !rs[0].close {
		t.Errorf("malformed body: responses %+v", rs)
	}
}

// TestShutdownClosesIdleConnections: Shutdown wakes a connection waiting for its next
// request, and one in a request closes after its response.
func TestShutdownClosesIdleConnections(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inHandler <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	s := newTestServer(t, h, nil)
	idle, idleDone := serve(t, s)
	_ = idle.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Write([]byte(get)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	busy, busyDone := serve(t, s)
	_ = busy.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := busy.Write([]byte("GET /slow HTTP/1.1\r\n" + host + "\r\n")); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	waitFor(t, "the idle connection to be tracked", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.idle) == 1
	})
	s.Shutdown()
	// The idle connection ends (EOF) without a request.
	if rest, err := io.ReadAll(idle); err != nil || len(rest) != 0 {
		t.Fatalf("idle connection: %q %v", rest, err)
	}
	idle.Close()
	<-idleDone
	close(release)
	resp, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || !resp.Close {
		t.Fatalf("busy connection: %v %v", resp, err)
	}
	resp.Body.Close()
	busy.Close()
	<-busyDone
}

func TestOptionsValidate(t *testing.T) {
	h := http.NotFoundHandler()
	for _, o := range []Options{
		{},
		{Handler: h, MaxHeaderBytes: 100},
		{Handler: h, BodyReadTimeout: -time.Second},
		{Handler: h, IdleTimeout: -time.Second},
	} {
		if _, err := NewServer(o); err == nil {
			t.Errorf("NewServer(%+v) accepted", o)
		}
	}
	s, err := NewServer(Options{Handler: h})
	if err != nil || s.opts.BodyReadTimeout != DefaultBodyReadTimeout || s.opts.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Fatalf("defaults: %+v %v", s, err)
	}
}

var _ net.Conn = (*memConn)(nil)

// TestHeadAndIdleTimeouts: a head sent too slowly is answered 408 at ReadHeaderTimeout, and
// an idle kept-alive connection is closed at IdleTimeout.
func TestHeadAndIdleTimeouts(t *testing.T) {
	rec := &recorder{}
	s := newTestServer(t, rec, func(o *Options) {
		o.ReadHeaderTimeout = 50 * time.Millisecond
		o.IdleTimeout = 50 * time.Millisecond
	})
	for _, tc := range []struct {
		name, in string
		statuses []int
	}{
		{"slow head", "GET / HTTP/1.1\r\nHost: a", []int{http.StatusRequestTimeout}},
		{"idle after a request", get, []int{http.StatusOK}},
		{"silent", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := parseResponses(t, exchangeOpen(t, s, tc.in))
			var statuses []int
			for _, r := range rs {
				statuses = append(statuses, r.status)
			}
			if !slices.Equal(statuses, tc.statuses) {
				t.Fatalf("statuses %v, want %v", statuses, tc.statuses)
			}
		})
	}
}

// countingConn counts the reads made on a connection.
type countingConn struct {
	net.Conn
	mu    sync.Mutex
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Conn.Read(p)
}

func (c *countingConn) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// TestClientGoneWatchStartsLate: a request that ends within clientGoneWatchDelay of its body
// costs no background read; one that runs longer gets it.
func TestClientGoneWatchStartsLate(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	conn := &countingConn{Conn: server}
	cr := newConnReader(conn)
	_, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)

	cr.startBackgroundRead(cancel)
	cr.abortPendingRead()
	timerPending := cr.watch.Stop() // false: abortPendingRead stopped it already
	if n := conn.readCount(); n != 0 || cr.inRead || cr.armed || timerPending {
		t.Fatalf("a request that ended at once: %d reads, read running %v, watch armed %v, timer pending %v; want none",
			n, cr.inRead, cr.armed, timerPending)
	}

	cr.startBackgroundRead(cancel)
	waitFor(t, "the background read", func() bool { return conn.readCount() == 1 })
	cr.abortPendingRead()
	go func() { _, _ = client.Write([]byte("G")) }() // net.Pipe: a write waits for the read
	buf := make([]byte, 1)
	if n, err := cr.Read(buf); n != 1 || err != nil || buf[0] != 'G' {
		t.Fatalf("after the watch, Read = %d %q %v; want the client's byte", n, buf[:n], err)
	}
}

// TestIdleConnectionsHoldNoWriteBuffer: a keep-alive connection waiting for its next request
// gives its write buffer back, so many idle connections share a few.
func TestIdleConnectionsHoldNoWriteBuffer(t *testing.T) {
	s := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), nil)
	var made atomic.Int64
	newWriter := s.writers.New
	s.writers.New = func() any { made.Add(1); return newWriter() }
	const idle = 50
	for i := range idle {
		client, _ := serve(t, s)
		_ = client.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := client.Write([]byte(get)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(client), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		resp.Body.Close()
		// The connection stays open and idle.
	}
	// Holding them, every connection needs its own writer: idle are made. Released, they are
	// reused, except those sync.Pool drops (the race detector drops a quarter of its Puts).
	if n := made.Load(); n > idle*3/4 {
		t.Fatalf("%d write buffers made for %d connections served one after the other and left idle; want them reused", n, idle)
	}
}
