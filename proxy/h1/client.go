package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// Defaults of ClientOptions.
const (
	DefaultMaxIdleConns        = 1024
	DefaultMaxIdleConnsPerHost = 128
	// max1xxResponses bounds the informational responses skipped before the final one
	// (net/http's Transport allows as many).
	max1xxResponses = 5
	// clientWriteBuffer holds a request head and a body of the size a caller keeps in
	// memory, so that both leave in one write.
	clientWriteBuffer = 32 << 10
	// clientReadBuffer is the response reader's buffer, held while a request is in flight
	// (net/http's Transport reads with as much). A longer head is read through it too, up to
	// MaxResponseHeaderBytes.
	clientReadBuffer = 4 << 10
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// Dial opens a connection to addr (host:port). Required.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdleConns bounds the kept-alive connections of all hosts (DefaultMaxIdleConns),
	// MaxIdleConnsPerHost those of one host (DefaultMaxIdleConnsPerHost).
	MaxIdleConns        int
	MaxIdleConnsPerHost int
	// IdleTimeout is how long an unused connection is kept (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response's status line and header fields
	// (DefaultMaxHeaderBytes).
	MaxResponseHeaderBytes int
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Client sends HTTP/1.1 requests on the caller's goroutine: it writes the whole request,
// then reads the response head, and returns a response whose body reads from the
// connection. The connection goes back to the pool of its host when the body has been read
// to its end (a body closed earlier closes it). net/http's Transport instead hands each
// request to a writing and a reading goroutine of the connection; here nothing changes
// goroutine, which is what a proxy that forwards one request at a time per handler wants.
//
// Because the request is written before the response is read, RoundTrip is for requests
// whose body is absent or already in memory, without Expect: 100-continue; a caller sends
// streamed bodies with a client that reads while it writes (net/http's Transport), or a
// server that answers early without reading the body would hold the request until its
// context ends.
//
// A pooled connection is checked before it is used (a non-blocking peek: a server that
// closed it, or sent something unasked, has it dropped). A request is never sent twice: one
// whose connection ends before any byte of the response fails with an error wrapping
// errNoResponse (and the connection's reset), as Envoy and Linkerd report an upstream reset;
// a route's retry policy (retryOn: reset) decides whether to send it again. (net/http's
// Transport would resend an idempotent request on a reused connection.)
type Client struct {
	opts    ClientOptions
	readers sync.Pool
	writers sync.Pool

	mu         sync.Mutex
	idle       map[string][]*clientConn
	idleCount  int
	sweepTimer *time.Timer // the next sweep of idle connections; nil when none is due
	closed     bool
}

// NewClient returns a client for opts.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Dial == nil {
		return nil, errors.New("h1: the client has no dial function")
	}
	if opts.MaxIdleConns == 0 {
		opts.MaxIdleConns = DefaultMaxIdleConns
	}
	if opts.MaxIdleConnsPerHost == 0 {
		opts.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxResponseHeaderBytes == 0 {
		opts.MaxResponseHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxIdleConns < 0 || opts.MaxIdleConnsPerHost < 0 || opts.IdleTimeout < 0 || opts.MaxResponseHeaderBytes < 1024 {
		return nil, fmt.Errorf("h1: client limits must be positive (max response header bytes at least 1024): %d idle connections, %d per host, idle timeout %s, %d header bytes",
			opts.MaxIdleConns, opts.MaxIdleConnsPerHost, opts.IdleTimeout, opts.MaxResponseHeaderBytes)
	}
	c := &Client{opts: opts, idle: map[string][]*clientConn{}}
	c.readers.New = func() any { return bufio.NewReaderSize(nil, clientReadBuffer) }
	c.writers.New = func() any { return bufio.NewWriterSize(nil, clientWriteBuffer) }
	return c, nil
}

// clientConn is one connection to a host; one request at a time uses it.
type clientConn struct {
	conn net.Conn
	addr string
	// br reads the responses from in; nil while the connection is idle in the pool.
	br     *bufio.Reader
	in     headLimitedReader
	reused bool
	idleAt time.Time

	// raw and peek look at an idle connection without reading from it (alive).
	raw     syscall.RawConn
	peek    func(fd uintptr) bool
	peekErr error // EAGAIN: open and silent
	peekBuf [1]byte
}

func newClientConn(conn net.Conn, addr string) *clientConn {
	cc := &clientConn{conn: conn, addr: addr, in: headLimitedReader{conn: conn, n: unlimited}}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cc.raw = raw
			cc.peek = func(fd uintptr) bool {
				_, _, cc.peekErr = syscall.Recvfrom(int(fd), cc.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				return true
			}
		}
	}
	return cc
}

// alive reports whether an idle connection is still open and silent: a server that closed
// it (keep-alive timeout) or wrote to it unasked has had its say.
func (cc *clientConn) alive() bool {
	if cc.raw == nil {
		return true
	}
	if err := cc.raw.Read(cc.peek); err != nil {
		return false
	}
	return errors.Is(cc.peekErr, syscall.EAGAIN)
}

// errNoResponse is a connection that ended before any byte of the response.
var errNoResponse = errors.New("h1: the server closed the connection without a response")

// RoundTrip sends r to r.URL.Host and returns the response. See Client for which requests
// it is for.
func (c *Client) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	addr, err := dialAddress(r.URL)
	if err != nil {
		closeBody(r)
		return nil, err
	}
	if ctx.Err() != nil {
		// A kept connection would take the request before the context's deadline reaches
		// it: net/http's Transport does not send it either.
		closeBody(r)
		return nil, context.Cause(ctx)
	}
	cc, err := c.conn(ctx, addr)
	if err != nil {
		closeBody(r)
		return nil, err
	}
	return c.send(ctx, cc, r)
}

// closeBody closes r's body: a RoundTripper closes it, also when it fails.
func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}

// dialAddress is the host:port an http URL's request goes to (port 80 when it names none).
func dialAddress(u *url.URL) (string, error) {
	if u.Scheme != "http" {
		return "", fmt.Errorf("h1: the client sends plaintext http requests only, not %q", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("h1: the request's URL has no host")
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}

// conn returns an idle connection to addr that is still alive, or a new one.
func (c *Client) conn(ctx context.Context, addr string) (*clientConn, error) {
	now := c.opts.Now()
	c.mu.Lock()
	for {
		list := c.idle[addr]
		if len(list) == 0 {
			break
		}
		cc := list[len(list)-1]
		list[len(list)-1] = nil
		if len(list) == 1 {
			delete(c.idle, addr)
		} else {
			c.idle[addr] = list[:len(list)-1]
		}
		c.idleCount--
		c.mu.Unlock()
		if now.Sub(cc.idleAt) < c.opts.IdleTimeout && cc.alive() {
			cc.reused = true
			cc.br = c.reader(&cc.in)
			return cc, nil
		}
		cc.conn.Close()
		c.mu.Lock()
	}
	c.mu.Unlock()
	conn, err := c.opts.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cc := newClientConn(conn, addr)
	cc.br = c.reader(&cc.in)
	return cc, nil
}

func (c *Client) reader(in io.Reader) *bufio.Reader {
	br := c.readers.Get().(*bufio.Reader)
	br.Reset(in)
	return br
}

// unlimited is headLimitedReader's n outside a response head.
const unlimited = math.MaxInt64

// headLimitedReader is a connection that lets at most n bytes more be read, then fails with
// errResponseHeadTooLarge: the bound of a response head, as net/http's Transport sets one.
type headLimitedReader struct {
	conn net.Conn
	n    int64
}

var errResponseHeadTooLarge = errors.New("h1: response head too large")

func (l *headLimitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errResponseHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.conn.Read(p)
	l.n -= int64(n)
	return n, err
}

// send writes r on cc and reads the response head.
func (c *Client) send(ctx context.Context, cc *clientConn, r *http.Request) (*http.Response, error) {
	var stop func() bool
	if ctx.Done() != nil {
		conn := cc.conn
		stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	}
	fail := func(err error) (*http.Response, error) {
		cc.conn.Close()
		if stop != nil && !stop() {
			err = context.Cause(ctx)
		}
		return nil, err
	}
	bw := c.writers.Get().(*bufio.Writer)
	bw.Reset(cc.conn)
	err := r.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	c.writers.Put(bw)
	if err != nil {
		if cc.reused {
			// Nothing was read: the server closed the kept connection.
			err = fmt.Errorf("%w: %w", errNoResponse, err)
		}
		return fail(err)
	}
	resp, err := c.readResponse(cc, r)
	if err != nil {
		return fail(err)
	}
	body := &clientBody{c: c, cc: cc, ctx: ctx, stop: stop, body: resp.Body, keep: !resp.Close && !r.Close}
	if resp.Body == http.NoBody {
		body.finish(true)
		return resp, nil
	}
	resp.Body = body
	return resp, nil
}

// readResponse reads the final response to r from cc, skipping informational ones. Each
// response head may take MaxResponseHeaderBytes from the connection.
func (c *Client) readResponse(cc *clientConn, r *http.Request) (*http.Response, error) {
	limit := c.opts.MaxResponseHeaderBytes
	defer func() { cc.in.n = unlimited }()
	for informational := 0; ; informational++ {
		cc.in.n = int64(limit)
		if cc.br.Buffered() == 0 {
			if _, err := cc.br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					return nil, fmt.Errorf("%w: %w", errNoResponse, err)
				}
				return nil, err
			}
		}
		resp, err := http.ReadResponse(cc.br, r)
		switch {
		case err != nil && cc.in.n <= 0:
			return nil, fmt.Errorf("h1: response head over %d bytes", limit)
		case err != nil:
			return nil, fmt.Errorf("h1: malformed response: %w", err)
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("h1: the server switched protocols (101); upgrades are not sent with this client")
		case resp.StatusCode >= 200:
			return resp, nil
		case informational == max1xxResponses:
			return nil, fmt.Errorf("h1: more than %d informational responses", max1xxResponses)
		}
	}
}

// clientBody is a response body: the connection is kept for the next request when the body
// ends, closed when it is closed before. Not for concurrent use.
type clientBody struct {
	c    *Client
	cc   *clientConn
	ctx  context.Context
	stop func() bool
	body io.ReadCloser
	keep bool
	err  error // after the end: io.EOF or what ended it
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.body.Read(p)
	if errors.Is(err, io.EOF) {
		b.finish(true)
	} else if err != nil {
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
		b.finish(false)
		b.err = err
	}
	return n, err
}

// Close closes the connection under a body not read to its end.
func (b *clientBody) Close() error {
	if b.err == nil {
		b.finish(false)
	}
	return nil
}

// finish ends the body: the connection goes back to the pool when complete is true and
// nothing says it must close, else it is closed.
func (b *clientBody) finish(complete bool) {
	b.err = io.EOF
	if b.stop != nil && !b.stop() {
		complete = false // the context ended: the connection's deadline is spoilt
	}
	if complete && b.keep {
		b.c.put(b.cc)
		return
	}
	b.cc.conn.Close()
}

// put keeps cc for the next request to its host, or closes it when the pool is full.
func (c *Client) put(cc *clientConn) {
	if cc.br.Buffered() > 0 {
		// The server sent more than the response.
		cc.conn.Close()
		return
	}
	cc.br.Reset(nil)
	c.readers.Put(cc.br)
	cc.br = nil
	cc.idleAt = c.opts.Now()
	c.mu.Lock()
	if c.closed || c.idleCount >= c.opts.MaxIdleConns || len(c.idle[cc.addr]) >= c.opts.MaxIdleConnsPerHost {
		c.mu.Unlock()
		cc.conn.Close()
		return
	}
	c.idle[cc.addr] = append(c.idle[cc.addr], cc)
	c.idleCount++
	if c.sweepTimer == nil {
		c.sweepTimer = time.AfterFunc(c.opts.IdleTimeout, c.sweep)
	}
	c.mu.Unlock()
}

// sweep closes the connections idle for longer than IdleTimeout, and comes back while
// some are kept.
func (c *Client) sweep() {
	stale := c.takeIdle(func(cc *clientConn) bool { return c.opts.Now().Sub(cc.idleAt) >= c.opts.IdleTimeout })
	for _, cc := range stale {
		cc.conn.Close()
	}
	c.mu.Lock()
	c.sweepTimer = nil
	if c.idleCount > 0 && !c.closed {
		c.sweepTimer = time.AfterFunc(max(c.opts.IdleTimeout/2, time.Millisecond), c.sweep)
	}
	c.mu.Unlock()
}

// takeIdle removes the idle connections that match from the pool and returns them.
func (c *Client) takeIdle(match func(*clientConn) bool) []*clientConn {
	var taken []*clientConn
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, list := range c.idle {
		kept := list[:0]
		for _, cc := range list {
			if match(cc) {
				taken = append(taken, cc)
			} else {
				kept = append(kept, cc)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(c.idle, addr)
		} else {
			c.idle[addr] = kept
		}
	}
	c.idleCount -= len(taken)
	return taken
}

// CloseIdleConnections closes the connections kept for later requests.
func (c *Client) CloseIdleConnections() {
	for _, cc := range c.takeIdle(func(*clientConn) bool { return true }) {
		cc.conn.Close()
	}
}

// Close closes the idle connections and keeps no more.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	if c.sweepTimer != nil {
		c.sweepTimer.Stop()
	}
	c.mu.Unlock()
	c.CloseIdleConnections()
}

// IdleConns is the number of connections kept for later requests.
func (c *Client) IdleConns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idleCount
}
