package h1

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fuzzSeeds are requests worth mutating: valid ones of every framing and the hostile ones.
var fuzzSeeds = []string{
	get,
	get + "GET /b?x=1 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n",
	"\r\n" + get,
	"POST /p HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + get,
	"POST / HTTP/1.1\r\n" + host + chunked + "Trailer: X-Sum\r\n\r\n5;a=b\r\nhello\r\n6 ; q=\"x\\\"y\"\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n" + get,
	"POST / HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	"GET http://target.test:8080/a?b HTTP/1.1\r\nHost: other.test\r\nPragma: no-cache\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\n" + host + "\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
	"GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "X-A: caf\xc3\xa9\r\nX-B:\t v \r\n\r\n",
	"GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"POST / HTTP/1.1\r\n" + host + chunked + "Content-Length: 4\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
	"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.0\r\n" + host + chunked + "\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\n" + host + "X-A: b\r\n c\r\n\r\n",
	"GET / HTTP/1.1\n" + host + "\n",
	"GET / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n",
	"POST / HTTP/1.1\r\n" + host + chunked + "\r\n5\r\nhello\r\nzz\r\n\r\n",
	"POST / HTTP/1.1\r\n" + host + chunked + "\r\nfffffffffffffffff\r\n",
	"POST / HTTP/1.1\r\n" + host + chunked + "Trailer: X-A, Host\r\n\r\n1\r\na\r\n0\r\nX-A: b\r\nHost: evil\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
}

// FuzzReadRequest feeds arbitrary bytes to a server. It must never panic; every request a
// handler sees must have a single, consistent framing; and a request it accepted, written
// again by net/http, must be read back the same (what this server accepts is unambiguous).
func FuzzReadRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rec := &recorder{}
		s := newTestServer(t, rec, nil)
		conn := newMemConn(in)
		s.ServeConn(context.Background(), conn)
		for _, r := range rec.seen() {
			checkFraming(t, r)
			if r.BodyErr == nil {
				checkRoundTrip(t, r)
			}
		}
	})
}

// checkFraming checks the invariants of a request the handler saw.
func checkFraming(t *testing.T, r seen) {
	t.Helper()
	if r.Proto != "HTTP/1.1" && r.Proto != "HTTP/1.0" {
		t.Fatalf("protocol %q", r.Proto)
	}
	if r.Method == "" || r.Method == http.MethodConnect || strings.ContainsFunc(r.Method, func(c rune) bool { return c > 0x7f || !isTokenChar(byte(c)) }) {
		t.Fatalf("method %q", r.Method)
	}
	for _, name := range []string{"Host", "Transfer-Encoding", "Trailer", "Expect"} {
		if _, ok := r.Header[name]; ok {
			t.Fatalf("%s left in the header: %v", name, r.Header)
		}
	}
	if cl := r.Header["Content-Length"]; len(cl) > 1 {
		t.Fatalf("Content-Length %q", cl)
	}
	switch {
	case len(r.TransferEncoding) > 0:
		if !slices.Equal(r.TransferEncoding, []string{"chunked"}) || r.ContentLength != -1 || r.Proto != "HTTP/1.1" || len(r.Header["Content-Length"]) > 0 {
			t.Fatalf("chunked framing: %q, length %d, %s, header %v", r.TransferEncoding, r.ContentLength, r.Proto, r.Header)
		}
	default:
		if r.ContentLength < 0 {
			t.Fatalf("no framing: length %d", r.ContentLength)
		}
		if r.BodyErr == nil && int64(len(r.Body)) != r.ContentLength {
			t.Fatalf("body of %d bytes, Content-Length %d", len(r.Body), r.ContentLength)
		}
		if len(r.Trailer) > 0 {
			t.Fatalf("trailers without chunking: %v", r.Trailer)
		}
	}
	if r.BodyErr != nil && !errors.Is(r.BodyErr, ErrMalformedBody) && !errors.Is(r.BodyErr, ErrBodyTruncated) {
		t.Fatalf("body error %v", r.BodyErr)
	}
	if !validHost(r.Host) {
		t.Fatalf("host %q", r.Host)
	}
	for k := range r.Trailer {
		if prohibitedTrailers[k] {
			t.Fatalf("prohibited trailer %s", k)
		}
	}
}

// checkRoundTrip writes r again with net/http and checks that the server reads it back the
// same.
func checkRoundTrip(t *testing.T, r seen) {
	t.Helper()
	req, err := http.NewRequest(r.Method, "http://placeholder/", bytes.NewReader([]byte(r.Body)))
	if err != nil {
		t.Fatalf("rebuild %+v: %v", r, err)
	}
	req.Host, req.URL.Host = r.Host, r.Host
	req.Header = r.Header.Clone()
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // written as nothing
	}
	req.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		req.Body = http.NoBody
	}
	if len(r.TransferEncoding) > 0 {
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Trailer = r.Trailer.Clone()
	}
	var raw bytes.Buffer
	if err := req.Write(&raw); err != nil {
		return // net/http refuses to write it (a Host it finds invalid): nothing to compare
	}
	// The request line as it came (net/http would rewrite some targets).
	_, rest, _ := bytes.Cut(raw.Bytes(), []byte("\r\n"))
	raw = *bytes.NewBuffer(append([]byte(r.Method+" "+r.RequestURI+" HTTP/1.1\r\n"), rest...))
	rec := &recorder{}
	s := newTestServer(t, rec, func(o *Options) { o.MaxHeaderBytes *= 4; o.MaxHeaderCount += 5 })
	conn := newMemConn(raw.Bytes())
	s.ServeConn(context.Background(), conn)
	again := rec.seen()
	if len(again) != 1 {
		t.Fatalf("%q was read as %d requests (answer %q); first read as %+v", raw.Bytes(), len(again), conn.output(), r)
	}
	a := again[0]
	if a.BodyErr != nil || a.Method != r.Method || a.Host != r.Host || a.Body != r.Body {
		t.Fatalf("read back %+v, first %+v (written %q)", a, r, raw.Bytes())
	}
	if a.RequestURI != r.RequestURI {
		t.Fatalf("target read back %q, first %q", a.RequestURI, r.RequestURI)
	}
	drop := func(h http.Header) http.Header {
		h = h.Clone()
		for _, k := range []string{"Content-Length", "User-Agent"} {
			delete(h, k)
		}
		maps.DeleteFunc(h, func(_ string, v []string) bool { return len(v) == 0 })
		return h
	}
	if !reflect.DeepEqual(drop(a.Header), drop(r.Header)) {
		t.Fatalf("header read back %v, first %v", a.Header, r.Header)
	}
	if !reflect.DeepEqual(drop(a.Trailer), drop(r.Trailer)) {
		t.Fatalf("trailer read back %v, first %v", a.Trailer, r.Trailer)
	}
}
