package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// Outbound policy, with Istio's and Envoy's semantics. When Options.Policy is set, route
// replaces resolve: it resolves the request's service, asks Policy.Outbound for its
// policy and, when there is one:
//
//   - matches the request (normalised path) against the VirtualHost's routes, first match
//     wins; no match gets 404 (reason "no-route");
//   - applies the route's fault (delay, then abort, each to its percentage of requests),
//     redirect or direct response;
//   - picks a weighted destination (weights relative to their sum), resolves it when it is
//     another service, keeps a subset's endpoints and uses the cluster's traffic policy
//     (trafficpolicy.go): connection pool, outlier detection, load balancer;
//   - rewrites path and authority, modifies request and response headers;
//   - bounds the whole request, retries included, by the route's timeout (504), and retries
//     failed attempts as the route's retry policy says, with Envoy's jittered back-off, when
//     the request body is replayable (none, or at most maxReplayBody).
//
// A service without policy (no VirtualHost and no DestinationRule) is served exactly as
// without Options.Policy. Without Options.Policy the chain has no route step at all.
func (p *Proxy) route(next Handler) Handler {
	observed := p.observe(next)
	return HandlerFunc(func(ex *Exchange) {
		if p.opts.Resolver == nil {
			observed.ServeExchange(ex)
			return
		}
		r := ex.R
		dst, found, err := p.opts.Resolver.Resolve(r.Context(), discovery.Target{Authority: ex.Authority, Addr: ex.Conn.origDst})
		if err != nil {
			p.fail(ex, http.StatusServiceUnavailable, reasonDiscovery, err)
			return
		}
		if !found {
			observed.ServeExchange(ex)
			return
		}
		ex.Labels.Authority = dst.Name
		pol, err := p.opts.Policy.Outbound(r.Context(), dst.Name)
		if err != nil {
			p.fail(ex, http.StatusServiceUnavailable, reasonDiscovery, err)
			return
		}
		host, port := splitServiceName(dst.Name)
		if pol == nil || (pol.VirtualHost == nil && pol.Destination(host) == nil) {
			ep, err := p.opts.Balancer.Pick(dst)
			if err != nil {
				p.fail(ex, http.StatusServiceUnavailable, reasonNoEndpoints, err)
				return
			}
			ex.Dst = dst
			p.useEndpoint(ex, ep)
			observed.ServeExchange(ex)
			return
		}
		rt := &routing{p: p, dst: dst, pol: pol, host: host, port: port, next: next}
		rt.ServeExchange(ex)
	})
}

// routing is one request under an outbound policy.
type routing struct {
	p          *Proxy
	dst        *discovery.Destination
	pol        *policy.OutboundPolicy
	host       string
	port       uint32
	next       Handler // forwards upgrades
	route      *policy.Route
	weighted   *policy.WeightedDestination
	cluster    *cluster
	clusterDst *discovery.Destination
	// metrics, counted as observe does, once the labels are known (the first endpoint).
	metrics *metrics.Route
	start   time.Time
}

// begin counts the request under the exchange's labels, once.
func (rt *routing) begin(ex *Exchange) {
	if rt.metrics == nil {
		rt.metrics = rt.p.metrics.Route(ex.Labels)
		rt.metrics.Request()
	}
}

// finish counts the response, as observe does. Routing counts a request once, under the
// labels of its first endpoint, whatever its attempts; observe itself cannot wrap it, since
// the endpoint is known only after the route is chosen.
func (rt *routing) finish(ex *Exchange) {
	rt.begin(ex)
	countResponse(rt.metrics, ex, rt.start)
}

func (rt *routing) ServeExchange(ex *Exchange) {
	rt.start = time.Now()
	defer rt.finish(ex)
	p, r := rt.p, ex.R
	raw := r.URL.EscapedPath()
	path, err := policy.NormalizePath(raw)
	if err != nil {
		p.fail(ex, http.StatusBadRequest, reasonInvalidPath, err)
		return
	}
	if path != raw {
		setRequestPath(r.URL, path)
	}
	if vh := rt.pol.VirtualHost; vh != nil {
		authority := r.Host
		if authority == "" {
			authority = ex.Authority
		}
		req := policy.Request{
			Method: r.Method, Authority: authority, Scheme: "http", Path: path, RawQuery: r.URL.RawQuery,
			Port: uint32(ex.Conn.origDst.Port()), Header: r.Header,
		}
		route, ok := policy.SelectRoute(vh.Routes, &req)
		if !ok {
			p.fail(ex, http.StatusNotFound, reasonNoRoute, nil)
			return
		}
		rt.route = route
	} else {
		rt.route = &policy.Route{Destinations: []policy.WeightedDestination{{Host: rt.host, Port: rt.port, Weight: 1}}}
	}
	route := rt.route
	if f := route.Fault; f != nil {
		if f.Delay != nil && p.chance(f.Delay.Percent) {
			if !sleepCtx(r.Context(), f.Delay.Delay.D()) {
				p.fail(ex, http.StatusGatewayTimeout, reasonTimeout, r.Context().Err())
				return
			}
		}
		if f.Abort != nil && p.chance(f.Abort.Percent) {
			p.fail(ex, int(f.Abort.Status), reasonFaultAbort, nil)
			return
		}
	}
	switch {
	case route.Redirect != nil:
		rt.redirect(ex, path)
		return
	case route.DirectResponse != nil:
		d := route.DirectResponse
		ex.Status = int(d.Status)
		h := ex.W.Header()
		if d.Body != "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
		h.Set("Content-Length", strconv.Itoa(len(d.Body)))
		ex.W.WriteHeader(int(d.Status))
		_, _ = io.WriteString(ex.W, d.Body)
		return
	}
	wd, ok := policy.PickWeighted(route.Destinations, p.opts.random())
	if !ok {
		p.fail(ex, http.StatusServiceUnavailable, reasonNoEndpoints, errors.New("the route has no destination with weight"))
		return
	}
	rt.weighted = wd
	if err := rt.resolveDestination(ex); err != nil {
		p.fail(ex, http.StatusServiceUnavailable, reasonNoEndpoints, err)
		return
	}
	if rw := route.Rewrite; rw != nil {
		if rw.Path != nil {
			setRequestPath(r.URL, route.RewritePath(path))
		}
		if rw.Authority != "" {
			r.Host = rw.Authority
		}
	}
	applyHeaders(route.RequestHeaders, r.Header)
	applyHeaders(wd.RequestHeaders, r.Header)
	rt.forward(ex)
}

// resolveDestination finds the picked destination's endpoints and cluster.
func (rt *routing) resolveDestination(ex *Exchange) error {
	wd := rt.weighted
	port := wd.Port
	if port == 0 {
		port = rt.port
	}
	dst := rt.dst
	if host, p := splitServiceName(dst.Name); !strings.EqualFold(host, wd.Host) || p != port {
		authority := wd.Host + ":" + strconv.FormatUint(uint64(port), 10)
		var found bool
		var err error
		dst, found, err = rt.p.opts.Resolver.Resolve(ex.R.Context(), discovery.Target{Authority: strings.ToLower(authority)})
		if err != nil {
			return err
		}
		if !found {
			return errors.New("the route's destination " + authority + " is not a known service")
		}
	}
	c, err := rt.p.traffic.get(rt.pol, wd.Host, port, wd.Subset)
	if err != nil {
		return err
	}
	rt.cluster, rt.clusterDst = c, dst
	return nil
}

// redirect answers with the route's redirect.
func (rt *routing) redirect(ex *Exchange, path string) {
	rd, r := rt.route.Redirect, ex.R
	scheme := rd.Scheme
	if scheme == "" {
		scheme = "http"
	}
	authority := r.Host
	if authority == "" {
		authority = ex.Authority
	}
	if rd.Authority != "" {
		authority = rd.Authority
	}
	if rd.Port != 0 {
		host := authority
		if h, _, err := net.SplitHostPort(authority); err == nil {
			host = h
		}
		authority = net.JoinHostPort(host, strconv.FormatUint(uint64(rd.Port), 10))
	}
	location := scheme + "://" + authority + rt.route.RedirectPath(path)
	if r.URL.RawQuery != "" {
		location += "?" + r.URL.RawQuery
	}
	status := int(rd.StatusCode)
	if status == 0 {
		status = http.StatusMovedPermanently
	}
	h := ex.W.Header()
	h.Set("Location", location)
	h.Set("Content-Length", "0")
	ex.Status = status
	ex.W.WriteHeader(status)
}

// forward sends the request to the cluster, within the route's timeout and retry policy.
func (rt *routing) forward(ex *Exchange) {
	p, r, c := rt.p, ex.R, rt.cluster
	ctx := r.Context()
	if t := rt.route.Timeout.D(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	class := 0
	if ex.Conn.h2 {
		class = 1
	}
	release, err := c.limiter.admit(ctx, class, true)
	if err != nil {
		if errors.Is(err, errOverflow) {
			ex.W.Header().Set("X-Envoy-Overloaded", "true")
			p.fail(ex, http.StatusServiceUnavailable, reasonOverflow, nil)
			return
		}
		p.fail(ex, http.StatusGatewayTimeout, reasonTimeout, err)
		return
	}
	defer release()
	if c.connectTimeout > 0 {
		ctx = context.WithValue(ctx, connectTimeoutKey{}, c.connectTimeout)
	}
	if upgradeOf(r) != "" {
		ep, _, err := c.pick(p, rt.clusterDst)
		if c.passthrough {
			ep, err = discovery.Endpoint{Addr: ex.Conn.origDst}, nil
		}
		if err != nil {
			p.fail(ex, http.StatusServiceUnavailable, reasonNoEndpoints, err)
			return
		}
		p.useEndpoint(ex, ep)
		rt.begin(ex)
		ex.R = r.WithContext(ctx)
		rt.next.ServeExchange(ex)
		return
	}

	retry := rt.route.Retries
	if retry != nil && retry.Attempts == 0 {
		retry = nil
	}
	var body *replayBody
	replayable := true
	hasBody := r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0 || r.ProtoMajor != 1 || len(r.TransferEncoding) != 0)
	if retry != nil && hasBody {
		if r.ContentLength > maxReplayBody {
			replayable = false
		} else {
			body = &replayBody{src: r.Body}
		}
	}
	inRetry := false
	defer func() {
		if inRetry {
			c.endRetry()
		}
	}()
	for attempt := 0; ; attempt++ {
		ep, host, err := c.pick(p, rt.clusterDst)
		if c.passthrough {
			ep, host, err = discovery.Endpoint{Addr: ex.Conn.origDst}, "", nil
		}
		if err != nil {
			p.fail(ex, http.StatusServiceUnavailable, reasonNoEndpoints, err)
			return
		}
		p.useEndpoint(ex, ep)
		rt.begin(ex)
		actx, acancel := ctx, context.CancelFunc(func() {})
		if retry != nil && retry.PerTryTimeout > 0 {
			actx, acancel = context.WithTimeout(ctx, retry.PerTryTimeout.D())
		}
		ar := r.WithContext(actx)
		if body != nil {
			ar.Body = body.attempt()
		}
		if ex.Meshed && ex.WasHTTP1 {
			ar.Header[OrigProtoHeader] = []string{"HTTP/1.1"}
		} else {
			delete(ar.Header, OrigProtoHeader)
		}
		resp, err := p.send(ex, ar, c)
		clientGone := r.Context().Err() != nil
		c.record(host, resp, err, clientGone)
		if inRetry {
			c.endRetry()
			inRetry = false
		}
		perTryTimedOut := actx.Err() != nil && ctx.Err() == nil && !clientGone
		if retry != nil && attempt < int(retry.Attempts) && ctx.Err() == nil &&
			replayable && (body == nil || body.replayable()) &&
			retriable(retry, resp, err, perTryTimedOut) && c.startRetry() {
			inRetry = true
			if resp != nil {
				_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
				resp.Body.Close()
			}
			acancel()
			p.traffic.retries.Add(1)
			p.traffic.retryTotal.WithLabelValues(outbound, rt.dst.Name).Inc()
			if !sleepCtx(ctx, p.backoff(retry.Backoff.D(), attempt+1)) {
				p.fail(ex, http.StatusGatewayTimeout, reasonTimeout, ctx.Err())
				return
			}
			continue
		}
		if err != nil {
			acancel()
			switch {
			case ctx.Err() != nil && !clientGone, perTryTimedOut:
				p.fail(ex, http.StatusGatewayTimeout, reasonTimeout, err)
			default:
				status, reason := classify(err)
				p.fail(ex, status, reason, err)
			}
			return
		}
		applyHeaders(rt.route.ResponseHeaders, resp.Header)
		applyHeaders(rt.weighted.ResponseHeaders, resp.Header)
		func() {
			defer acancel()
			defer resp.Body.Close()
			p.writeResponse(ex, resp)
		}()
		return
	}
}

// send sends one attempt of r to ex.Target, through the cluster's clients.
func (p *Proxy) send(ex *Exchange, r *http.Request, c *cluster) (*http.Response, error) {
	prepareUpstream(r, ex.Target)
	var rt http.RoundTripper
	switch {
	case ex.Meshed:
		rt = meshRoundTripper{p: p, ex: ex}
	case ex.Conn.h2:
		rt = p.clients.h2c
		if c.h2c != nil {
			rt = c.h2c
		}
	default:
		rt = p.clients.h1
		if c.h1 != nil {
			rt = c.h1
		}
	}
	var release discovery.Release
	if c.loadAware != nil {
		release = c.loadAware.Acquire(ex.Target)
	}
	resp, err := rt.RoundTrip(r)
	release.Done(outcomeOf(r.Context(), err))
	return resp, err
}

// gRPC status codes that retryOn names.
var grpcRetryOn = map[string]string{
	"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8", "internal": "13", "unavailable": "14",
}

// retriable reports whether an attempt that ended with resp or err (perTryTimedOut: by the
// per-try timeout) is retried under rp's retryOn conditions (Envoy's x-envoy-retry-on and
// x-envoy-retry-grpc-on).
func retriable(rp *policy.RetryPolicy, resp *http.Response, err error, perTryTimedOut bool) bool {
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	connectFailure := err != nil && isConnectFailure(err)
	if err == nil && resp.Header.Get(ProxyErrorHeader) == reasonConnectRefused {
		// The peer proxy could not reach its application.
		connectFailure = true
	}
	// The peer proxy's application reset the connection: the peer answers 502, so "reset"
	// would otherwise never apply to meshed traffic.
	peerReset := err == nil && resp.Header.Get(ProxyErrorHeader) == reasonReset
	for _, on := range rp.RetryOn {
		switch on {
		case "5xx":
			if err != nil || perTryTimedOut || status >= 500 {
				return true
			}
		case "gateway-error":
			if err != nil || perTryTimedOut || status == 502 || status == 503 || status == 504 {
				return true
			}
		case "reset":
			if err != nil || perTryTimedOut || peerReset {
				return true
			}
		case "connect-failure":
			if connectFailure {
				return true
			}
		case "retriable-4xx":
			if status == http.StatusConflict {
				return true
			}
		case "refused-stream":
			if err != nil && strings.Contains(err.Error(), "REFUSED_STREAM") {
				return true
			}
		case "retriable-status-codes":
			if status != 0 && slices.Contains(rp.RetriableStatusCodes, uint32(status)) {
				return true
			}
		default:
			if code, ok := grpcRetryOn[on]; ok && err == nil {
				if g := resp.Header.Get("Grpc-Status"); g == code {
					return true
				}
			}
		}
	}
	return false
}

// isConnectFailure reports whether err means the connection could not be opened.
func isConnectFailure(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, meshtls.ErrHandshake) ||
		errors.As(err, &opErr) && opErr.Op == "dial"
}

// Envoy's retry back-off: fully jittered exponential, from a 25 ms base (the route's
// backoff when set) up to ten times the base.
const defaultRetryBackoff = 25 * time.Millisecond

// backoff returns the wait before retry n (1 for the first).
func (p *Proxy) backoff(base time.Duration, n int) time.Duration {
	if base <= 0 {
		base = defaultRetryBackoff
	}
	limit := 10 * base
	ceiling := limit
	if n < 10 {
		ceiling = min(base*time.Duration((1<<n)-1), limit)
	}
	return time.Duration(p.opts.random() % uint64(ceiling+1))
}

// chance returns true for percent per cent of calls.
func (p *Proxy) chance(percent float64) bool {
	switch {
	case percent <= 0:
		return false
	case percent >= 100:
		return true
	}
	return float64(p.opts.random()%1_000_000) < percent*10_000
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// applyHeaders applies m to h: removals first, then sets, then additions (Envoy's order).
func applyHeaders(m *policy.HeaderModifier, h http.Header) {
	if m == nil {
		return
	}
	for _, name := range m.Remove {
		delete(h, name)
	}
	for _, hd := range m.Set {
		h[hd.Name] = []string{hd.Value}
	}
	for _, hd := range m.Add {
		h[hd.Name] = append(h[hd.Name], hd.Value)
	}
}
