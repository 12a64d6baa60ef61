package h1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is what a handler saw of one request.
type seen struct {
	Method, RequestURI, Host, Proto string
	Header                          http.Header
	ContentLength                   int64
	TransferEncoding                []string
	Body                            string
	BodyErr                         error
	Trailer                         http.Header
}

// recorder is a handler that reads the whole body and answers 200 with the body's length,
// recording what it saw.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
	// respond, when set, writes the response instead of the default.
	respond func(w http.ResponseWriter, r *http.Request, s seen)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	s := seen{
		Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Proto: r.Proto,
		Header: r.Header.Clone(), ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding,
		Body: string(body), BodyErr: err, Trailer: r.Trailer.Clone(),
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, s)
	rec.mu.Unlock()
	if rec.respond != nil {
		rec.respond(w, r, s)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok")
}

func (rec *recorder) seen() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// quietLogger drops the server's logs.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestServer returns a server for h with test limits, tweaked by tweak.
func newTestServer(t testing.TB, h http.Handler, tweak func(*Options)) *Server {
	t.Helper()
	o := Options{Handler: h, MaxHeaderBytes: 4096, MaxHeaderCount: 20, ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 5 * time.Second, BodyReadTimeout: 5 * time.Second, Logger: quietLogger()}
	if tweak != nil {
		tweak(&o)
	}
	s, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loopback returns a connected TCP pair on 127.0.0.1.
func loopback(t testing.TB) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); server.Close() })
	return c.(*net.TCPConn), server
}

// serve runs s on the server end of a loopback pair and returns the client end and a
// channel closed when ServeConn returns.
func serve(t testing.TB, s *Server) (*net.TCPConn, <-chan struct{}) {
	t.Helper()
	client, server := loopback(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(context.Background(), server)
	}()
	t.Cleanup(func() {
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("ServeConn did not return")
		}
	})
	return client, done
}

// exchange sends raw on a fresh connection, half-closes it and returns all the server wrote
// until it closed the connection.
func exchange(t testing.TB, s *Server, raw string) string {
	t.Helper()
	client, done := serve(t, s)
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	out, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("read the answer: %v (got %q)", err, out)
	}
	client.Close() // the server lingers until the client closes
	<-done
	return string(out)
}

// exchangeOpen sends raw on a fresh connection, without half-closing it (which would
// cancel the requests' contexts, as the client going away), and returns all the server
// wrote until it closed the connection.
func exchangeOpen(t testing.TB, s *Server, raw string) string {
	t.Helper()
	client, done := serve(t, s)
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("read the answer: %v (got %q)", err, out)
	}
	client.Close() // the server lingers until the client closes
	<-done
	return string(out)
}

// response is one parsed response of a connection.
type response struct {
	status  int
	header  http.Header
	body    string
	trailer http.Header
	chunked bool
	close   bool // Connection: close (http.ReadResponse removes the field)
}

// parseResponses parses out as a sequence of responses (to requests other than HEAD); the
// last may be close-delimited.
func parseResponses(t testing.TB, out string) []response {
	t.Helper()
	var rs []response
	br := bufio.NewReader(strings.NewReader(out))
	for {
		if _, err := br.Peek(1); err != nil {
			return rs
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("parse response %d: %v in %q", len(rs)+1, err, out)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read response %d body: %v in %q", len(rs)+1, err, out)
		}
		rs = append(rs, response{status: resp.StatusCode, header: resp.Header, body: string(b),
			trailer: resp.Trailer, chunked: len(resp.TransferEncoding) > 0, close: resp.Close})
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// memConn is an in-memory connection: reads come from in, writes go to out, deadlines are
// accepted and ignored. Reads never block, so it suits fuzzing.
type memConn struct {
	in  *bytes.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func newMemConn(in []byte) *memConn { return &memConn{in: bytes.NewReader(in)} }

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *memConn) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
