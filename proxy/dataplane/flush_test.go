package dataplane

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// flushCounter is a ResponseWriter that counts Flush calls.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++ }

// writeResponse flushes a streamed body as it comes, but leaves the last bytes of a body of
// known length to the end of the response, so head, body and end go out in one write.
func TestWriteResponseFlushes(t *testing.T) {
	p := &Proxy{log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name          string
		contentLength int64
		body          io.Reader
		wantFlushes   int
	}{
		{"known length, one read", 5, strings.NewReader("hello"), 0},
		{"known length, byte by byte", 5, iotest.OneByteReader(strings.NewReader("hello")), 4},
		{"unknown length", -1, iotest.OneByteReader(strings.NewReader("abc")), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
			resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, ContentLength: tc.contentLength, Body: io.NopCloser(tc.body)}
			p.writeResponse(&Exchange{W: w}, resp)
			if w.flushes != tc.wantFlushes {
				t.Errorf("%d flushes, want %d", w.flushes, tc.wantFlushes)
			}
		})
	}
}

// Small request bodies of known length are read into memory before an HTTP/1 round trip, so
// net/http writes head and body at once; others keep streaming.
func TestBufferSmallBody(t *testing.T) {
	for _, tc := range []struct {
		name         string
		length       int64
		body         string
		expect       string
		wantBuffered bool
		wantErr      bool
	}{
		{"small", 5, "hello", "", true, false},
		{"at the limit", smallBodyLimit, strings.Repeat("x", smallBodyLimit), "", true, false},
		{"over the limit", smallBodyLimit + 1, strings.Repeat("x", smallBodyLimit+1), "", false, false},
		{"unknown length", -1, "hello", "", false, false},
		{"expects 100-continue", 5, "hello", "100-continue", false, false},
		{"shorter than announced", 10, "hello", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://example/", nil)
			r.ContentLength = tc.length
			r.Body = io.NopCloser(iotest.HalfReader(strings.NewReader(tc.body)))
			if tc.expect != "" {
				r.Header.Set("Expect", tc.expect)
			}
			held, err := bufferSmallBody(r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			_, buffered := r.Body.(interface {
				WriteTo(io.Writer) (int64, error)
			}) // io.NopCloser of a bytes.Reader
			if buffered != tc.wantBuffered || (held != nil) != tc.wantBuffered || (held != nil && string(held) != tc.body) {
				t.Errorf("buffered = %v, held %q, want buffered %v", buffered, held, tc.wantBuffered)
			}
			got, err := io.ReadAll(r.Body)
			if err != nil || string(got) != tc.body {
				t.Errorf("the body reads %d bytes (%v), want the %d sent", len(got), err, len(tc.body))
			}
		})
	}
}
