// Package h1 is the proxy's HTTP/1.x server: a strict request reader in front of
// net/http's parser, its own request body framing, and a response writer that streams
// (chunked when the length is unknown) and lets handlers take over the connection for
// upgrades.
//
// net/http's own server accepts a request with both Transfer-Encoding and Content-Length
// (it drops the length), which a proxy must not: two hops that read one request differently
// is request smuggling. This server reads the whole request head first and refuses, with 400
// and a closed connection, a malformed request line (method, target, version other than
// HTTP/1.1 or HTTP/1.0), bare LF line ends, obs-fold, malformed header names or values,
// Transfer-Encoding with Content-Length, conflicting Content-Length values, any transfer
// coding but chunked, Transfer-Encoding in HTTP/1.0, a missing, repeated or malformed Host,
// CONNECT (405), and a malformed first chunk; it answers 431 to a head over MaxHeaderBytes or
// with more than MaxHeaderCount fields. Refused requests never reach the handler.
//
// Chunked bodies are framed strictly (hexadecimal sizes that fit 63 bits, well-formed chunk
// extensions, CRLF everywhere); declared trailer fields are exposed in Request.Trailer at
// the end of the body, within the header limits. A body that breaks the rules once the
// handler runs, or stalls for BodyReadTimeout, fails the handler's read with
// ErrMalformedBody or ErrBodyReadTimeout and the connection is closed. A request's context
// is cancelled when the client goes away after sending it (watched from 5 ms into the
// request on).
//
// HTTP/1.0 clients get close-delimited responses when the length is unknown, and keep
// their connection only with Connection: keep-alive.
//
// Client (client.go) is the other direction: an HTTP/1.1 client with a keep-alive pool that
// writes a request whose body is absent or in memory and reads the response on the caller's
// goroutine, for a proxy that forwards one request per handler.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
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
	DefaultBodyReadTimeout   = 60 * time.Second
	// maxDrain is how much of an unread request body is skipped to keep a connection.
	maxDrain = 256 << 10
	// lingerTimeout and maxLinger bound the reading of a closing connection.
	lingerTimeout = 500 * time.Millisecond
	maxLinger     = 256 << 10
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
	// BodyReadTimeout bounds each wait for request body bytes, so that a client that stops
	// sending mid-body cannot hold the request (DefaultBodyReadTimeout). The body read then
	// fails with ErrBodyReadTimeout.
	BodyReadTimeout time.Duration
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
	if o.BodyReadTimeout == 0 {
		o.BodyReadTimeout = DefaultBodyReadTimeout
	}
	return o
}

func (o *Options) validate() error {
	if o.Handler == nil {
		return errors.New("h1: no handler given")
	}
	*o = o.WithDefaults()
	if o.MaxHeaderBytes < 1024 || o.MaxHeaderCount < 1 || o.ReadHeaderTimeout < 0 || o.IdleTimeout < 0 || o.BodyReadTimeout < 0 {
		return fmt.Errorf("h1: limits must be positive (max header bytes at least 1024): %d bytes, %d fields, header timeout %s, idle timeout %s, body read timeout %s",
			o.MaxHeaderBytes, o.MaxHeaderCount, o.ReadHeaderTimeout, o.IdleTimeout, o.BodyReadTimeout)
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

// ServeConn serves requests on c until the client or the handler ends it, then closes c
// unless a handler hijacked it. ctx is the base of every request's context; a request's
// context is also cancelled when the client closes the connection after sending the
// request (so a proxy stops the upstream request; noticed once the request has run
// clientGoneWatchDelay), and when the handler returns. An idle keep-alive connection holds
// no write buffer.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	cr := newConnReader(c)
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(cr)
	// The write buffer is held from a request's head to the end of its response only: an
	// idle keep-alive connection holds none.
	var bw *bufio.Writer
	takeWriter := func() *bufio.Writer {
		if bw == nil {
			bw = s.writers.Get().(*bufio.Writer)
			bw.Reset(c)
		}
		return bw
	}
	releaseWriter := func() {
		if bw != nil && bw.Buffered() == 0 {
			bw.Reset(nil)
			s.writers.Put(bw)
			bw = nil
		}
	}
	hijacked, reuse := false, true
	defer func() {
		s.setIdle(c, false)
		if hijacked {
			return
		}
		if !reuse {
			c.Close()
			return
		}
		cr.abortPendingRead()
		lingeringClose(c)
		br.Reset(nil)
		s.readers.Put(br)
		if bw != nil {
			bw.Reset(nil)
			s.writers.Put(bw)
		}
	}()
	remote := c.RemoteAddr().String()
	w := &responseWriter{conn: c, cr: cr, br: br}
	var drainBuf []byte
	for first := true; ; first = false {
		releaseWriter()
		w.bw = bw
		s.setIdle(c, true)
		_ = c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		// After the deadline: a Shutdown in between either is seen here or wakes the read.
		if s.closing.Load() && !first {
			return
		}
		if _, err := br.Peek(1); err != nil {
			return
		}
		s.setIdle(c, false)
		_ = c.SetReadDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
		if !skipEmptyLines(br) {
			return
		}
		w.bw = takeWriter()
		req, h, herr := s.readRequest(br)
		if herr != nil {
			s.refused(bw, remote, herr)
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		rctx, cancel := context.WithCancelCause(ctx)
		req = req.WithContext(rctx)
		req.RemoteAddr = remote
		body := s.newBody(req, br, cr, h)
		if herr := s.expectContinue(req, bw); herr != nil {
			cancel(nil)
			s.refused(bw, remote, herr)
			return
		}
		if herr := body.checkFirstChunk(); herr != nil {
			cancel(nil)
			s.refused(bw, remote, herr)
			return
		}
		if body.eof {
			cr.startBackgroundRead(cancel)
		} else {
			body.onEOF = cancel
		}
		w.reset(req, &s.closing)
		ok := s.serve(w, req)
		if w.hijacked {
			hijacked = true
			cancel(nil)
			return
		}
		if !body.finishHandler() {
			// Another goroutine still reads the body: only closing the connection stops it,
			// and the buffers stay with it.
			reuse = false
			w.closeAfter = true
			_ = w.finish()
			cancel(nil)
			return
		}
		if !ok {
			cancel(nil)
			return
		}
		if body.err != nil {
			w.closeAfter = true // the handler saw the body fail; nothing more is read
		}
		err := w.finish()
		cr.abortPendingRead()
		cancel(nil)
		if err != nil || w.closeAfter {
			return
		}
		if drainBuf == nil {
			drainBuf = make([]byte, 4096)
		}
		if !body.drain(maxDrain, drainBuf) {
			return
		}
		cr.setBodyTimeout(0)
	}
}

// lingeringClose half-closes c and reads what the client still sends, for a moment, before
// closing: closing with unread input makes the kernel send a reset, and the client may then
// lose the response it has not read yet (a refusal, or an answer to a body left unread).
func lingeringClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.CopyN(io.Discard, c, maxLinger)
	}
	_ = c.Close()
}

// refused logs and answers a refused request; the caller closes the connection.
func (s *Server) refused(bw *bufio.Writer, remote string, herr *headError) {
	s.opts.Logger.Debug("refused an HTTP/1 request", "remote", remote, "status", herr.status, "reason", herr.reason)
	writeError(bw, herr.status, "bad-request", herr.reason)
}

// skipEmptyLines skips a few empty lines before a request (RFC 9112 section 2.2: some
// clients send a CRLF after a body). It reports false when the connection ended.
func skipEmptyLines(br *bufio.Reader) bool {
	for range 4 {
		b, err := br.Peek(2)
		if len(b) == 0 {
			return false
		}
		if err != nil || b[0] != '\r' || b[1] != '\n' {
			return true
		}
		_, _ = br.Discard(2)
	}
	return true
}

// expectContinue handles Expect: 100-continue is answered at once when a body is to come
// (HTTP/1.1; HTTP/1.0 clients do not know it and their expectation is ignored); any other
// expectation is refused with 417.
func (s *Server) expectContinue(req *http.Request, bw *bufio.Writer) *headError {
	values, ok := req.Header["Expect"]
	if !ok {
		return nil
	}
	delete(req.Header, "Expect")
	expect := textproto.TrimString(strings.Join(values, ","))
	if req.ProtoMinor == 0 || expect == "" {
		return nil
	}
	if !strings.EqualFold(expect, "100-continue") {
		return refuse(http.StatusExpectationFailed, "unsupported Expect %q", expect)
	}
	if req.ContentLength != 0 {
		_, _ = bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := bw.Flush(); err != nil {
			return refuse(http.StatusBadRequest, "write 100 Continue: %v", err)
		}
	}
	return nil
}

// newBody replaces the body net/http made (never read) with the server's own framing.
func (s *Server) newBody(req *http.Request, br *bufio.Reader, cr *connReader, h head) *serverBody {
	b := &serverBody{
		br: br, cr: cr, timeout: s.opts.BodyReadTimeout,
		trailer: req.Trailer, headBytes: h.len, headCount: h.fields,
		maxBytes: s.opts.MaxHeaderBytes, maxCount: s.opts.MaxHeaderCount,
	}
	switch {
	case len(req.TransferEncoding) > 0:
		b.chunked = true
	case req.ContentLength > 0:
		b.n = req.ContentLength
	default:
		b.eof = true
		req.Body = http.NoBody
		return b
	}
	cr.setBodyTimeout(s.opts.BodyReadTimeout)
	req.Body = b
	return b
}

// checkFirstChunk reads the first chunk-size line of a chunked body, so that a malformed
// one is refused (400) before the request goes anywhere.
func (b *serverBody) checkFirstChunk() *headError {
	if !b.chunked {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.nextChunk(); err != nil {
		if err = b.fail(err); errors.Is(err, ErrBodyReadTimeout) {
			return refuse(http.StatusRequestTimeout, "%v", err)
		}
		return refuse(http.StatusBadRequest, "malformed chunked body: %v", err)
	}
	return nil
}

// serve runs the handler; a panic (http.ErrAbortHandler included) ends the connection.
func (s *Server) serve(w *responseWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if err, isErr := v.(error); !isErr || !errors.Is(err, http.ErrAbortHandler) {
				s.opts.Logger.Error("HTTP/1 handler panicked", "panic", v)
			}
			ok = false
		}
	}()
	s.opts.Handler.ServeHTTP(w, req)
	return true
}

// writeError answers a refused request and flushes; the caller closes the connection.
func writeError(bw *bufio.Writer, status int, kind, reason string) {
	body := reason + "\n"
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n%s: %s\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), ErrorHeader, kind, len(body), body)
	_ = bw.Flush()
}
