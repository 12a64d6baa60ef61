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
