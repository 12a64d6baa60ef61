package detect

import (
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

func BenchmarkClassify(b *testing.B) {
	req := []byte("GET /api/users/42 HTTP/1.1\r\nHost: users.default.svc.cluster.local\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if p, _ := Classify(req); p != HTTP1 {
			b.Fatal(p)
		}
	}
}
