// Package standalone runs an Envoy v3 static bootstrap (parsed by proxy/envoy) outside
// Kubernetes: HTTP listeners with Envoy route matching, retries with jittered back-off, TCP
// proxy listeners, clusters with STATIC/STRICT_DNS/LOGICAL_DNS discovery, outlier detection
// (internal/policy's Ejector), circuit breakers and upstream TLS, and an admin server.
package standalone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/admin"
	"github.com/lightmesh/lightmesh/proxy/envoy"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// maxRetryBody is the largest request body buffered so a request can be retried.
const maxRetryBody = 1 << 20

// Options configure a Proxy.
type Options struct {
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
	// Resolver resolves DNS clusters (a DNSResolver on /etc/resolv.conf when nil).
	Resolver Resolver
	// NewTicker makes the DNS refresh tickers (NewRealTicker when nil).
	NewTicker func(time.Duration) Ticker
	// Rand drives weighted clusters and the RANDOM/LEAST_REQUEST policies (random seed when nil).
	Rand *rand.Rand
	// OnRefresh is called after each DNS refresh of a cluster (tests wait on it).
	OnRefresh func(cluster string)
	// Shutdown is called by the admin's POST /shutdown (optional).
	Shutdown func()
	// Clock times outlier ejections (the system clock when nil).
	Clock policy.Clock
	// NewSweepTicker makes the outlier detection interval tickers (NewRealTicker when nil).
	NewSweepTicker func(time.Duration) Ticker
	// OnSweep is called after each outlier detection sweep of a cluster (tests wait on it).
	OnSweep func(cluster string)
	// After waits before a retry (time.After when nil); tests record the back-off.
	After func(time.Duration) <-chan time.Time
}

// Proxy is a running bootstrap.
type Proxy struct {
	opts      Options
	log       *slog.Logger
	bs        *envoy.Bootstrap
	rng       *lockedRand
	clusters  map[string]*cluster
	listeners []*listener
	admin     *admin.Server
	registry  *metrics.Registry
	ready     atomic.Bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

type listener struct {
	name  string
	addr  string
	ln    net.Listener
	http  *http.Server
	tcp   *envoy.TCPProxy
	conns sync.WaitGroup
}

// New builds a Proxy from a parsed bootstrap; Start runs it.
func New(bs *envoy.Bootstrap, opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resolver == nil {
		opts.Resolver = &DNSResolver{}
	}
	if opts.NewTicker == nil {
		opts.NewTicker = NewRealTicker
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if opts.NewSweepTicker == nil {
		opts.NewSweepTicker = NewRealTicker
	}
	if opts.After == nil {
		opts.After = time.After
	}
	p := &Proxy{opts: opts, log: opts.Logger, bs: bs, rng: &lockedRand{r: opts.Rand},
		clusters: map[string]*cluster{}, registry: metrics.New()}
	cm := newClusterMetrics(p.registry.Registerer())
	for _, c := range bs.StaticResources.Clusters {
		cl, err := newCluster(c, opts.Resolver, p.rng, p.log, opts.Clock)
		if err != nil {
			return nil, err
		}
		cl.metrics = cm
		p.clusters[c.Name] = cl
	}
	for i, l := range bs.StaticResources.Listeners {
		name := l.Name
		if name == "" {
			name = fmt.Sprintf("listener_%d", i)
		}
		ls := &listener{name: name, addr: l.Address.SocketAddress.HostPort()}
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				switch {
				case f.HCM != nil && ls.http == nil && ls.tcp == nil:
					table, err := newRouteTable(f.HCM.RouteConfig)
					if err != nil {
						return nil, fmt.Errorf("listener %s: %w", name, err)
					}
					var protos http.Protocols
					protos.SetHTTP1(true)
					protos.SetUnencryptedHTTP2(true)
					ls.http = &http.Server{
						Handler:           &httpHandler{p: p, table: table},
						ReadHeaderTimeout: 10 * time.Second,
						IdleTimeout:       5 * time.Minute,
						Protocols:         &protos,
					}
				case f.TCPProxy != nil && ls.http == nil && ls.tcp == nil:
					ls.tcp = f.TCPProxy
				}
			}
		}
		if ls.http == nil && ls.tcp == nil {
			return nil, fmt.Errorf("listener %s has no http_connection_manager or tcp_proxy filter", name)
		}
		p.listeners = append(p.listeners, ls)
	}
	return p, nil
}

// Start resolves DNS clusters once, binds every listener and the admin, and serves until
// Shutdown.
func (p *Proxy) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	for _, c := range p.clusters {
		if c.kind != "STATIC" {
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			c.refresh(rctx)
			rcancel()
		}
	}
	for _, l := range p.listeners {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			p.closeListeners()
			cancel()
			return fmt.Errorf("listener %s: %w", l.name, err)
		}
		l.ln = ln
	}
	for _, c := range p.clusters {
		p.wg.Go(func() { c.run(ctx, p.opts.NewTicker, p.opts.OnRefresh) })
		p.wg.Go(func() { c.runOutliers(ctx, p.opts.NewSweepTicker, p.opts.OnSweep) })
	}
	for _, l := range p.listeners {
		p.log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		if l.http != nil {
			p.wg.Go(func() { _ = l.http.Serve(l.ln) })
		} else {
			p.wg.Go(func() { p.serveTCP(ctx, l) })
		}
	}
	if p.bs.Admin != nil && p.bs.Admin.Address.SocketAddress != nil {
		shutdown := p.opts.Shutdown
		if shutdown == nil {
			shutdown = cancel
		}
		srv, err := admin.New(admin.Options{
			Addr: p.bs.Admin.Address.SocketAddress.HostPort(), Metrics: p.registry.Handler(),
			Shutdown: shutdown, Logger: p.log, Ready: p.ready.Load,
		})
		if err == nil {
			err = srv.Start()
		}
		if err != nil {
			cancel()
			p.closeListeners()
			return fmt.Errorf("admin: %w", err)
		}
		p.admin = srv
		p.log.Info("admin listening", "addr", srv.Addr().String())
	}
	p.ready.Store(true)
	return nil
}

func (p *Proxy) closeListeners() {
	for _, l := range p.listeners {
		if l.ln != nil {
			_ = l.ln.Close()
		}
	}
}

// ListenerAddr is the bound address of the named listener, or nil.
func (p *Proxy) ListenerAddr(name string) net.Addr {
	for _, l := range p.listeners {
		if l.name == name && l.ln != nil {
			return l.ln.Addr()
		}
	}
	return nil
}

// AdminAddr is the admin's bound address, or nil without an admin.
func (p *Proxy) AdminAddr() net.Addr {
	if p.admin == nil {
		return nil
	}
	return p.admin.Addr()
}

// Endpoints lists a cluster's current endpoint addresses.
func (p *Proxy) Endpoints(clusterName string) []string {
	if c := p.clusters[clusterName]; c != nil {
		return c.endpoints()
	}
	return nil
}

// Shutdown stops accepting, waits for HTTP requests and TCP connections up to ctx, and
// closes upstream pools.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.ready.Store(false)
	var errs []error
	for _, l := range p.listeners {
		if l.http != nil {
			errs = append(errs, l.http.Shutdown(ctx))
		} else if l.ln != nil {
			_ = l.ln.Close()
		}
	}
	if p.cancel != nil {
		p.cancel()
	}
	if p.admin != nil {
		errs = append(errs, p.admin.Shutdown(ctx))
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	for _, c := range p.clusters {
		c.close()
	}
	return errors.Join(errs...)
}

// RunFile parses path and runs it until ctx ends. Logs go to logOut.
func RunFile(ctx context.Context, path string, allowUnsupported bool, logOut io.Writer) error {
	log := slog.New(slog.NewJSONHandler(logOut, nil))
	bs, probs, err := envoy.ParseFile(path, envoy.Options{AllowUnsupported: allowUnsupported})
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	for _, pr := range probs {
		log.Warn("ignoring an unsupported envoy field", "path", pr.Path, "problem", pr.Message)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := New(bs, Options{Logger: log, Shutdown: cancel})
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	grace, gcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer gcancel()
	if err := p.Shutdown(grace); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Info("stopped")
	return nil
}

// serveTCP accepts connections for a tcp_proxy listener.
func (p *Proxy) serveTCP(ctx context.Context, l *listener) {
	defer l.conns.Wait()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.conns.Go(func() { p.proxyTCP(ctx, l, c) })
	}
}

func (p *Proxy) proxyTCP(ctx context.Context, l *listener, down net.Conn) {
	defer down.Close()
	cl := p.clusters[l.tcp.Cluster]
	if !cl.br.tryConnection() {
		cl.metrics.overflows.WithLabelValues(cl.name, BreakerMaxConnections).Inc()
		p.log.Warn("tcp_proxy: max_connections reached; closing the connection", "listener", l.name, "cluster", cl.name)
		return
	}
	defer cl.br.releaseConnection()
	ep := cl.pick()
	if ep == nil {
		p.log.Warn("tcp_proxy: no healthy upstream", "listener", l.name, "cluster", cl.name)
		return
	}
	defer ep.done()
	m := p.registry.TCP(metrics.TCPLabels{Labels: metrics.Labels{Direction: "outbound", Authority: cl.name, TLS: "no_identity"}, Peer: "dst"})
	up, err := ep.dial(ctx)
	if err != nil {
		cl.record(ep, http.StatusServiceUnavailable)
		p.log.Warn("tcp_proxy: upstream connect failed", "listener", l.name, "cluster", cl.name, "error", err)
		return
	}
	cl.record(ep, http.StatusOK)
	defer up.Close()
	m.Open()
	defer m.Close()
	stop := context.AfterFunc(ctx, func() { _ = down.Close(); _ = up.Close() })
	defer stop()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Go(func() { pipe(up, down) })
	pipe(down, up)
	wg.Wait()
}

// httpHandler serves one http_connection_manager.
type httpHandler struct {
	p     *Proxy
	table *routeTable
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func localReply(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func (h *httpHandler) retriable(r *route, status int) bool {
	on := r.retryOn
	switch {
	case on["5xx"] && status >= 500:
		return true
	case on["gateway-error"] && (status == 502 || status == 503 || status == 504):
		return true
	case on["retriable-4xx"] && status == 409:
		return true
	case on["retriable-status-codes"] && r.retryCodes[status]:
		return true
	}
	return false
}

// overflow answers a request refused by a circuit breaker, as Envoy does.
func (h *httpHandler) overflow(w http.ResponseWriter, cl *cluster, breaker string) {
	cl.metrics.overflows.WithLabelValues(cl.name, breaker).Inc()
	w.Header().Set("X-Envoy-Overloaded", "true")
	localReply(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: overflow")
}

// takeRetry takes a max_retries slot for the next retry; as in Envoy, the slot of the
// previous retry is given back first. False, counted, when the breaker is full.
func (h *httpHandler) takeRetry(cl *cluster, holding *bool) bool {
	if *holding {
		cl.br.retries.Add(-1)
		*holding = false
	}
	if !cl.br.retry() {
		cl.metrics.overflows.WithLabelValues(cl.name, BreakerMaxRetries).Inc()
		return false
	}
	*holding = true
	return true
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := h.table.match(req.Host, req.URL.RequestURI(), req.Header)
	if r == nil {
		localReply(w, http.StatusNotFound, "")
		return
	}
	cl := h.p.clusters[r.pickCluster(h.p.rng)]
	rt := h.p.registry.Route(metrics.Labels{Direction: "outbound", Authority: cl.name, TLS: "no_identity"})
	rt.Request()
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	began := time.Now()
	defer func() { rt.Response(sw.code, sw.code >= 500, time.Since(began)) }()
	if !cl.br.admit() {
		h.overflow(w, cl, BreakerMaxRequests)
		return
	}
	defer cl.br.requests.Add(-1)
	ctx := req.Context()
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	var body []byte
	retries := r.retries
	if retries > 0 && req.Body != nil && req.ContentLength != 0 {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxRetryBody+1))
		if err != nil {
			localReply(w, http.StatusBadRequest, "")
			return
		}
		if len(b) > maxRetryBody {
			localReply(w, http.StatusRequestEntityTooLarge, "")
			return
		}
		body = b
	}
	var bo *backOff
	holdingRetry := false // a max_retries slot, from a decision to retry to the next one or the end
	defer func() {
		if holdingRetry {
			cl.br.retries.Add(-1)
		}
	}()
	timeout := func() { localReply(w, http.StatusGatewayTimeout, "upstream request timeout") }
	for attempt := 0; ; attempt++ {
		last := attempt >= retries
		if attempt > 0 {
			if bo == nil {
				bo = newBackOff(r.backOffBase, r.backOffMax)
			}
			select {
			case <-h.p.opts.After(bo.next(h.p.rng)):
			case <-ctx.Done():
				timeout()
				return
			}
		}
		ep := cl.pick()
		if ep == nil {
			localReply(w, http.StatusServiceUnavailable, "no healthy upstream")
			return
		}
		if breaker, err := cl.br.connection(ctx); err != nil {
			ep.done()
			if errors.Is(err, errOverflow) {
				h.overflow(w, cl, breaker)
			} else {
				timeout()
			}
			return
		}
		actx, acancel := ctx, context.CancelFunc(func() {})
		if r.perTry > 0 {
			actx, acancel = context.WithTimeout(ctx, r.perTry)
		}
		end := func() {
			cl.br.releaseConnection()
			ep.done()
			acancel()
		}
		out := req.Clone(actx)
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", ep.addr
		out.URL.Path = r.rewritePath(req.URL.Path)
		out.URL.RawPath = ""
		out.Host = req.Host
		out.Close = false
		for _, hh := range hopHeaders {
			out.Header.Del(hh)
		}
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
		} else if retries > 0 {
			out.Body = http.NoBody
		}
		resp, err := ep.transport.RoundTrip(out)
		if err != nil {
			timedOut := actx.Err() != nil
			end()
			if timedOut {
				cl.record(ep, http.StatusGatewayTimeout)
			} else {
				cl.record(ep, http.StatusServiceUnavailable) // connect failure or reset
			}
			if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				timeout()
				return
			}
			if !last && (r.retryOn["connect-failure"] || r.retryOn["reset"] || r.retryOn["5xx"] || r.retryOn["gateway-error"]) &&
				h.takeRetry(cl, &holdingRetry) {
				continue
			}
			if timedOut {
				timeout()
				return
			}
			localReply(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
			return
		}
		cl.record(ep, resp.StatusCode)
		// Envoy never retries an answer that carries x-envoy-overloaded.
		if !last && h.retriable(r, resp.StatusCode) && resp.Header.Get("X-Envoy-Overloaded") == "" &&
			h.takeRetry(cl, &holdingRetry) {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			end()
			continue
		}
		h.copyResponse(w, resp)
		_ = resp.Body.Close()
		end()
		return
	}
}

func (h *httpHandler) copyResponse(w http.ResponseWriter, resp *http.Response) {
	for _, hh := range hopHeaders {
		resp.Header.Del(hh)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		w.Header().Set("Trailer", strings.Join(keys, ","))
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			break
		}
	}
	for k, vs := range resp.Trailer {
		w.Header()[k] = vs
	}
}

// statusWriter records the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
