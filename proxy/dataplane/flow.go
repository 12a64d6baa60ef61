package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lightmesh/lightmesh/proxy/detect"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

var detectBuffers = sync.Pool{New: func() any { b := make([]byte, detectBufferSize); return &b }}

// detectProtocol runs protocol detection on c with a pooled buffer and returns a copy of the
// bytes it read, so that a long-lived connection does not hold a detection buffer.
func detectProtocol(c net.Conn, timeout time.Duration) (detect.Protocol, []byte, error) {
	bufp := detectBuffers.Get().(*[]byte)
	defer detectBuffers.Put(bufp)
	proto, prefix, err := detect.Detect(c, *bufp, timeout)
	return proto, bytes.Clone(prefix), err
}

// tlsLabel is the metrics tls label of traffic with a peer that is not meshed.
func (p *Proxy) tlsLabel() string {
	if p.opts.TLS == nil {
		return metrics.TLSFalse
	}
	return metrics.TLSNoIdentity
}

// serveOutbound handles a connection from the application.
func (p *Proxy) serveOutbound(ctx context.Context, c *net.TCPConn) {
	dst, err := p.opts.OrigDst(c)
	if err != nil {
		p.log.Warn("outbound connection without an original destination; closing it", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if dst == p.outboundAddr || dst.Addr().IsLoopback() && (dst.Port() == p.outboundAddr.Port() || dst.Port() == p.inboundPort) {
		p.log.Warn("refusing a connection to the proxy itself (it would loop); is the proxy's own traffic excluded from interception?", "dst", dst.String())
		c.Close()
		return
	}
	ci := &connInfo{direction: outbound, origDst: dst, tls: p.tlsLabel()}
	if p.isOpaquePort(dst.Port()) {
		p.outboundTCP(ctx, c, nil, dst)
		return
	}
	// The destination service may say the port is opaque (its server may speak first):
	// then detection is skipped. A discovery error is left to the request path to report.
	d, found, err := p.resolveAddr(ctx, dst)
	if err == nil && found && d.Opaque() {
		p.outboundTCPTo(ctx, c, nil, dst, d, true)
		return
	}
	// Or that it speaks HTTP (the Service port's appProtocol or name): then a client that
	// says nothing holds an idle connection of its pool, to be used later; falling back to
	// opaque TCP would pin its every request to one endpoint, past routes and balancing.
	// Such a connection waits for its first request as a kept-alive one waits for its next.
	clientFirst := err == nil && found && d.ClientSpeaksFirst()
	timeout := p.opts.DetectTimeout
	if clientFirst {
		timeout = max(timeout, p.opts.HTTP.IdleTimeout)
	}
	began := time.Now()
	proto, prefix, err := detectProtocol(c, timeout)
	if err != nil {
		p.log.Debug("outbound protocol detection failed", "dst", dst.String(), "err", err)
		c.Close()
		return
	}
	if proto == detect.Opaque && len(prefix) == 0 {
		// Nothing came: the timeout passed, or the client closed its side.
		p.countSilence(ci, began, timeout)
		if clientFirst {
			p.log.Debug("closing a connection to an HTTP service on which the client sent nothing", "dst", dst.String(), "waited", time.Since(began).Round(time.Millisecond).String())
			c.Close()
			return
		}
	}
	switch proto {
	case detect.HTTP1:
		p.h1.ServeConn(withConnInfo(ctx, ci), p.meter(&detect.PrefixConn{Conn: c, Prefix: prefix}, ci))
	case detect.HTTP2:
		ci.h2 = true
		p.serveH2(p.meter(&detect.PrefixConn{Conn: c, Prefix: slices.Clone(prefix)}, ci), ci)
	default:
		p.outboundTCP(ctx, c, prefix, dst)
	}
}

// countSilence counts a connection on which detection, begun at began, read nothing, when
// that was for lack of time (protocol_detect_timeouts_total) rather than because the client
// closed its side first.
func (p *Proxy) countSilence(ci *connInfo, began time.Time, timeout time.Duration) {
	if time.Since(began) >= timeout {
		p.metrics.DetectTimeout(ci.direction)
	}
}

// serveH2 hands c to the HTTP/2 server.
func (p *Proxy) serveH2(c net.Conn, ci *connInfo) {
	if p.opts.CoalesceWrites {
		c = newCoalescingConn(c)
	}
	if !p.h2conns.push(&infoConn{Conn: c, info: ci}) {
		c.Close()
	}
}

// serveInbound handles a connection from another workload.
func (p *Proxy) serveInbound(ctx context.Context, c *net.TCPConn) {
	dst, err := p.opts.OrigDst(c)
	if err != nil {
		p.log.Warn("inbound connection without an original destination; closing it", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	// A connection to the inbound port itself is a peer proxy's opaque transport: only mesh
	// TLS with a transport header may come this way.
	direct := dst.Port() == p.inboundPort
	if direct && p.opts.TLS == nil {
		p.log.Warn("refusing a direct connection to the inbound port: identity is disabled", "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	remote := peerAddrPort(c)
	ci := &connInfo{direction: inbound, origDst: dst, remote: remote, tls: p.tlsLabel()}
	if !direct && p.isOpaquePort(dst.Port()) {
		p.inboundTCP(ctx, c, nil, ci, dst)
		return
	}
	began := time.Now()
	proto, prefix, err := detectProtocol(c, p.opts.DetectTimeout)
	if err != nil {
		c.Close()
		return
	}
	if proto == detect.Opaque && len(prefix) == 0 {
		p.countSilence(ci, began, p.opts.DetectTimeout)
	}
	if direct && proto != detect.TLS {
		p.log.Warn("refusing plaintext on the inbound port", "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	switch proto {
	case detect.TLS:
		if p.opts.TLS != nil {
			p.serveInboundTLS(ctx, c, prefix, dst, remote, direct)
			return
		}
		p.inboundTCP(ctx, c, prefix, ci, dst)
	case detect.HTTP1:
		p.h1.ServeConn(withConnInfo(ctx, ci), p.meter(&detect.PrefixConn{Conn: c, Prefix: prefix}, ci))
	case detect.HTTP2:
		ci.h2 = true
		p.serveH2(p.meter(&detect.PrefixConn{Conn: c, Prefix: slices.Clone(prefix)}, ci), ci)
	default:
		p.inboundTCP(ctx, c, prefix, ci, dst)
	}
}

var errNotMesh = errors.New("not mesh TLS")

// serveInboundTLS terminates mesh TLS, or passes the application's own TLS through.
func (p *Proxy) serveInboundTLS(ctx context.Context, c *net.TCPConn, prefix []byte, dst, remote netip.AddrPort, direct bool) {
	sc := &sniffConn{Conn: &detect.PrefixConn{Conn: c, Prefix: prefix}, recording: true}
	var mesh bool
	var refusal error
	cfg := &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.ContainsFunc(hello.SupportedProtos, meshtls.IsMeshALPN) {
			return nil, errNotMesh
		}
		if _, err := p.opts.TLS.LocalIdentity(); err != nil {
			refusal = err
			return nil, err
		}
		// A client that asked for another identity (SNI) still gets this proxy's
		// certificate: its own check then fails with a clear identity mismatch.
		mesh = true
		sc.pass()
		return p.opts.TLS.ServerConfig(), nil
	}}
	tc := tls.Server(sc, cfg)
	hctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if !mesh {
		if refusal != nil || direct {
			if refusal != nil {
				p.metrics.HandshakeError(inbound)
			}
			p.log.Warn("refusing a mesh TLS connection", "remote", c.RemoteAddr().String(), "err", refusal)
			c.Close()
			return
		}
		// The application's own TLS: pass the bytes read so far, and the rest, through.
		ci := &connInfo{direction: inbound, origDst: dst, remote: remote, tls: metrics.TLSNoIdentity}
		p.inboundTCP(ctx, c, sc.recorded, ci, dst)
		return
	}
	if err != nil {
		p.metrics.HandshakeError(inbound)
		p.log.Warn("mesh TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	state := tc.ConnectionState()
	id, err := meshtls.PeerIdentity(state)
	if err != nil {
		tc.Close()
		return
	}
	// The connection ends when the client's certificate or this proxy's expires. (The one
	// presented is read again here: should it have been renewed during the handshake, the
	// client still closes the connection when the one it saw expires.)
	own, _ := p.opts.TLS.Certificate()
	mc := p.expireAt(tc, meshtls.Expiry(state, own), inbound)
	clientID := p.idString(id)
	ci := &connInfo{direction: inbound, origDst: dst, remote: remote, meshed: true, clientID: clientID, clientIDHeader: []string{clientID}, principal: istioPrincipal(clientID), tls: metrics.TLSTrue}
	switch state.NegotiatedProtocol {
	case meshtls.ALPNHTTP2:
		ci.h2 = true
		p.serveH2(p.meter(mc, ci), ci)
	case meshtls.ALPNHTTP1:
		p.h1.ServeConn(withConnInfo(ctx, ci), p.meter(mc, ci))
	case meshtls.ALPNTCP:
		var hdr [4]byte
		_ = mc.SetReadDeadline(time.Now().Add(p.opts.ConnectTimeout))
		if _, err := io.ReadFull(mc, hdr[:]); err != nil || hdr[0] != 'L' || hdr[1] != 'M' {
			p.log.Warn("mesh TCP connection without a valid transport header; closing it", "client", ci.clientID, "err", err)
			mc.Close()
			return
		}
		_ = mc.SetReadDeadline(time.Time{})
		if port := binary.BigEndian.Uint16(hdr[2:]); port != 0 {
			dst = netip.AddrPortFrom(dst.Addr(), port)
		}
		if dst.Port() == p.inboundPort {
			mc.Close()
			return
		}
		ci.origDst = dst
		p.inboundTCP(ctx, mc, nil, ci, dst)
	default:
		mc.Close()
	}
}

// peerAddrPort returns the address of c's peer.
func peerAddrPort(c *net.TCPConn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// sniffConn records what the TLS server reads and swallows what it writes until pass is
// called, so that a ClientHello that is not ours can be replayed to the application.
type sniffConn struct {
	net.Conn
	recording bool
	recorded  []byte
	passed    bool
}

func (s *sniffConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if s.recording {
		s.recorded = append(s.recorded, p[:n]...)
	}
	return n, err
}

func (s *sniffConn) Write(p []byte) (int, error) {
	if !s.passed {
		return len(p), nil
	}
	return s.Conn.Write(p)
}

func (s *sniffConn) pass() {
	s.passed = true
	s.recording = false
	s.recorded = nil
}

// CloseWrite half-closes the underlying connection.
func (s *sniffConn) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
