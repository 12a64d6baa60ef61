package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/h1"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// Reasons of proxy-generated errors, sent in the Lightmesh-Proxy-Error header.
const (
	reasonConnectRefused   = "connection-refused"
	reasonTimeout          = "timeout"
	reasonIdentityMismatch = "identity-mismatch"
	reasonTLS              = "tls-handshake-failed"
	reasonReset            = "connection-reset"
	reasonUpstream         = "upstream-error"
	reasonNoEndpoints      = "no-endpoints"
	reasonDiscovery        = "discovery-unavailable"
	reasonTooManyHeaders   = "too-many-headers"
	reasonNoIdentity       = "no-identity"
	reasonBadRequest       = "bad-request"
	reasonClientTimeout    = "client-timeout"
	reasonClientGone       = "client-gone"
	// Outbound policy (route.go, trafficpolicy.go).
	reasonNoRoute     = "no-route"
	reasonOverflow    = "overflow"
	reasonFaultAbort  = "fault-abort"
	reasonInvalidPath = "invalid-path"
	// The in-flight limit (Options.MaxInFlightRequests).
	reasonOverloaded = "overloaded"
)

// sanitize removes hop-by-hop fields and the fields the mesh owns, sets the verified client
// identity on inbound requests from meshed clients, refuses too many fields (431) and
// records the request's authority and labels.
func (p *Proxy) sanitize(direction string) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ex *Exchange) {
			r := ex.R
			if fieldCount(r.Header) > p.opts.HTTP.MaxHeaderCount {
				p.fail(ex, http.StatusRequestHeaderFieldsTooLarge, reasonTooManyHeaders, nil)
				return
			}
			ex.WasHTTP1 = r.ProtoMajor == 1
			upgrade := upgradeOf(r)
			removeHopByHop(r.Header)
			if upgrade != "" {
				r.Header["Connection"] = []string{"Upgrade"}
				r.Header["Upgrade"] = []string{upgrade}
			}
			if direction == inbound && ex.Conn.meshed && r.Header.Get(OrigProtoHeader) != "" {
				ex.WasHTTP1 = true
			}
			removeMeshHeaders(r.Header)
			// Declared trailers come later; the mesh's and hop-by-hop names among them are
			// dropped now, so they are never forwarded.
			if len(r.Trailer) > 0 {
				removeMeshHeaders(r.Trailer)
				removeHopByHop(r.Trailer)
			}
			if direction == inbound && ex.Conn.meshed {
				r.Header[ClientIDHeader] = ex.Conn.clientIDHeader
			}
			ex.Authority = authorityOf(r.Host, ex.Conn.origDst)
			ex.Target = ex.Conn.origDst
			ex.Labels = metrics.Labels{Direction: direction, Authority: ex.Authority, TLS: ex.Conn.tls, ClientID: ex.Conn.clientID}
			next.ServeExchange(ex)
		})
	}
}

// authorityOf returns host with a port: its own, or the original destination's.
func authorityOf(host string, dst netip.AddrPort) string {
	if host == "" {
		return dst.String()
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(dst.Port())))
}

// resolve asks discovery where an outbound request goes and picks the endpoint.
func (p *Proxy) resolve(next Handler) Handler {
	return HandlerFunc(func(ex *Exchange) {
		if p.opts.Resolver != nil {
			dst, found, err := p.opts.Resolver.Resolve(ex.R.Context(), discovery.Target{Authority: ex.Authority, Addr: ex.Conn.origDst})
			if err != nil {
				p.fail(ex, http.StatusServiceUnavailable, reasonDiscovery, err)
				return
			}
			if found {
				ep, err := p.opts.Balancer.Pick(dst)
				if err != nil {
					p.fail(ex, http.StatusServiceUnavailable, reasonNoEndpoints, err)
					return
				}
				ex.Labels.Authority = dst.Name
				ex.Dst = dst
				p.useEndpoint(ex, ep)
			}
		}
		next.ServeExchange(ex)
	})
}

// useEndpoint makes ep the exchange's target.
func (p *Proxy) useEndpoint(ex *Exchange, ep discovery.Endpoint) {
	ex.Target = ep.Addr
	ex.Balanced = true
	if ep.Meshed() && p.opts.TLS != nil {
		ex.Meshed = true
		ex.ServerIdentity = ep.Identity
		ex.ServerID = p.idString(ep.Identity)
		ex.Labels.TLS, ex.Labels.ServerID = metrics.TLSTrue, ex.ServerID
	} else {
		ex.Meshed = false
		ex.ServerIdentity, ex.ServerID = identity.SpiffeID{}, ""
	}
}

// observe counts the request and its response.
func (p *Proxy) observe(next Handler) Handler {
	return HandlerFunc(func(ex *Exchange) {
		route := p.metrics.Route(ex.Labels)
		route.Request()
		defer countResponse(route, ex, time.Now())
		next.ServeExchange(ex)
	})
}

// countResponse counts the response of ex, whose request was counted at start.
func countResponse(route *metrics.Route, ex *Exchange, start time.Time) {
	status := ex.Status
	if status == 0 {
		status = http.StatusOK
	}
	route.Response(status, ex.Failure || status >= 500, time.Since(start))
}

// outboundForward sends a request to its target: over the mesh when it is meshed.
func (p *Proxy) outboundForward() Handler {
	return HandlerFunc(func(ex *Exchange) {
		if upgradeOf(ex.R) != "" {
			p.forwardUpgrade(ex)
			return
		}
		p.roundTrip(ex, false)
	})
}

// outboundTransport is the client of ex's target: the mesh, HTTP/2 or HTTP/1.
func (p *Proxy) outboundTransport(ex *Exchange) http.RoundTripper {
	switch {
	case ex.Meshed:
		if ex.WasHTTP1 {
			ex.R.Header[OrigProtoHeader] = origProtoHTTP11
		}
		// A pointer into the (pooled) exchange: no allocation per request.
		ex.mesh = meshRoundTripper{p: p, ex: ex}
		return &ex.mesh
	case ex.Conn.h2:
		delete(ex.R.Header, OrigProtoHeader)
		return p.clients.h2c
	default:
		delete(ex.R.Header, OrigProtoHeader)
		return p.http1Transport(ex)
	}
}

// http1Transport is the HTTP/1 client of ex's target.
func (p *Proxy) http1Transport(ex *Exchange) http.RoundTripper {
	// A pointer into the (pooled) exchange: no allocation per request.
	ex.http1 = http1RoundTripper{c: p.clients, ex: ex}
	return &ex.http1
}

// http1RoundTripper sends an HTTP/1 request on the handler's goroutine (h1.Client) when its
// body is absent or in memory (bufferSmallBody), else with net/http's Transport, which
// streams the body while it reads the response (a server may answer before it reads it).
type http1RoundTripper struct {
	c  *clients
	ex *Exchange
}

func (t *http1RoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	inMemory := t.ex.body != nil || r.Body == nil || r.Body == http.NoBody
	if inMemory && len(r.Trailer) == 0 && r.Header["Expect"] == nil {
		return t.c.app.RoundTrip(r)
	}
	return t.c.h1.RoundTrip(r)
}

// inboundForward sends a request to the application, as HTTP/1 when it came as HTTP/1.
func (p *Proxy) inboundForward() Handler {
	return HandlerFunc(func(ex *Exchange) {
		if upgradeOf(ex.R) != "" {
			p.forwardUpgrade(ex)
			return
		}
		p.roundTrip(ex, true)
	})
}

// applicationTransport is the client of the application: HTTP/1 for a request that came as
// HTTP/1, else HTTP/2.
func (p *Proxy) applicationTransport(ex *Exchange) http.RoundTripper {
	if ex.WasHTTP1 {
		return p.http1Transport(ex)
	}
	return p.clients.h2c
}

// origProtoHTTP11 is the value of OrigProtoHeader, shared by every request: header values
// are read (encoded) by the mesh client and never changed in place.
var origProtoHTTP11 = []string{"HTTP/1.1"}

type meshRoundTripper struct {
	p  *Proxy
	ex *Exchange
}

func (m meshRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return m.p.clients.meshRoundTrip(r, m.ex.Target, m.ex.ServerIdentity)
}

// prepareUpstream makes r a client request to target.
func prepareUpstream(r *http.Request, target netip.AddrPort) {
	r.URL.Scheme = "http"
	r.URL.Host = upstreamHosts.String(target)
	r.RequestURI = ""
	// Connection management is hop by hop: a client's Connection: close (or HTTP/1.0) must
	// not close the proxy's pooled upstream connection.
	r.Close = false
	// A body of length 0 is none (an HTTP/2 request's too: its server ends the stream at the
	// declared length). Sent as http.NoBody, no client waits for it or announces one.
	if r.ContentLength == 0 && r.Body != nil && r.Body != http.NoBody && len(r.TransferEncoding) == 0 {
		r.Body = http.NoBody
	}
	// A request goes on without a User-Agent when it came without one: net/http's clients
	// add their own ("Go-http-client/2.0") unless the header is present, and an empty one is
	// not written.
	if _, ok := r.Header["User-Agent"]; !ok {
		if r.Header == nil {
			r.Header = http.Header{}
		}
		r.Header["User-Agent"] = nil
	}
}

// upstreamHosts formats the addresses requests go to once rather than per request.
var upstreamHosts hostPorts

// maxHostPorts bounds hostPorts: a proxy sends to a few hundred endpoints at most; past
// that (endpoints come and go) the cache starts again empty.
const maxHostPorts = 4096

// hostPorts caches netip.AddrPort.String.
type hostPorts struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]string
}

// String returns a.String().
func (c *hostPorts) String(a netip.AddrPort) string {
	c.mu.RLock()
	s, ok := c.m[a]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = a.String()
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxHostPorts {
		c.m = make(map[netip.AddrPort]string)
	}
	c.m[a] = s
	c.mu.Unlock()
	return s
}

// smallBodyLimit bounds the request bodies read into memory before an HTTP/1 round trip.
const smallBodyLimit = 16 << 10

// bufferSmallBody reads a request body of known length up to smallBodyLimit into memory.
// net/http writes the head of a request whose body is in memory together with the body, in
// one write; any other body gets the head flushed first (two writes and two wake-ups of the
// application). A request that expects 100-continue keeps its streamed body: its client waits
// for the answer to the head before it sends the body.
func bufferSmallBody(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 || r.ContentLength > smallBodyLimit || r.Body == nil || r.Body == http.NoBody ||
		len(r.TransferEncoding) > 0 || r.Header.Get("Expect") != "" {
		return nil, nil
	}
	buf := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return buf, nil
}

// connectRetries is how many times a request whose connection could not be opened is sent
// to another endpoint of its destination: Istio's default retry policy (2 attempts on
// connect-failure), which applies to services without a route of their own. Routes with a
// policy retry as it says (route.go).
const connectRetries = 2

// errPeerConnectRefused stands for a peer proxy's answer that its application refused the
// connection.
var errPeerConnectRefused = errors.New("the peer proxy's application refused the connection")

// roundTrip forwards ex.R (to the application when toApp, else outbound) and streams the
// response back. A balanced request whose connection could not be opened (nothing was sent) goes to
// another endpoint, up to connectRetries times, when its body can be sent again.
func (p *Proxy) roundTrip(ex *Exchange, toApp bool) {
	r := ex.R
	var failed []netip.AddrPort
	for {
		var rt http.RoundTripper
		if toApp {
			rt = p.applicationTransport(ex)
		} else {
			rt = p.outboundTransport(ex)
		}
		prepareUpstream(r, ex.Target)
		// Small bodies are read first for HTTP/1 (one write), and for requests that may be
		// sent again to another endpoint.
		if _, http1 := rt.(*http1RoundTripper); ex.body == nil && len(failed) == 0 && (ex.Dst != nil || http1) {
			buf, err := bufferSmallBody(r)
			if err != nil {
				status, reason := classify(err)
				p.fail(ex, status, reason, err)
				return
			}
			ex.body = buf
		}
		var release discovery.Release
		if ex.Balanced {
			release = p.acquire(ex.Target)
		}
		resp, err := rt.RoundTrip(r)
		release.Done(outcomeOf(r.Context(), err)) // time to response headers
		if err == nil && ex.Meshed && ex.Dst != nil && resp.Header.Get(ProxyErrorHeader) == reasonConnectRefused {
			// The peer proxy could not reach its application: nothing was processed.
			failed = append(failed, ex.Target)
			if p.retryConnectFailure(ex, errPeerConnectRefused, failed) {
				resp.Body.Close()
				continue
			}
		}
		if err == nil {
			p.writeResponseAndClose(ex, resp)
			return
		}
		failed = append(failed, ex.Target)
		if !p.retryConnectFailure(ex, err, failed) {
			status, reason := classify(err)
			p.fail(ex, status, reason, err)
			return
		}
	}
}

// retryConnectFailure moves ex to an endpoint of ex.Dst not in failed, when err means the
// connection could not be opened and the request can be sent again (no body, or one held in
// memory); false when it cannot be retried.
func (p *Proxy) retryConnectFailure(ex *Exchange, err error, failed []netip.AddrPort) bool {
	r := ex.R
	notSent := isConnectFailure(err) || errors.Is(err, errPeerConnectRefused)
	if ex.Dst == nil || len(failed) > connectRetries || !notSent || r.Context().Err() != nil {
		return false
	}
	// An HTTP/2 request without a body has a length of 0 and a body that reads nothing.
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && ex.body == nil {
		return false
	}
	rest := &discovery.Destination{Name: ex.Dst.Name}
	for _, ep := range ex.Dst.Endpoints {
		if !slices.Contains(failed, ep.Addr) {
			rest.Endpoints = append(rest.Endpoints, ep)
		}
	}
	ep, perr := p.opts.Balancer.Pick(rest)
	if perr != nil {
		return false
	}
	p.log.Debug("connection failed; trying another endpoint", "authority", ex.Authority, "failed", ex.Target.String(), "next", ep.Addr.String(), "err", err)
	if hasBody {
		r.Body = io.NopCloser(bytes.NewReader(ex.body))
	}
	p.useEndpoint(ex, ep)
	return true
}

// writeResponseAndClose writes resp and closes its body, also when writing it panics. (A
// defer in roundTrip's loop would be allocated on the heap.)
func (p *Proxy) writeResponseAndClose(ex *Exchange, resp *http.Response) {
	defer resp.Body.Close()
	p.writeResponse(ex, resp)
}

// writeResponse streams resp to the client: header, body (flushed as it comes) and trailers.
func (p *Proxy) writeResponse(ex *Exchange, resp *http.Response) {
	removeHopByHop(resp.Header)
	if !ex.Meshed {
		// Only a peer proxy may speak for the mesh.
		removeMeshHeaders(resp.Header)
	}
	h := ex.W.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if resp.ContentLength >= 0 && !hasContentLength(resp.Header, resp.ContentLength) {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	ex.Status = resp.StatusCode
	ex.W.WriteHeader(resp.StatusCode)
	if g := resp.Header.Get("Grpc-Status"); g != "" && g != "0" {
		ex.Failure = true
	}
	flusher, _ := ex.W.(http.Flusher)
	bufp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bufp)
	buf := *bufp
	var written int64
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := ex.W.Write(buf[:n]); werr != nil {
				ex.Failure = true
				return
			}
			written += int64(n)
			// Flushed as it comes, except the last bytes of a body of known length: those
			// go out with the end of the response (one write, one TLS record, one HTTP/2
			// flush for head, body and end of stream instead of two).
			if flusher != nil && (resp.ContentLength < 0 || written < resp.ContentLength) {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The response has started: all the proxy can do is end the stream abruptly.
			ex.Failure = true
			p.log.Debug("upstream response ended with an error", "target", ex.Target.String(), "err", rerr)
			panic(http.ErrAbortHandler)
		}
	}
	for k, v := range resp.Trailer {
		h[http.TrailerPrefix+k] = v
		if k == "Grpc-Status" && len(v) > 0 && v[0] != "0" {
			ex.Failure = true
		}
	}
}

// hasContentLength reports whether h's Content-Length field (copied to the response
// already) is already n written as strconv.FormatInt would, the usual case, so that it need
// not be formatted again.
func hasContentLength(h http.Header, n int64) bool {
	v := h["Content-Length"]
	if len(v) != 1 || v[0] == "" || len(v[0]) > 1 && v[0][0] == '0' {
		return false
	}
	for i := 0; i < len(v[0]); i++ {
		if v[0][i] < '0' || v[0][i] > '9' {
			return false
		}
	}
	got, err := strconv.ParseInt(v[0], 10, 64)
	return err == nil && got == n
}

// fail answers a request the proxy could not forward.
func (p *Proxy) fail(ex *Exchange, status int, reason string, err error) {
	ex.Status = status
	ex.Failure = true
	if err != nil {
		p.log.Info("request failed", "direction", ex.Labels.Direction, "authority", ex.Authority, "target", ex.Target.String(), "reason", reason, "err", err)
	}
	h := ex.W.Header()
	h.Set(ProxyErrorHeader, reason)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	body := reason + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	ex.W.WriteHeader(status)
	_, _ = io.WriteString(ex.W, body)
}

// classify maps a forwarding error to a status and a reason.
func classify(err error) (int, string) {
	var netErr net.Error
	switch {
	// The client's fault, found while its body was forwarded: not the upstream's.
	case errors.Is(err, h1.ErrMalformedBody):
		return http.StatusBadRequest, reasonBadRequest
	case errors.Is(err, h1.ErrBodyReadTimeout):
		return http.StatusRequestTimeout, reasonClientTimeout
	case errors.Is(err, h1.ErrBodyTruncated):
		return http.StatusBadRequest, reasonClientGone
	case errors.Is(err, identity.ErrIdentityMismatch):
		return http.StatusBadGateway, reasonIdentityMismatch
	case errors.Is(err, meshtls.ErrNoCertificate):
		return http.StatusServiceUnavailable, reasonNoIdentity
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, reasonConnectRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return http.StatusGatewayTimeout, reasonTimeout
	case errors.Is(err, identity.ErrUntrusted), errors.Is(err, identity.ErrExpired), errors.Is(err, identity.ErrNotYetValid),
		errors.Is(err, identity.ErrWrongTrustDomain), errors.Is(err, meshtls.ErrHandshake):
		return http.StatusBadGateway, reasonTLS
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return http.StatusBadGateway, reasonReset
	}
	return http.StatusBadGateway, reasonUpstream
}

// forwardUpgrade forwards an HTTP/1.1 request that asks to switch protocols (WebSocket) on
// a connection of its own and, when the server agrees (101), copies both ways.
func (p *Proxy) forwardUpgrade(ex *Exchange) {
	r := ex.R
	var release discovery.Release
	if ex.Balanced {
		release = p.acquire(ex.Target)
	}
	upstream, br, resp, err := p.sendUpgrade(ex)
	release.Done(outcomeOf(r.Context(), err)) // time to response headers
	if err != nil {
		status, reason := classify(err)
		if errors.Is(err, errUpgradeWrite) {
			status, reason = http.StatusBadGateway, reasonUpstream
		}
		p.fail(ex, status, reason, err)
		return
	}
	defer upstream.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		p.writeResponse(ex, resp)
		return
	}
	hj, ok := ex.W.(http.Hijacker)
	if !ok {
		p.fail(ex, http.StatusBadGateway, reasonUpstream, errors.New("the connection cannot be taken over"))
		return
	}
	client, crw, err := hj.Hijack()
	if err != nil {
		p.fail(ex, http.StatusBadGateway, reasonUpstream, err)
		return
	}
	ex.Status = http.StatusSwitchingProtocols
	defer client.Close()
	upgrade := resp.Header.Get("Upgrade")
	removeHopByHop(resp.Header)
	if !ex.Meshed {
		removeMeshHeaders(resp.Header)
	}
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{upgrade}
	_, _ = crw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = resp.Header.Write(crw)
	_, _ = crw.WriteString("\r\n")
	if err := crw.Flush(); err != nil {
		return
	}
	// Bytes either side sent early are already buffered: pass them on first.
	src := &bufferedConn{Conn: client, r: crw.Reader}
	dst := &bufferedConn{Conn: upstream, r: br}
	labels := ex.Labels
	p.pipe(src, dst, nil, p.metrics.TCP(metrics.TCPLabels{Labels: labels, Peer: "src"}), p.metrics.TCP(metrics.TCPLabels{Labels: labels, Peer: "dst"}))
}

var errUpgradeWrite = errors.New("sending the upgrade request failed")

// sendUpgrade opens a connection of its own to ex.Target, sends the request and reads the
// response's header.
func (p *Proxy) sendUpgrade(ex *Exchange) (net.Conn, *bufio.Reader, *http.Response, error) {
	r := ex.R
	var upstream net.Conn
	var err error
	if ex.Meshed {
		upstream, err = p.dialMesh(r.Context(), ex.Target, ex.ServerIdentity, meshtls.ALPNHTTP1)
	} else {
		upstream, err = p.dialTCP(r.Context(), ex.Target)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	r.RequestURI = ""
	r.URL.Scheme, r.URL.Host = "http", ex.Target.String()
	if err := r.Write(upstream); err != nil {
		upstream.Close()
		return nil, nil, nil, errors.Join(errUpgradeWrite, err)
	}
	br := bufio.NewReader(upstream)
	resp, err := http.ReadResponse(br, r)
	if err != nil {
		upstream.Close()
		return nil, nil, nil, err
	}
	return upstream, br, resp, nil
}

// bufferedConn reads through a bufio.Reader that may hold bytes already read from Conn.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// idStrings caches SPIFFE IDs as strings, for labels and headers without allocating.
var idStrings sync.Map // identity.SpiffeID -> string

func (p *Proxy) idString(id identity.SpiffeID) string {
	if s, ok := idStrings.Load(id); ok {
		return s.(string)
	}
	s := id.String()
	idStrings.Store(id, s)
	return s
}
