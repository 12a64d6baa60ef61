// Package h1 is the proxy's HTTP/1.x server: a strict request reader in front of
// net/http's parser, and a response writer that streams (chunked when the length is
// unknown) and lets handlers take over the connection for upgrades.
//
// net/http's own server accepts a request with both Transfer-Encoding and Content-Length
// (it drops the length), which a proxy must not: two hops that read one request differently
// is request smuggling. This server reads the whole request head first and refuses, with 400
// and a closed connection, bare LF line ends, obs-fold, malformed header names or values,
// Transfer-Encoding with Content-Length, conflicting Content-Length values, any transfer
// coding but chunked, Transfer-Encoding in HTTP/1.0, a missing or repeated Host, CONNECT, and
// a malformed first chunk; it answers 431 to a head over MaxHeaderBytes or with more than
// MaxHeaderCount fields. Refused requests never reach the handler.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultMaxHeaderCount    = 100
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 90 * time.Second
	// maxDrain is how much of an unread request body is skipped to keep a connection.
	maxDrain = 256 << 10
)

// ErrorHeader is the response header naming why the proxy itself answered.
const ErrorHeader = "lightmesh-proxy-error"

// Options configure a Server.
type Options struct {
	// Handler serves every request. Required.
	Handler http.Handler
	// MaxHeaderBytes bounds the request line and header fields (DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header fields (DefaultMaxHeaderCount).
	MaxHeaderCount int
	// ReadHeaderTimeout bounds the time to read a request head (DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive connection
	// (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Logger receives refused requests at debug level; nil means slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns o with its zero limits set to the defaults.
func (o Options) WithDefaults() Options {
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxHeaderCount == 0 {
		o.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	return o
}

func (o *Options) validate() error {
	if o.Handler == nil {
		return errors.New("h1: no handler given")
	}
	*o = o.WithDefaults()
	if o.MaxHeaderBytes < 1024 || o.MaxHeaderCount < 1 || o.ReadHeaderTimeout < 0 || o.IdleTimeout < 0 {
		return fmt.Errorf("h1: limits must be positive (max header bytes at least 1024): %d bytes, %d fields, %s, %s",
			o.MaxHeaderBytes, o.MaxHeaderCount, o.ReadHeaderTimeout, o.IdleTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Server serves HTTP/1.x connections handed to ServeConn.
type Server struct {
	opts    Options
	readers sync.Pool
	writers sync.Pool

	mu      sync.Mutex
	idle    map[net.Conn]struct{}
	closing atomic.Bool
}

// NewServer returns a server for opts.
func NewServer(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, idle: map[net.Conn]struct{}{}}
	s.readers.New = func() any { return bufio.NewReaderSize(nil, opts.MaxHeaderBytes+512) }
	s.writers.New = func() any { return bufio.NewWriterSize(nil, 8<<10) }
	return s, nil
}

// Shutdown makes every connection close after its current response and wakes idle ones.
func (s *Server) Shutdown() {
	s.closing.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.idle {
		_ = c.SetReadDeadline(time.Now())
	}
}

func (s *Server) setIdle(c net.Conn, idle bool) {
	s.mu.Lock()
	if idle {
		s.idle[c] = struct{}{}
	} else {
		delete(s.idle, c)
	}
	s.mu.Unlock()
}

// headError is a refused request head: the status to answer and why.
type headError struct {
	status int
	reason string
}

func (e *headError) Error() string { return e.reason }

func refuse(status int, format string, args ...any) *headError {
	return &headError{status: status, reason: fmt.Sprintf(format, args...)}
}

// ServeConn serves requests on c until the client or the handler ends it, then closes c
// unless a handler hijacked it. ctx is the base of every request's context.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(c)
	bw := s.writers.Get().(*bufio.Writer)
	bw.Reset(c)
	hijacked := false
	defer func() {
		s.setIdle(c, false)
		if !hijacked {
			c.Close()
			br.Reset(nil)
			bw.Reset(nil)
			s.readers.Put(br)
			s.writers.Put(bw)
		}
	}()
	remote := c.RemoteAddr().String()
	w := &responseWriter{conn: c, br: br, bw: bw}
	for first := true; ; first = false {
		s.setIdle(c, true)
		if s.closing.Load() && !first {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		if _, err := br.Peek(1); err != nil {
			return
		}
		s.setIdle(c, false)
		_ = c.SetReadDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
		req, herr := s.readRequest(br)
		if herr != nil {
			s.opts.Logger.Debug("refused an HTTP/1 request", "remote", remote, "status", herr.status, "reason", herr.reason)
			writeError(bw, herr.status, "bad-request", herr.reason)
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		req = req.WithContext(ctx)
		req.RemoteAddr = remote
		if req.Header.Get("Expect") != "" {
			if !strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
				writeError(bw, http.StatusExpectationFailed, "bad-request", "unsupported Expect")
				return
			}
			req.Header.Del("Expect")
			if req.ContentLength != 0 {
				_, _ = bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
				if bw.Flush() != nil {
					return
				}
			}
		}
		body := &serverBody{r: req.Body}
		req.Body = body
		if herr := checkFirstChunk(req, body); herr != nil {
			s.opts.Logger.Debug("refused an HTTP/1 request", "remote", remote, "status", herr.status, "reason", herr.reason)
			writeError(bw, herr.status, "bad-request", herr.reason)
			return
		}
		w.reset(req, s.closing.Load())
		if !s.serve(w, req) {
			return
		}
		if w.hijacked {
			hijacked = true
			return
		}
		if err := w.finish(); err != nil || w.closeAfter {
			return
		}
		// Skip what the handler left of the body, within reason, to read the next request.
		if n, err := io.CopyN(io.Discard, body, maxDrain+1); n > maxDrain || (err != nil && !errors.Is(err, io.EOF)) {
			return
		}
	}
}

// serve runs the handler; a panic (http.ErrAbortHandler included) ends the connection.
func (s *Server) serve(w *responseWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if err, isErr := v.(error); !isErr || !errors.Is(err, http.ErrAbortHandler) {
				s.opts.Logger.Error("HTTP/1 handler panicked", "panic", v)
			}
			ok = w.hijacked
		}
	}()
	s.opts.Handler.ServeHTTP(w, req)
	return true
}

// readRequest checks the head in br's buffer, then parses it with net/http.
func (s *Server) readRequest(br *bufio.Reader) (*http.Request, *headError) {
	headLen, herr := s.scanHead(br)
	if herr != nil {
		return nil, herr
	}
	head, _ := br.Peek(headLen)
	if herr := s.checkHead(head); herr != nil {
		return nil, herr
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "malformed request: %v", err)
	}
	if req.ProtoMajor != 1 {
		return nil, refuse(http.StatusBadRequest, "unsupported protocol %s", req.Proto)
	}
	if req.Method == http.MethodConnect {
		return nil, refuse(http.StatusMethodNotAllowed, "CONNECT is not proxied")
	}
	return req, nil
}

// scanHead waits until the whole head (ending in an empty line) is buffered and returns its
// length, refusing bare LF line ends and heads over the limit.
func (s *Server) scanHead(br *bufio.Reader) (int, *headError) {
	checked := 0
	for {
		buf, err := br.Peek(br.Buffered())
		for i := checked; i < len(buf); i++ {
			if buf[i] != '\n' {
				continue
			}
			if i == 0 || buf[i-1] != '\r' {
				return 0, refuse(http.StatusBadRequest, "bare LF in the request head; end lines with CRLF")
			}
			if i >= 3 && buf[i-3] == '\r' && buf[i-2] == '\n' {
				if i+1 > s.opts.MaxHeaderBytes {
					return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "request head over %d bytes", s.opts.MaxHeaderBytes)
				}
				return i + 1, nil
			}
		}
		checked = len(buf)
		if len(buf) >= s.opts.MaxHeaderBytes {
			return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "request head over %d bytes", s.opts.MaxHeaderBytes)
		}
		if err != nil {
			return 0, refuse(http.StatusBadRequest, "read the request head: %v", err)
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) == 0 || errors.Is(err, io.EOF) {
				return 0, refuse(http.StatusBadRequest, "the request head ended early")
			}
			return 0, refuse(http.StatusRequestTimeout, "read the request head: %v", err)
		}
	}
}

// checkHead applies the framing rules to the raw head, lines ending in CRLF.
func (s *Server) checkHead(head []byte) *headError {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	http10 := bytes.HasSuffix(line, []byte(" HTTP/1.0"))
	fields, hosts, lengths, encodings := 0, 0, 0, 0
	var length []byte
	for len(rest) > 2 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if line[0] == ' ' || line[0] == '\t' {
			return refuse(http.StatusBadRequest, "obsolete line folding in the request head")
		}
		fields++
		if fields > s.opts.MaxHeaderCount {
			return refuse(http.StatusRequestHeaderFieldsTooLarge, "more than %d header fields", s.opts.MaxHeaderCount)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return refuse(http.StatusBadRequest, "malformed header field")
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		for _, c := range name {
			if !isTokenChar(c) {
				return refuse(http.StatusBadRequest, "malformed header field name %q", name)
			}
		}
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return refuse(http.StatusBadRequest, "control character in header field %s", name)
			}
		}
		switch {
		case asciiEqualFold(name, "host"):
			hosts++
		case asciiEqualFold(name, "content-length"):
			if lengths > 0 && !bytes.Equal(value, length) {
				return refuse(http.StatusBadRequest, "conflicting Content-Length values")
			}
			lengths++
			length = value
		case asciiEqualFold(name, "transfer-encoding"):
			encodings++
			if encodings > 1 || !asciiEqualFold(value, "chunked") {
				return refuse(http.StatusBadRequest, "unsupported Transfer-Encoding %q; only a single chunked is accepted", value)
			}
		}
	}
	switch {
	case encodings > 0 && lengths > 0:
		return refuse(http.StatusBadRequest, "both Transfer-Encoding and Content-Length")
	case encodings > 0 && http10:
		return refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
	case hosts > 1:
		return refuse(http.StatusBadRequest, "more than one Host")
	case hosts == 0 && !http10:
		return refuse(http.StatusBadRequest, "missing Host")
	}
	if lengths > 0 {
		if _, err := strconv.ParseUint(string(length), 10, 63); err != nil || len(length) == 0 || length[0] == '+' {
			return refuse(http.StatusBadRequest, "malformed Content-Length %q", length)
		}
	}
	return nil
}

// checkFirstChunk reads the first byte of a chunked body, so that a malformed chunk size is
// refused before the request goes anywhere; the byte is replayed.
func checkFirstChunk(req *http.Request, body *serverBody) *headError {
	if len(req.TransferEncoding) == 0 {
		return nil
	}
	n, err := body.r.Read(body.b[:])
	if err != nil && !errors.Is(err, io.EOF) {
		return refuse(http.StatusBadRequest, "malformed chunked body: %v", err)
	}
	body.n, body.eof = n, errors.Is(err, io.EOF)
	return nil
}

// serverBody is a request body as handlers see it: Close does nothing (the server reads
// what a handler leaves, to keep the connection), and a byte read early is replayed.
type serverBody struct {
	r   io.ReadCloser
	b   [1]byte
	n   int
	eof bool
}

func (r *serverBody) Read(p []byte) (int, error) {
	if r.n > 0 {
		if len(p) == 0 {
			return 0, nil
		}
		p[0] = r.b[0]
		r.n = 0
		if r.eof {
			return 1, io.EOF
		}
		return 1, nil
	}
	if r.eof {
		return 0, io.EOF
	}
	n, err := r.r.Read(p)
	if errors.Is(err, io.EOF) {
		r.eof = true
	}
	return n, err
}

// Close lets the server finish the body.
func (r *serverBody) Close() error { return nil }

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// writeError answers a refused request and flushes; the caller closes the connection.
func writeError(bw *bufio.Writer, status int, kind, reason string) {
	body := reason + "\n"
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n%s: %s\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), ErrorHeader, kind, len(body), body)
	_ = bw.Flush()
}
