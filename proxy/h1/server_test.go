package h1

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	host    = "Host: app.test\r\n"
	get     = "GET / HTTP/1.1\r\n" + host + "\r\n"
	chunked = "Transfer-Encoding: chunked\r\n"
)

// withLength answers "ok" with a Content-Length.
func withLength(w http.ResponseWriter, _ *http.Request, _ seen) {
	w.Header().Set("Content-Length", "2")
	_, _ = io.WriteString(w, "ok")
}

// earlyHints answers 103 then 200.
func earlyHints(w http.ResponseWriter, _ *http.Request, _ seen) {
	w.Header().Set("Link", "</style.css>; rel=preload")
	w.WriteHeader(http.StatusEarlyHints)
	_, _ = io.WriteString(w, "ok")
}

// TestRequests sends bytes on a raw connection (then half-closes it) and checks the
// responses, in order, and what the handler saw. Every refused case is followed by a valid
// pipelined request, which must not be served: the connection is closed after a refusal.
func TestRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		tweak    func(*Options)
		respond  func(http.ResponseWriter, *http.Request, seen) // optional
		statuses []int
		seen     int                                  // requests the handler saw
		check    func(*testing.T, []seen, []response) // optional
	}{
		// Accepted requests.
		{name: "simple GET", in: get, statuses: []int{200}, seen: 1, check: func(t *testing.T, s []seen, r []response) {
			if s[0].Method != http.MethodGet || s[0].RequestURI != "/" || s[0].Host != "app.test" || s[0].Proto != "HTTP/1.1" || s[0].Body != "" || s[0].BodyErr != nil {
				t.Errorf("saw %+v", s[0])
			}
			if !r[0].chunked || r[0].body != "ok" || r[0].close {
				t.Errorf("response %+v", r[0])
			}
		}},
		{name: "pipelined keep-alive", in: get + "GET /b?x=1 HTTP/1.1\r\n" + host + "\r\n", statuses: []int{200, 200}, seen: 2, check: func(t *testing.T, s []seen, _ []response) {
			if s[1].RequestURI != "/b?x=1" {
				t.Errorf("second request %q", s[1].RequestURI)
			}
		}},
		{name: "Connection: close ends the connection", in: "GET / HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n" + get, statuses: []int{200}, seen: 1, check: func(t *testing.T, _ []seen, r []response) {
			if !r[0].close {
				t.Errorf("response header %v", r[0].header)
			}
		}},
		{name: "empty lines before a request", in: "\r\n\r\n" + get, statuses: []int{200}, seen: 1},
		{name: "Content-Length body", in: "POST /p HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + get, statuses: []int{200, 200}, seen: 2, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Body != "hello" || s[0].ContentLength != 5 || s[0].BodyErr != nil {
				t.Errorf("saw %+v", s[0])
			}
		}},
		{name: "identical Content-Length twice", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi", statuses: []int{200}, seen: 1, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Body != "hi" || len(s[0].Header["Content-Length"]) != 1 {
				t.Errorf("saw %+v", s[0])
			}
		}},
		{name: "chunked body with extensions", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5;a=b\r\nhello\r\n6 ; q=\"x; \\\"y\" ;z\r\n world\r\n0\r\n\r\n" + get, statuses: []int{200, 200}, seen: 2, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Body != "hello world" || s[0].ContentLength != -1 || s[0].BodyErr != nil || !reflect.DeepEqual(s[0].TransferEncoding, []string{"chunked"}) {
				t.Errorf("saw %+v", s[0])
			}
		}},
		{name: "chunked, upper-case hex and leading zeros", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n000A\r\n0123456789\r\n0\r\n\r\n", statuses: []int{200}, seen: 1, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Body != "0123456789" {
				t.Errorf("body %q", s[0].Body)
			}
		}},
		{name: "declared trailers", in: "POST / HTTP/1.1\r\n" + host + chunked + "Trailer: X-Sum, Host\r\nTrailer: grpc-status\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 900150983cd24fb0\r\nGrpc-Status: 0\r\nX-Undeclared: 1\r\nHost: evil.test\r\n\r\n" + get, statuses: []int{200, 200}, seen: 2, check: func(t *testing.T, s []seen, _ []response) {
			want := http.Header{"X-Sum": {"900150983cd24fb0"}, "Grpc-Status": {"0"}}
			if s[0].Body != "abc" || s[0].BodyErr != nil || !reflect.DeepEqual(s[0].Trailer, want) {
				t.Errorf("body %q %v, trailer %v; want %v", s[0].Body, s[0].BodyErr, s[0].Trailer, want)
			}
			if _, ok := s[0].Header["Trailer"]; ok {
				t.Errorf("Trailer left in the header: %v", s[0].Header)
			}
		}},
		{name: "undeclared trailers are dropped", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n1\r\na\r\n0\r\nX-A: b\r\n\r\n", statuses: []int{200}, seen: 1, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Body != "a" || s[0].BodyErr != nil || len(s[0].Trailer) != 0 {
				t.Errorf("saw %+v", s[0])
			}
		}},
		{name: "absolute-form: the target's authority wins over Host", in: "GET http://target.test:8080/a?b HTTP/1.1\r\nHost: other.test\r\n\r\n", statuses: []int{200}, seen: 1, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Host != "target.test:8080" || s[0].Header.Get("Host") != "" {
				t.Errorf("saw host %q, header %v", s[0].Host, s[0].Header)
			}
		}},
		{name: "OPTIONS *", in: "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", statuses: []int{200}, seen: 1},
		{name: "empty Host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n", statuses: []int{200}, seen: 1},
		{name: "obs-text in a value", in: "GET / HTTP/1.1\r\n" + host + "X-A: caf\xc3\xa9\r\n\r\n", statuses: []int{200}, seen: 1},
		{name: "Expect: 100-continue", in: "POST / HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", statuses: []int{100, 200}, seen: 1, check: func(t *testing.T, s []seen, _ []response) {
			if s[0].Body != "hi" || s[0].Header.Get("Expect") != "" {
				t.Errorf("saw %+v", s[0])
			}
		}},

		// Responses.
		{name: "interim response", in: get, respond: earlyHints, statuses: []int{103, 200}, seen: 1},
		{name: "response trailers", in: get, statuses: []int{200}, seen: 1,
			respond: func(w http.ResponseWriter, _ *http.Request, _ seen) {
				w.Header().Set("Trailer", "X-T")
				_, _ = io.WriteString(w, "ok")
				w.Header().Set("X-T", "1")
				w.Header().Set(http.TrailerPrefix+"X-Late", "2")
			}, check: func(t *testing.T, _ []seen, r []response) {
				if !r[0].chunked || r[0].body != "ok" || r[0].trailer.Get("X-T") != "1" || r[0].trailer.Get("X-Late") != "2" {
					t.Errorf("response %+v", r[0])
				}
			}},
		{name: "HEAD", in: "HEAD / HTTP/1.1\r\n" + host + "\r\n", statuses: []int{200}, seen: 1,
			respond: func(w http.ResponseWriter, _ *http.Request, _ seen) { _, _ = io.WriteString(w, "ignored") }},

		// HTTP/1.0.
		{name: "HTTP/1.0: no interim response", in: "GET / HTTP/1.0\r\n\r\n", respond: earlyHints, statuses: []int{200}, seen: 1},
		{name: "HTTP/1.0: close-delimited, no Host needed", in: "GET / HTTP/1.0\r\n\r\n" + get, statuses: []int{200}, seen: 1, check: func(t *testing.T, s []seen, r []response) {
			if s[0].Proto != "HTTP/1.0" || s[0].Host != "" {
				t.Errorf("saw %+v", s[0])
			}
			if r[0].chunked || !r[0].close || r[0].body != "ok" {
				t.Errorf("response %+v", r[0])
			}
		}},
		{name: "HTTP/1.0 keep-alive with a length", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /2 HTTP/1.0\r\n\r\n",
			respond: withLength, statuses: []int{200, 200}, seen: 2, check: func(t *testing.T, _ []seen, r []response) {
				if r[0].header.Get("Connection") != "keep-alive" || r[0].header.Get("Content-Length") != "2" {
					t.Errorf("first response %+v", r[0])
				}
				if !r[1].close {
					t.Errorf("second response %+v", r[1])
				}
			}},
		{name: "HTTP/1.0 keep-alive without a length closes", in: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /2 HTTP/1.0\r\n\r\n",
			statuses: []int{200}, seen: 1, check: func(t *testing.T, _ []seen, r []response) {
				if r[0].chunked || !r[0].close || r[0].body != "ok" {
					t.Errorf("response %+v", r[0])
				}
			}},
		{name: "HTTP/1.0 Expect is ignored", in: "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", statuses: []int{200}, seen: 1},

		// Refused heads: the handler sees nothing, the connection is closed.
		{name: "TE and CL", in: "POST / HTTP/1.1\r\n" + host + chunked + "Content-Length: 4\r\n\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "CL and TE", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\n" + chunked + "\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "conflicting CL", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", statuses: []int{400}},
		{name: "CL list", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\nabcde", statuses: []int{400}},
		{name: "negative CL", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", statuses: []int{400}},
		{name: "plus CL", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: +4\r\n\r\nabcd", statuses: []int{400}},
		{name: "hex CL", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0x4\r\n\r\nabcd", statuses: []int{400}},
		{name: "CL over 63 bits", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 9223372036854775808\r\n\r\n", statuses: []int{400}},
		{name: "chunked twice", in: "POST / HTTP/1.1\r\n" + host + chunked + chunked + "\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "TE list", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "TE identity", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\n\r\n", statuses: []int{400}},
		{name: "TE chunked with a parameter", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "TE in HTTP/1.0", in: "POST / HTTP/1.0\r\n" + host + chunked + "\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\r\n c\r\n\r\n", statuses: []int{400}},
		{name: "obs-fold of Transfer-Encoding", in: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "space before colon", in: "GET / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n", statuses: []int{400}},
		{name: "empty field name", in: "GET / HTTP/1.1\r\n" + host + ": x\r\n\r\n", statuses: []int{400}},
		{name: "field without colon", in: "GET / HTTP/1.1\r\n" + host + "X-A\r\n\r\n", statuses: []int{400}},
		{name: "bare LF", in: "GET / HTTP/1.1\n" + host + "\n", statuses: []int{400}},
		{name: "bare LF in fields", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\n\r\n", statuses: []int{400}},
		{name: "bare CR in a value", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\rc\r\n\r\n", statuses: []int{400}},
		{name: "NUL in a value", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\x00c\r\n\r\n", statuses: []int{400}},
		{name: "DEL in a value", in: "GET / HTTP/1.1\r\n" + host + "X-A: b\x7fc\r\n\r\n", statuses: []int{400}},
		{name: "no Host", in: "GET / HTTP/1.1\r\n\r\n", statuses: []int{400}},
		{name: "two Hosts", in: "GET / HTTP/1.1\r\n" + host + host + "\r\n", statuses: []int{400}},
		{name: "two Hosts, different case", in: "GET / HTTP/1.1\r\n" + host + "host: other.test\r\n\r\n", statuses: []int{400}},
		{name: "malformed Host", in: "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", statuses: []int{400}},
		{name: "Host with a path", in: "GET / HTTP/1.1\r\nHost: a/c\r\n\r\n", statuses: []int{400}},
		{name: "CONNECT", in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", statuses: []int{405}},
		{name: "double space in the request line", in: "GET  / HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "trailing space in the request line", in: "GET / HTTP/1.1 \r\n" + host + "\r\n", statuses: []int{400}},
		{name: "tab in the request line", in: "GET\t/ HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "lower-case version", in: "GET / http/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "HTTP/0.9", in: "GET /\r\n\r\n", statuses: []int{400}},
		{name: "method with a separator", in: "G(T / HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "fragment in the target", in: "GET /a#b HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "control in the target", in: "GET /a\x01b HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "relative target", in: "GET a/b HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "asterisk for GET", in: "GET * HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "absolute-form without a host", in: "GET http:///a HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "other scheme", in: "GET ftp://a.test/ HTTP/1.1\r\n" + host + "\r\n", statuses: []int{400}},
		{name: "Trailer declares Content-Length", in: "POST / HTTP/1.1\r\n" + host + chunked + "Trailer: Content-Length\r\n\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "unsupported Expect", in: "GET / HTTP/1.1\r\n" + host + "Expect: magic\r\n\r\n", statuses: []int{417}},
		{name: "head too large", in: "GET / HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", statuses: []int{431}},
		{name: "too many fields", in: "GET / HTTP/1.1\r\n" + host + strings.Repeat("X-A: b\r\n", 20) + "\r\n", statuses: []int{431}},
		{name: "head cut short", in: "GET / HTTP/1.1\r\n" + host, statuses: []int{400}},

		// Malformed first chunk: refused before the handler runs.
		{name: "chunk size not hex", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\nzz\r\nabc\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "chunk size with 0x", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n0x5\r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "negative chunk size", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n-5\r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "huge chunk size", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n10000000000000000\r\na\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "chunk size overflowing 63 bits", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n8000000000000000\r\na\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "space after the chunk size", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5 \r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "empty chunk extension", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5;\r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "chunk extension with a bare CR", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5;a=b\rc\r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "unterminated quoted extension", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "bare LF after the chunk size", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5\nhello\r\n0\r\n\r\n", statuses: []int{400}},
		{name: "chunk line too long", in: "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5;a=" + strings.Repeat("b", 5000) + "\r\nhello\r\n0\r\n\r\n", statuses: []int{400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{respond: tc.respond}
			s := newTestServer(t, rec, tc.tweak)
			refused := tc.seen == 0
			in := tc.in
			if refused {
				in += get // must never be read
			}
			out := exchange(t, s, in)
			rs := parseResponses(t, out)
			var statuses []int
			for _, r := range rs {
				statuses = append(statuses, r.status)
			}
			if !reflect.DeepEqual(statuses, tc.statuses) {
				t.Fatalf("statuses %v, want %v; answer %q", statuses, tc.statuses, out)
			}
			saw := rec.seen()
			if len(saw) != tc.seen {
				t.Fatalf("the handler saw %d requests, want %d: %+v", len(saw), tc.seen, saw)
			}
			if refused {
				last := rs[len(rs)-1]
				if !last.close || last.header.Get(ErrorHeader) != "bad-request" {
					t.Errorf("refusal lacks Connection: close or %s: %v", ErrorHeader, last.header)
				}
			}
			if tc.check != nil {
				tc.check(t, saw, rs)
			}
		})
	}
}

// TestMalformedBodyMidStream checks body errors once the handler runs: the handler's read
// fails with an error it can tell, its answer goes out with Connection: close, and the
// connection is closed without reading the pipelined request behind.
func TestMalformedBodyMidStream(t *testing.T) {
	post := "POST / HTTP/1.1\r\n" + host + chunked
	for _, tc := range []struct {
		name, in string
		body     string
		err      error
	}{
		{"malformed second chunk size", post + "\r\n5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n", "hello", ErrMalformedBody},
		{"chunk data longer than its size", post + "\r\n3\r\nhello\r\n0\r\n\r\n", "hel", ErrMalformedBody},
		{"bare LF after chunk data", post + "\r\n5\r\nhello\n0\r\n\r\n", "hello", ErrMalformedBody},
		{"mostly framing", post + "\r\n" + strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\na\r\n", 20) + "0\r\n\r\n", strings.Repeat("a", 16), ErrMalformedBody},
		{"huge second chunk", post + "\r\n1\r\na\r\nfffffffffffffffff\r\n", "a", ErrMalformedBody},
		{"malformed trailer", post + "Trailer: X-A\r\n\r\n1\r\na\r\n0\r\nX-A b\r\n\r\n", "a", ErrMalformedBody},
		{"obs-fold in the trailers", post + "Trailer: X-A\r\n\r\n1\r\na\r\n0\r\nX-A: b\r\n c\r\n\r\n", "a", ErrMalformedBody},
		{"bare LF in the trailers", post + "Trailer: X-A\r\n\r\n1\r\na\r\n0\r\nX-A: b\n\r\n", "a", ErrMalformedBody},
		{"control in a trailer", post + "Trailer: X-A\r\n\r\n1\r\na\r\n0\r\nX-A: b\x00\r\n\r\n", "a", ErrMalformedBody},
		{"trailers over the field count", post + "\r\n1\r\na\r\n0\r\n" + strings.Repeat("X-A: b\r\n", 20) + "\r\n", "a", ErrMalformedBody},
		{"trailers over the byte limit", post + "\r\n1\r\na\r\n0\r\nX-A: " + strings.Repeat("b", 4090) + "\r\n\r\n", "a", ErrMalformedBody},
		{"truncated Content-Length body", "POST / HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\nhello", "hello", ErrBodyTruncated},
		{"truncated chunk", post + "\r\n5\r\nhel", "hel", ErrBodyTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{respond: func(w http.ResponseWriter, _ *http.Request, s seen) {
				if s.BodyErr != nil {
					w.WriteHeader(http.StatusBadGateway)
				}
			}}
			s := newTestServer(t, rec, nil)
			in := tc.in
			if !errors.Is(tc.err, ErrBodyTruncated) {
				in += get
			}
			rs := parseResponses(t, exchange(t, s, in))
			saw := rec.seen()
			if len(saw) != 1 || saw[0].Body != tc.body || !errors.Is(saw[0].BodyErr, tc.err) {
				t.Fatalf("the handler saw %+v; want one request with body %q and error %v", saw, tc.body, tc.err)
			}
			if len(rs) != 1 || rs[0].status != http.StatusBadGateway || !rs[0].close {
				t.Fatalf("responses %+v; want one 502 with Connection: close", rs)
			}
		})
	}
}

// TestUnreadBody checks what happens to a body the handler does not read: a small one is
// skipped to serve the next request, a large one closes the connection.
func TestUnreadBody(t *testing.T) {
	ignore := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	small := "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello"
	rs := parseResponses(t, exchange(t, newTestServer(t, ignore, nil), small+get))
	if len(rs) != 2 {
		t.Errorf("small unread body: %d responses, want 2", len(rs))
	}
	smallChunked := "POST / HTTP/1.1\r\n" + host + chunked + "\r\n5\r\nhello\r\n0\r\n\r\n"
	rs = parseResponses(t, exchange(t, newTestServer(t, ignore, nil), smallChunked+get))
	if len(rs) != 2 {
		t.Errorf("small unread chunked body: %d responses, want 2", len(rs))
	}
	// A large body the handler leaves: the answer goes out and the connection is closed
	// without reading the rest.
	client, done := serve(t, newTestServer(t, ignore, nil))
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("POST / HTTP/1.1\r\n" + host + "Content-Length: 1000000\r\n\r\n" + strings.Repeat("a", 100))); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	client.Close() // the server lingers until the client closes
	<-done
	if rs := parseResponses(t, string(out)); len(rs) != 1 || rs[0].status != http.StatusOK {
		t.Errorf("large unread body: %+v, want one 200", rs)
	}
}
