package dataplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// Directions, as metrics label them.
const (
	outbound = "outbound"
	inbound  = "inbound"
)

// connInfo is what the proxy knows of an accepted connection; every request on it shares it.
type connInfo struct {
	direction string
	origDst   netip.AddrPort
	// remote is the client's address (a meshed client's is its proxy's, the pod's address).
	remote netip.AddrPort
	// meshed: the client is a proxy that authenticated with mTLS as clientID (a SPIFFE ID);
	// principal is the same identity in Istio's form (cluster.local/ns/NS/sa/SA).
	meshed    bool
	clientID  string
	principal string
	tls       string // metrics label
	// h2 is true when the client speaks HTTP/2.
	h2 bool
	// gateway: the connection came to a gateway listener (from outside the mesh); origDst's
	// port is the Gateway server port.
	gateway bool
	// clientIDHeader is the value of ClientIDHeader for a meshed connection's requests,
	// shared by them: header values are read by the clients and never changed in place.
	clientIDHeader []string
}

type connInfoKey struct{}

func withConnInfo(ctx context.Context, ci *connInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, ci)
}

func connInfoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci
}

// infoConn carries its connInfo to the HTTP/2 server (ConnContext), and hides a *tls.Conn
// from net/http so that it speaks HTTP/2 with prior knowledge over it.
type infoConn struct {
	net.Conn
	info *connInfo
}

// chanListener hands connections the proxy accepted and classified to an http.Server.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c over; false when the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// Exchange is one HTTP request on its way through the handler chain: each step reads what
// the previous ones learnt and adds its own. Exchanges are pooled.
type Exchange struct {
	W    http.ResponseWriter
	R    *http.Request
	Conn *connInfo
	// Authority is the request's host:port.
	Authority string
	// Target is where the request goes: the endpoint picked, or the original destination.
	Target netip.AddrPort
	// ServerIdentity is the identity the target must prove, ServerID its string; zero when
	// the target is not meshed.
	ServerIdentity identity.SpiffeID
	ServerID       string
	// Meshed is true when the request goes over mTLS to another proxy.
	Meshed bool
	// Balanced is true when the balancer picked Target: it is told how the request went.
	Balanced bool
	// Labels are the request's metrics labels.
	Labels metrics.Labels
	// Status is the response status sent (or 0), Failure its classification.
	Status  int
	Failure bool
	// WasHTTP1 marks a request that arrived as HTTP/1 (restored on the far side).
	WasHTTP1 bool
	// Dst is the destination the balancer picked Target from (nil: none), for Istio's default
	// retry of a connection that could not be opened (roundTrip).
	Dst *discovery.Destination
	// body is the request body read into memory (bufferSmallBody), to send again on a retry.
	body []byte
	// mesh is the client of a meshed target (outboundTransport), http1 of an HTTP/1 one.
	mesh  meshRoundTripper
	http1 http1RoundTripper
}

var exchanges = sync.Pool{New: func() any { return new(Exchange) }}

// Handler serves Exchanges; Middleware wraps one Handler in another.
type Handler interface{ ServeExchange(*Exchange) }

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(*Exchange)

// ServeExchange calls f.
func (f HandlerFunc) ServeExchange(ex *Exchange) { f(ex) }

// Middleware is one step of the request path.
type Middleware func(Handler) Handler

// Chain returns an http.Handler that runs the middlewares in order, the first outermost,
// then last.
func Chain(last Handler, middlewares ...Middleware) http.Handler {
	h := last
	for i := len(middlewares) - 1; i >= 0; i-- {
		h = middlewares[i](h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := exchanges.Get().(*Exchange)
		*ex = Exchange{W: w, R: r, Conn: connInfoFrom(r.Context())}
		defer func() {
			*ex = Exchange{}
			exchanges.Put(ex)
		}()
		h.ServeExchange(ex)
	})
}

// serveHTTP dispatches a request to the chain of its connection's direction.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ci := connInfoFrom(r.Context())
	if ci == nil {
		http.Error(w, "no connection information", http.StatusInternalServerError)
		return
	}
	if p.inFlight.Add(1) > int64(p.opts.MaxInFlightRequests) {
		p.inFlight.Add(-1)
		p.shed(w, ci)
		return
	}
	defer p.inFlight.Add(-1)
	if ci.h2 {
		growStack()
	}
	switch {
	case ci.gateway:
		p.gatewayChain.ServeHTTP(w, r)
	case ci.direction == outbound:
		p.outboundChain.ServeHTTP(w, r)
	default:
		p.inboundChain.ServeHTTP(w, r)
	}
}

// shed answers a request over the in-flight limit: 503 at once, counted in
// requests_shed_total, so that the excess costs next to nothing.
func (p *Proxy) shed(w http.ResponseWriter, ci *connInfo) {
	p.metrics.Shed(ci.direction)
	h := w.Header()
	h.Set(ProxyErrorHeader, reasonOverloaded)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Retry-After", "1")
	h.Set("Content-Length", strconv.Itoa(len(reasonOverloaded)+1))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, reasonOverloaded+"\n")
}

type noHandler struct{}

func (noHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "no handler", http.StatusInternalServerError)
}

// handlerStackFrame is the stack frame growStack asks for: a new goroutine's 8 KiB stack
// then becomes 16 KiB in one copy, what serving a mesh request to the application takes.
const handlerStackFrame = 8 << 10

// growStack grows the calling goroutine's stack at once, while little of it is in use.
// net/http's HTTP/2 server runs each request on a new goroutine whose stack starts at 8 KiB
// and grew, copy by copy, as the handler went deeper: runtime.newstack was 8-9 % of a
// server-side proxy's CPU, 4.6 % with this (CPU profiles at 4,000 requests/s, BENCHMARKS.md).
// HTTP/1 handlers run on their connection's goroutine, whose stack stays grown: serveHTTP
// calls this for HTTP/2 requests only.
//
//go:noinline
func growStack() {
	var frame [handlerStackFrame]byte
	touchFrame(&frame)
}

// touchFrame keeps growStack's frame from being optimized away.
//
//go:noinline
func touchFrame(frame *[handlerStackFrame]byte) { frame[0] = 0 }
