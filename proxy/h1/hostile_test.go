package h1

// Request smuggling at the HTTP/1 parser (issue 13): after a valid request on a kept-alive
// connection, every ambiguous framing is refused and the connection closed, so the bytes
// hidden behind it never become a second request for the handler. Oversized heads are
// refused with 431 whatever their shape.

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestSmuggledRequestsNeverReachTheHandler(t *testing.T) {
	const h = "Host: app.test\r\n"
	smuggled := "GET /smuggled HTTP/1.1\r\n" + h + "\r\n"
	n := strconv.Itoa(len(smuggled))
	for _, tc := range []struct{ name, second string }{
		{"CL.TE", "POST /second HTTP/1.1\r\n" + h + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2c\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"double CL", "POST /second HTTP/1.1\r\n" + h + "Content-Length: 0\r\nContent-Length: " + n + "\r\n\r\n" + smuggled},
		{"CL list", "POST /second HTTP/1.1\r\n" + h + "Content-Length: 0, " + n + "\r\n\r\n" + smuggled},
		{"CL with leading zeros and sign", "POST /second HTTP/1.1\r\n" + h + "Content-Length: -0\r\n\r\n" + smuggled},
		{"CL hex", "POST /second HTTP/1.1\r\n" + h + "Content-Length: 0x10\r\n\r\n" + smuggled},
		{"TE xchunked", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\nContent-Length: " + n + "\r\n\r\n" + smuggled},
		{"TE chunked, identity", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE vertical tab", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE obs-fold", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\nContent-Length: " + n + "\r\n\r\n" + smuggled},
		{"TE space before colon", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"bare LF after chunk size", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\n\n" + smuggled},
		{"bare LF in head", "POST /second HTTP/1.1\n" + h + "Content-Length: " + n + "\n\n" + smuggled},
		{"bare CR in head", "POST /second HTTP/1.1\r\n" + h + "X-A: b\rContent-Length: " + n + "\r\n\r\n" + smuggled},
		{"chunk size overflow", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"chunk data longer than size", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n" + smuggled},
		{"chunk extension with bare LF", "POST /second HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n2;x\nab\r\n0\r\n\r\n" + smuggled},
		{"NUL in a header", "POST /second HTTP/1.1\r\n" + h + "X-A: \x00\r\nContent-Length: " + n + "\r\n\r\n" + smuggled},
		{"space in a name", "POST /second HTTP/1.1\r\n" + h + "Content Length: " + n + "\r\n\r\n" + smuggled},
		{"HTTP/0.9", "GET /second\r\n" + smuggled},
		{"HTTP/2 version", "GET /second HTTP/2.0\r\n" + h + "\r\n" + smuggled},
		{"two Hosts", "GET /second HTTP/1.1\r\n" + h + "Host: evil.test\r\n\r\n" + smuggled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := newTestServer(t, rec, nil)
			out := exchange(t, s, "GET /first HTTP/1.1\r\n"+h+"\r\n"+tc.second)
			for _, r := range rec.seen() {
				if r.RequestURI == "/smuggled" {
					t.Fatalf("the smuggled request reached the handler; answer %q", out)
				}
			}
			// The ambiguous request is refused before the handler, or (a head that is well
			// framed, a body that is not) reaches it with a failing body read; either way the
			// connection ends there.
			seen := rec.seen()
			if len(seen) == 0 || seen[0].RequestURI != "/first" {
				t.Fatalf("the handler saw %+v; want /first first", seen)
			}
			for _, r := range seen[1:] {
				if r.BodyErr == nil {
					t.Errorf("the handler saw %s %s with a body that read cleanly", r.Method, r.RequestURI)
				}
			}
			if len(seen) == 1 && !strings.Contains(out, "\r\nConnection: close\r\n") {
				t.Errorf("answer %q: want an error that closes the connection", out)
			}
			if !strings.HasPrefix(out, "HTTP/1.1 200 ") {
				t.Errorf("answer %q: want 200 to /first", out)
			}
		})
	}
}

func TestOversizedHeadsAre431(t *testing.T) {
	const h = "Host: app.test\r\n"
	for _, tc := range []struct{ name, in string }{
		{"one long field", "GET / HTTP/1.1\r\n" + h + "X-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n"},
		{"long request line", "GET /" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\n" + h + "\r\n"},
		{"long field name", "GET / HTTP/1.1\r\n" + h + strings.Repeat("X", 8<<10) + ": b\r\n\r\n"},
		{"many small fields", "GET / HTTP/1.1\r\n" + h + strings.Repeat("A: b\r\n", 1000) + "\r\n"},
		{"many empty-valued fields", "GET / HTTP/1.1\r\n" + h + strings.Repeat("A:\r\n", 100) + "\r\n"},
		{"endless head", "GET / HTTP/1.1\r\n" + h + strings.Repeat("X-A: b\r\n", 100_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			s := newTestServer(t, rec, nil)
			out := exchange(t, s, tc.in)
			if !strings.HasPrefix(out, "HTTP/1.1 "+strconv.Itoa(http.StatusRequestHeaderFieldsTooLarge)+" ") && !strings.HasPrefix(out, "HTTP/1.1 414 ") {
				t.Errorf("answered %.100q, want 431", out)
			}
			if len(rec.seen()) != 0 {
				t.Error("the handler saw the request")
			}
		})
	}
}
