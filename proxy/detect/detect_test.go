package detect

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Protocol
		done bool
	}{
		{"", Opaque, false},
		{"G", Opaque, false},
		{"GET", Opaque, false},
		{"GET /", Opaque, false},
		{"GET / HTTP/1.", Opaque, false},
		{"GET / HTTP/1.1\r", Opaque, false},
		{"GET / HTTP/1.1\r\n", HTTP1, true},
		{"POST /x?y=1 HTTP/1.0\r\nHost: a\r\n\r\n", HTTP1, true},
		{"CONNECT a:443 HTTP/1.1\r\n", HTTP1, true},
		{"GET / HTTP/2.0\r\n", Opaque, true},
		{"GET / HTTP/1.2\r\n", Opaque, true},
		{"GET  / HTTP/1.1\r\n", Opaque, true},
		{"GET /\x01 HTTP/1.1\r\n", Opaque, true},
		{"GET / HTTP/1.1\n", HTTP1, true},
		{"GET / HTTP/1.1\r\r", Opaque, true},
		{" GET / HTTP/1.1\r\n", Opaque, true},
		{"G(T / HTTP/1.1\r\n", Opaque, true},
		{"SSH-2.0-OpenSSH_9.2\r\n", Opaque, true},
		{"ping\n", Opaque, true},
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", Opaque, true}, // PostgreSQL SSLRequest
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n", Opaque, false},
		{H2Preface, HTTP2, true},
		{H2Preface + "\x00\x00\x00\x04", HTTP2, true},
		{"PRI * HTTP/1.1\r\n", HTTP1, true},
		{"\x16", Opaque, false},
		{"\x16\x03", Opaque, false},
		{"\x16\x03\x01\x02\x00", TLS, true},
		{"\x16\x03\x09", Opaque, true},
		{strings.Repeat("A", 30) + " / HTTP/1.1\r\n", Opaque, true},
	} {
		got, done := Classify([]byte(tc.in))
		if got != tc.want || done != tc.done {
			t.Errorf("Classify(%q) = %s, %v; want %s, %v", tc.in, got, done, tc.want, tc.done)
		}
	}
}

// pipe returns a connected loopback pair.
func pipe(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestDetect(t *testing.T) {
	t.Run("request line split over writes", func(t *testing.T) {
		client, server := pipe(t)
		go func() {
			_, _ = client.Write([]byte("GET /a"))
			time.Sleep(10 * time.Millisecond) // exercises the read loop; the outcome does not depend on it
			_, _ = client.Write([]byte(" HTTP/1.1\r\nHost: x\r\n\r\n"))
		}()
		p, prefix, err := Detect(server, make([]byte, 1024), 10*time.Second)
		if err != nil || p != HTTP1 || !strings.HasPrefix(string(prefix), "GET /a HTTP/1.1\r\n") {
			t.Fatalf("got %s %q %v", p, prefix, err)
		}
	})
	t.Run("silent client times out as opaque", func(t *testing.T) {
		_, server := pipe(t)
		p, prefix, err := Detect(server, make([]byte, 1024), 50*time.Millisecond)
		if err != nil || p != Opaque || len(prefix) != 0 {
			t.Fatalf("got %s %q %v", p, prefix, err)
		}
		// The deadline was cleared: the connection is usable.
		if err := server.SetWriteDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("half-closed client is opaque with its bytes", func(t *testing.T) {
		client, server := pipe(t)
		_, _ = client.Write([]byte("GET"))
		_ = client.(*net.TCPConn).CloseWrite()
		p, prefix, err := Detect(server, make([]byte, 1024), 10*time.Second)
		if err != nil || p != Opaque || string(prefix) != "GET" {
			t.Fatalf("got %s %q %v", p, prefix, err)
		}
	})
	t.Run("long request line fills the buffer", func(t *testing.T) {
		client, server := pipe(t)
		go func() { _, _ = client.Write([]byte("GET /" + strings.Repeat("a", 100))) }()
		p, prefix, err := Detect(server, make([]byte, 64), 10*time.Second)
		if err != nil || p != HTTP1 || len(prefix) != 64 {
			t.Fatalf("got %s %d bytes %v", p, len(prefix), err)
		}
	})
	t.Run("prefix is replayed", func(t *testing.T) {
		client, server := pipe(t)
		go func() { _, _ = client.Write([]byte("hello world")); client.Close() }()
		p, prefix, err := Detect(server, make([]byte, 4), 10*time.Second)
		if err != nil || p != Opaque {
			t.Fatalf("got %s %v", p, err)
		}
		all, err := io.ReadAll(&PrefixConn{Conn: server, Prefix: prefix})
		if err != nil || string(all) != "hello world" {
			t.Fatalf("replayed %q, %v", all, err)
		}
	})
}

// errConn fails every read with err after returning in.
type errConn struct {
	pieceConn
	err error
}

func (c *errConn) Read(p []byte) (int, error) {
	if len(c.in) > 0 {
		return c.pieceConn.Read(p)
	}
	return 0, c.err
}

func TestDetectOutcomes(t *testing.T) {
	reset := errors.New("connection reset by peer")
	for _, tc := range []struct {
		name   string
		conn   net.Conn
		size   int
		want   Protocol
		prefix string
		err    error
	}{
		{"HTTP/2 preface in pieces", &pieceConn{in: []byte(H2Preface + "\x00\x00"), step: 5}, 1024, HTTP2, H2Preface + "\x00", nil},
		{"TLS ClientHello", &pieceConn{in: []byte("\x16\x03\x01\x00\xa5\x01"), step: 1}, 1024, TLS, "\x16\x03\x01", nil},
		{"HTTP/1 byte by byte", &pieceConn{in: []byte("GET / HTTP/1.1\r\nHost: a\r\n"), step: 1}, 1024, HTTP1, "GET / HTTP/1.1\r\n", nil},
		{"server speaks first: timeout", &pieceConn{timeout: true}, 1024, Opaque, "", nil},
		{"undecided bytes then timeout", &pieceConn{in: []byte("GET /x"), step: 100, timeout: true}, 1024, Opaque, "GET /x", nil},
		{"binary protocol", &pieceConn{in: []byte("\x00\x01\x02"), step: 100}, 1024, Opaque, "\x00\x01\x02", nil},
		{"full buffer, long request line", &pieceConn{in: []byte("GET /aaaa\n"), step: 100}, 8, HTTP1, "GET /aaa", nil},
		{"full buffer, no request line", &pieceConn{in: []byte("abcdefghij"), step: 100}, 8, Opaque, "abcdefgh", nil},
		{"read error is returned", &errConn{pieceConn: pieceConn{in: []byte("GE"), step: 100}, err: reset}, 1024, Opaque, "GE", reset},
		{"closed connection is opaque", &errConn{err: net.ErrClosed}, 1024, Opaque, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, prefix, err := Detect(tc.conn, make([]byte, tc.size), time.Second)
			if p != tc.want || string(prefix) != tc.prefix || !errors.Is(err, tc.err) {
				t.Fatalf("Detect = %s %q %v; want %s %q %v", p, prefix, err, tc.want, tc.prefix, tc.err)
			}
		})
	}
}

func TestPrefixConnCloseWrite(t *testing.T) {
	client, server := pipe(t)
	pc := &PrefixConn{Conn: server, Prefix: []byte("x")}
	if err := pc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The peer sees the end of the stream, and the connection still reads.
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(client); err != nil || len(b) != 0 {
		t.Fatalf("peer read %q %v", b, err)
	}
	if _, err := client.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(pc, b); err != nil || string(b) != "xy" {
		t.Fatalf("read %q %v", b, err)
	}
}

func BenchmarkClassify(b *testing.B) {
	req := []byte("GET /api/users/42 HTTP/1.1\r\nHost: users.default.svc.cluster.local\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if p, _ := Classify(req); p != HTTP1 {
			b.Fatal(p)
		}
	}
}

// TestPrefixConnLetsGoOfThePrefix: once its prefix is read, a PrefixConn no longer refers
// to the bytes (a long-lived connection must not keep detection's buffer).
func TestPrefixConnLetsGoOfThePrefix(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	pc := &PrefixConn{Conn: server, Prefix: []byte("GET / HTTP/1.1\r\n")}
	buf := make([]byte, 10)
	for range 2 {
		if _, err := pc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if pc.Prefix != nil {
		t.Fatalf("after the prefix was read, Prefix = %q (capacity %d); want nil", pc.Prefix, cap(pc.Prefix))
	}
}
