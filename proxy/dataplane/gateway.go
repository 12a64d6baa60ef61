package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/detect"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// GatewayOptions make the proxy an ingress gateway: it listens on one address per Gateway
// server port and routes what arrives there with the route tables (VirtualServices) bound to
// the Istio Gateways that select its pod, into the mesh over mTLS.
type GatewayOptions struct {
	// Listeners maps each Gateway server port (the port the Gateway resource names, which
	// the gateway's Service exposes) to the address the proxy listens on for it, e.g.
	// 80 -> 0.0.0.0:8080.
	Listeners map[uint32]string
	// Policy returns the current gateway policy (nil: nothing routed yet, every request 404).
	Policy func() *policy.GatewayPolicy
}

// gatewayListener is one open listener of a Gateway server port.
type gatewayListener struct {
	port uint32
	ln   net.Listener
	// certs caches the parsed credentials of the HTTPS servers on port.
	certs *credentialCache
}

// policy returns the current gateway policy, nil before the first.
func (o *GatewayOptions) policy() *policy.GatewayPolicy {
	if o == nil || o.Policy == nil {
		return nil
	}
	return o.Policy()
}

// startGateway opens the gateway's listeners and serves them in the background.
func (p *Proxy) startGateway() error {
	if p.opts.Gateway == nil {
		return nil
	}
	ports := make([]uint32, 0, len(p.opts.Gateway.Listeners))
	for port := range p.opts.Gateway.Listeners {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	for _, port := range ports {
		addr := p.opts.Gateway.Listeners[port]
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, g := range p.gatewayListeners {
				g.ln.Close()
			}
			return fmt.Errorf("listen on %s for the gateway's port %d: %w", addr, port, err)
		}
		g := gatewayListener{port: port, ln: ln, certs: newCredentialCache()}
		p.gatewayListeners = append(p.gatewayListeners, g)
		p.serving.Add(1)
		go p.accept(ln, func(ctx context.Context, c *net.TCPConn) { p.serveGateway(ctx, c, g) })
		p.log.Info("gateway listening", "port", port, "addr", ln.Addr().String())
	}
	return nil
}

// GatewayAddr returns the address of the listener of a Gateway server port, once started.
func (p *Proxy) GatewayAddr(port uint32) net.Addr {
	for _, g := range p.gatewayListeners {
		if g.port == port {
			return g.ln.Addr()
		}
	}
	return nil
}

// serveGateway serves a connection from outside the mesh: on a port of HTTPS servers, TLS
// with the certificate of the server the client names (SNI), then HTTP/1 or HTTP/2 (ALPN);
// elsewhere HTTP/1 or HTTP/2 (prior knowledge); anything else is closed.
func (p *Proxy) serveGateway(ctx context.Context, c *net.TCPConn, g gatewayListener) {
	port := g.port
	local, _ := c.LocalAddr().(*net.TCPAddr)
	var ip netip.Addr
	if local != nil {
		ip = local.AddrPort().Addr()
	}
	ci := &connInfo{direction: outbound, gateway: true, origDst: netip.AddrPortFrom(ip, uint16(port)), remote: peerAddrPort(c), tls: p.tlsLabel()}
	if p.opts.Gateway.policy().TLSPort(port) {
		p.serveGatewayTLS(ctx, c, g, ci)
		return
	}
	proto, prefix, err := detectProtocol(c, p.opts.HTTP.ReadHeaderTimeout)
	if err != nil {
		c.Close()
		return
	}
	switch proto {
	case detect.HTTP1:
		p.h1.ServeConn(withConnInfo(ctx, ci), p.meter(&detect.PrefixConn{Conn: c, Prefix: prefix}, ci))
	case detect.HTTP2:
		ci.h2 = true
		p.serveH2(p.meter(&detect.PrefixConn{Conn: c, Prefix: slices.Clone(prefix)}, ci), ci)
	default:
		p.log.Debug("the gateway serves HTTP only; closing a connection", "port", port, "remote", c.RemoteAddr().String())
		c.Close()
	}
}

// gatewayRoute picks the route table of the Gateway listener the request came to and
// routes the request with it, as the outbound side routes with a service's VirtualHost:
// matches, splits, retries, timeouts, rewrites, redirects, faults and the destinations'
// traffic policies. No listener or route table for the request's host: 404. An HTTP server
// with tls.httpsRedirect answers 301 to the request's https URL instead.
func (p *Proxy) gatewayRoute(next Handler) Handler {
	notFound := p.observe(HandlerFunc(func(ex *Exchange) { p.fail(ex, http.StatusNotFound, reasonNoRoute, nil) }))
	redirect := p.observe(HandlerFunc(httpsRedirect))
	return HandlerFunc(func(ex *Exchange) {
		port := uint32(ex.Conn.origDst.Port())
		gw := p.opts.Gateway.policy()
		host := ex.R.Host
		if host == "" {
			host = ex.Authority
		}
		if gw.HTTPSRedirect(port, host) {
			redirect.ServeExchange(ex)
			return
		}
		vh, ok := gw.Select(port, host)
		if !ok || p.opts.Resolver == nil {
			notFound.ServeExchange(ex)
			return
		}
		pol := &policy.OutboundPolicy{Authority: vh.Source, VirtualHost: vh, Destinations: gw.Destinations}
		rt := &routing{p: p, dst: &discovery.Destination{Name: "gateway:" + strconv.Itoa(int(port))}, pol: pol, port: port, next: next}
		rt.ServeExchange(ex)
	})
}
