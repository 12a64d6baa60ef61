package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// responseWriter writes one response at a time on a connection. The status line and header
// go out with the first body bytes, a Flush, or the end of the handler; without a
// Content-Length the body is chunked (HTTP/1.1) or ends with the connection (HTTP/1.0).
type responseWriter struct {
	conn net.Conn
	cr   *connReader
	br   *bufio.Reader
	bw   *bufio.Writer

	req         *http.Request
	header      http.Header
	status      int
	wroteHeader bool
	chunked     bool
	noBody      bool
	remaining   int64 // body bytes still allowed with a Content-Length, -1 without
	closeAfter  bool
	closing     *atomic.Bool // the server's: shutting down, close after this response
	hijacked    bool
	trailers    []string
	scratch     []byte
}

var errBodyTooLong = errors.New("h1: handler wrote more than the declared Content-Length")

func (w *responseWriter) reset(req *http.Request, closing *atomic.Bool) {
	w.req = req
	// The connection's header map is reused: the previous handler has returned, and a
	// handler must not use its ResponseWriter after it returns (net/http's contract).
	if w.header == nil {
		w.header = make(http.Header, 8)
	} else {
		clear(w.header)
	}
	w.status = 0
	w.wroteHeader = false
	w.chunked = false
	w.noBody = false
	w.remaining = -1
	// req.Close is net/http's reading of Connection: close (HTTP/1.1), or of the absence of
	// Connection: keep-alive (HTTP/1.0).
	w.closing = closing
	w.closeAfter = closing.Load() || req.Close
	w.trailers = w.trailers[:0]
}

// Header returns the response header.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader records the status; informational statuses are sent at once (to HTTP/1.1
// clients; dropped for HTTP/1.0 ones).
func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || w.hijacked {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if w.req.ProtoMinor == 0 {
			return // HTTP/1.0 clients know no interim responses (RFC 9110 section 15.2)
		}
		w.writeStatusLine(code)
		w.writeFields(w.header)
		_, _ = w.bw.WriteString("\r\n")
		_ = w.bw.Flush()
		return
	}
	if w.status == 0 {
		w.status = code
	}
}

func (w *responseWriter) writeStatusLine(code int) {
	w.scratch = append(w.scratch[:0], "HTTP/1.1 "...)
	w.scratch = strconv.AppendInt(w.scratch, int64(code), 10)
	w.scratch = append(w.scratch, ' ')
	w.scratch = append(w.scratch, http.StatusText(code)...)
	w.scratch = append(w.scratch, "\r\n"...)
	_, _ = w.bw.Write(w.scratch)
}

func (w *responseWriter) writeFields(h http.Header) {
	for name, values := range h {
		if strings.HasPrefix(name, http.TrailerPrefix) {
			continue
		}
		for _, v := range values {
			w.scratch = append(w.scratch[:0], name...)
			w.scratch = append(w.scratch, ": "...)
			w.scratch = appendClean(w.scratch, v)
			w.scratch = append(w.scratch, "\r\n"...)
			_, _ = w.bw.Write(w.scratch)
		}
	}
}

// appendClean appends v without CR and LF, which would split the field.
func appendClean(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// commit writes the status line and header.
func (w *responseWriter) commit() {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if w.closing.Load() {
		w.closeAfter = true
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.header
	w.noBody = w.req.Method == http.MethodHead || w.status == http.StatusNoContent || w.status == http.StatusNotModified
	if declared := h.Values("Trailer"); len(declared) > 0 {
		for _, v := range declared {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(name))
				}
			}
		}
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.remaining = n
		} else {
			h.Del("Content-Length")
		}
	}
	h.Del("Transfer-Encoding")
	switch {
	case w.noBody || w.remaining >= 0:
	case w.req.ProtoMinor >= 1:
		w.chunked = true
		h.Set("Transfer-Encoding", "chunked")
	default:
		w.closeAfter = true
	}
	switch {
	case w.closeAfter:
		h.Set("Connection", "close")
	case w.req.ProtoMinor == 0:
		h.Set("Connection", "keep-alive")
	default:
		h.Del("Connection")
	}
	w.writeStatusLine(w.status)
	w.writeFields(h)
	_, _ = w.bw.WriteString("\r\n")
}

// Write sends body bytes, as one chunk when chunked.
func (w *responseWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.commit()
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.remaining >= 0 {
		if int64(len(p)) > w.remaining {
			w.closeAfter = true
			return 0, errBodyTooLong
		}
		w.remaining -= int64(len(p))
	}
	if w.chunked {
		w.scratch = strconv.AppendInt(w.scratch[:0], int64(len(p)), 16)
		w.scratch = append(w.scratch, "\r\n"...)
		_, _ = w.bw.Write(w.scratch)
	}
	n, err := w.bw.Write(p)
	if err != nil {
		w.closeAfter = true
		return n, err
	}
	if w.chunked {
		_, err = w.bw.WriteString("\r\n")
	}
	return n, err
}

// Flush sends what is buffered.
func (w *responseWriter) Flush() {
	if w.hijacked {
		return
	}
	w.commit()
	if w.bw.Flush() != nil {
		w.closeAfter = true
	}
}

// FlushError is Flush with its error, for http.ResponseController.
func (w *responseWriter) FlushError() error {
	w.Flush()
	if w.closeAfter && w.bw.Buffered() > 0 {
		return errors.New("h1: flush failed")
	}
	return nil
}

// Hijack hands the connection to the handler, with what is already read and a writer for
// it; the server no longer touches it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("h1: the response has started; hijack before writing")
	}
	w.hijacked = true
	w.cr.abortPendingRead()
	w.cr.setBodyTimeout(0)
	return w.conn, bufio.NewReadWriter(w.br, w.bw), nil
}

// finish ends the response: the last chunk with trailers, and a flush.
func (w *responseWriter) finish() error {
	w.commit()
	if w.chunked {
		_, _ = w.bw.WriteString("0\r\n")
		for name, values := range w.header {
			if strings.HasPrefix(name, http.TrailerPrefix) {
				w.writeTrailer(strings.TrimPrefix(name, http.TrailerPrefix), values)
			}
		}
		for _, name := range w.trailers {
			w.writeTrailer(name, w.header[name])
		}
		_, _ = w.bw.WriteString("\r\n")
	} else if w.remaining > 0 {
		w.closeAfter = true // the handler wrote less than it declared: the client must not wait
	}
	return w.bw.Flush()
}

func (w *responseWriter) writeTrailer(name string, values []string) {
	for _, v := range values {
		w.scratch = append(w.scratch[:0], name...)
		w.scratch = append(w.scratch, ": "...)
		w.scratch = appendClean(w.scratch, v)
		w.scratch = append(w.scratch, "\r\n"...)
		_, _ = w.bw.Write(w.scratch)
	}
}
