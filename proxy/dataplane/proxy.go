// Package dataplane is the proxy's data plane: the outbound listener (127.0.0.1:4140),
// which receives the application's redirected connections, and the inbound listener
// (0.0.0.0:4143), which receives other workloads' connections to the application.
//
// Outbound, each connection's original destination is read (SO_ORIGINAL_DST), its protocol
// detected (HTTP/1, HTTP/2 with prior knowledge, TLS, else opaque; opaque ports skip this),
// and discovery asked where to send it. A meshed endpoint is reached over mutual TLS with
// its identity as SNI: HTTP rides one multiplexed HTTP/2 connection per peer, upgrades a
// dedicated HTTP/1.1 connection, and opaque TCP a connection to the peer's inbound port
// with a transport header. Without discovery data the connection goes to its original
// destination unchanged (passthrough). A destination whose endpoints the destination
// service hints opaque is carried as opaque TCP before any detection (its server may speak
// first).
//
// The balancer (PeakEWMA by default) picks the endpoint; a discovery.LoadAware one counts
// each request in flight until its response headers (each opaque connection until it is
// connected) and learns that latency, so its choice follows latency times load.
//
// Inbound, mesh TLS (the proxies' ALPN and this proxy's SNI) is terminated, the client's
// identity verified and passed to the application in lightmesh-client-id; other connections
// are served as plaintext (HTTP) or copied unchanged (opaque, the application's own TLS).
// The application is reached at the original destination, the pod's address, never
// localhost.
//
// With Options.Policy, outbound HTTP requests to a resolved service follow its outbound
// policy (route.go: Istio VirtualService / Gateway API HTTPRoute routes, retries, timeouts,
// faults) and the DestinationRules of their destination (trafficpolicy.go: connection pool
// limits, outlier detection, load balancer, subsets).
//
// HTTP requests go through a chain of small handlers (Middleware) over an Exchange that
// carries what each step learnt; Exchanges and buffers are pooled.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/h1"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// Proxy is a running data plane.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics.Registry

	inbound, outbound net.Listener
	inboundPort       uint16
	outboundAddr      netip.AddrPort

	h1      *h1.Server
	h2      *http.Server
	h2conns *chanListener
	clients *clients
	// traffic are the destination clusters of the outbound policy.
	traffic *clusters
	// loadAware is the balancer when it learns from traffic; nil otherwise.
	loadAware discovery.LoadAware

	outboundChain, inboundChain, gatewayChain http.Handler
	// inFlight counts the HTTP requests being served (Options.MaxInFlightRequests).
	inFlight         atomic.Int64
	gatewayListeners []gatewayListener

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closing  bool
	handlers sync.WaitGroup
	serving  sync.WaitGroup
	ready    chan struct{}
}

// New validates opts and builds a proxy; Start opens its listeners.
func New(opts Options) (*Proxy, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	p := &Proxy{opts: opts, log: opts.Logger, metrics: opts.Metrics, conns: map[net.Conn]struct{}{}, ready: make(chan struct{})}
	httpOpts := opts.HTTP
	httpOpts.Handler = http.HandlerFunc(p.serveHTTP)
	h1srv, err := h1.NewServer(httpOpts)
	if err != nil {
		return nil, err
	}
	p.opts.HTTP = httpOpts
	p.h1 = h1srv
	p.h2conns = newChanListener()
	p.h2 = p.newH2Server()
	p.clients = newClients(p)
	p.loadAware, _ = opts.Balancer.(discovery.LoadAware)
	p.traffic = newClusters(p)
	if opts.Policy != nil {
		// route resolves, applies the outbound policy and observes (route.go).
		p.outboundChain = Chain(p.outboundForward(), p.sanitize(outbound), p.trace(outbound), p.tap(outbound), p.route)
	} else {
		p.outboundChain = Chain(p.outboundForward(), p.sanitize(outbound), p.trace(outbound), p.tap(outbound), p.resolve, p.observe)
	}
	p.inboundChain = Chain(p.inboundForward(), p.sanitize(inbound), p.trace(inbound), p.tap(inbound), p.observe, p.authorize)
	if opts.Gateway != nil {
		p.gatewayChain = Chain(p.outboundForward(), p.sanitize(outbound), p.trace(outbound), p.tap(outbound), p.gatewayRoute)
	}
	return p, nil
}

// Metrics returns the proxy's metrics registry.
func (p *Proxy) Metrics() *metrics.Registry { return p.metrics }

// Start opens both listeners and serves them in the background.
func (p *Proxy) Start() error {
	var err error
	if p.outbound, err = net.Listen("tcp", p.opts.OutboundAddr); err != nil {
		return fmt.Errorf("listen outbound on %s: %w; is another proxy running?", p.opts.OutboundAddr, err)
	}
	if p.inbound, err = net.Listen("tcp", p.opts.InboundAddr); err != nil {
		p.outbound.Close()
		return fmt.Errorf("listen inbound on %s: %w; is another proxy running?", p.opts.InboundAddr, err)
	}
	p.outboundAddr = p.outbound.Addr().(*net.TCPAddr).AddrPort()
	p.inboundPort = p.inbound.Addr().(*net.TCPAddr).AddrPort().Port()
	if err := p.startGateway(); err != nil {
		p.outbound.Close()
		p.inbound.Close()
		return err
	}
	p.serving.Add(3)
	go func() {
		defer p.serving.Done()
		_ = p.h2.Serve(p.h2conns)
	}()
	go p.accept(p.outbound, p.serveOutbound)
	go p.accept(p.inbound, p.serveInbound)
	close(p.ready)
	p.log.Info("proxy listening", "outbound", p.outbound.Addr().String(), "inbound", p.inbound.Addr().String(), "identity", p.opts.TLS != nil)
	return nil
}

// OutboundAddr and InboundAddr return the listeners' addresses, once started.
func (p *Proxy) OutboundAddr() net.Addr { return p.outbound.Addr() }

// InboundAddr returns the inbound listener's address.
func (p *Proxy) InboundAddr() net.Addr { return p.inbound.Addr() }

// Listening reports whether the listeners are up.
func (p *Proxy) Listening() bool {
	select {
	case <-p.ready:
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.closing
	default:
		return false
	}
}

func (p *Proxy) accept(ln net.Listener, serve func(context.Context, *net.TCPConn)) {
	defer p.serving.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Error("accept failed; retrying", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		tc := c.(*net.TCPConn)
		if !p.track(tc) {
			tc.Close()
			return
		}
		go func() {
			defer p.untrack(tc)
			serve(context.Background(), tc)
		}()
	}
}

// track registers c, unless the proxy is shutting down.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.conns[c] = struct{}{}
	p.handlers.Add(1)
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.handlers.Done()
}

// Shutdown stops accepting, lets in-flight requests and connections finish until ctx ends
// (HTTP/1 connections close after their response, HTTP/2 ones get a GOAWAY), then closes
// everything left. It returns ctx's error if it had to cut connections.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	already := p.closing
	p.closing = true
	p.mu.Unlock()
	if already {
		return errors.New("dataplane: already shut down")
	}
	select {
	case <-p.ready:
		p.outbound.Close()
		p.inbound.Close()
		for _, g := range p.gatewayListeners {
			g.ln.Close()
		}
	default:
		return nil
	}
	p.h1.Shutdown()
	h2done := make(chan error, 1)
	go func() { h2done <- p.h2.Shutdown(ctx) }()

	done := make(chan struct{})
	go func() { p.handlers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		p.log.Warn("shutdown grace period over; closing the remaining connections")
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		_ = p.h2.Close()
		<-done
	}
	if h2err := <-h2done; h2err != nil && err == nil && !errors.Is(h2err, context.Canceled) {
		err = h2err
	}
	p.traffic.close()
	p.clients.close()
	p.serving.Wait()
	return err
}

// isOpaquePort reports whether port skips protocol detection.
func (p *Proxy) isOpaquePort(port uint16) bool {
	return slices.Contains(p.opts.OpaquePorts, port)
}

// acquire counts a request or connection to addr with the balancer until the Release is
// done; the zero Release when the balancer does not learn from traffic.
func (p *Proxy) acquire(addr netip.AddrPort) discovery.Release {
	if p.loadAware == nil {
		return discovery.Release{}
	}
	return p.loadAware.Acquire(addr)
}

// outcomeOf classifies how sending to an endpoint ended, for the balancer: a caller that
// gave up says nothing of the endpoint but a lower bound of its latency.
func outcomeOf(ctx context.Context, err error) discovery.Outcome {
	switch {
	case err == nil:
		return discovery.Success
	case ctx.Err() != nil, errors.Is(err, context.Canceled):
		return discovery.Canceled
	}
	return discovery.Failure
}
