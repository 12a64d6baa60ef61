package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// spliceChunk is how many bytes one splice round moves before the byte counters are updated.
const spliceChunk = 4 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// outboundTCP sends an opaque connection where discovery says, or to its original destination.
func (p *Proxy) outboundTCP(ctx context.Context, c *net.TCPConn, prefix []byte, dst netip.AddrPort) {
	d, found, err := p.resolveAddr(ctx, dst)
	if err != nil {
		p.log.Warn("discovery failed; closing the connection", "dst", dst.String(), "err", err)
		c.Close()
		return
	}
	p.outboundTCPTo(ctx, c, prefix, dst, d, found)
}

// resolveAddr asks discovery about an original destination; found=false without a resolver.
func (p *Proxy) resolveAddr(ctx context.Context, dst netip.AddrPort) (*discovery.Destination, bool, error) {
	if p.opts.Resolver == nil {
		return nil, false, nil
	}
	return p.opts.Resolver.Resolve(ctx, discovery.Target{Addr: dst})
}

// outboundTCPTo sends an opaque connection to an endpoint of d when found, else to dst.
// The balancer learns the connect time (TLS handshake and transport header included).
func (p *Proxy) outboundTCPTo(ctx context.Context, c *net.TCPConn, prefix []byte, dst netip.AddrPort, d *discovery.Destination, found bool) {
	ep := discovery.Endpoint{Addr: dst}
	authority := ""
	if found {
		var err error
		if ep, err = p.opts.Balancer.Pick(d); err != nil {
			p.log.Warn("no endpoint; closing the connection", "dst", dst.String(), "err", err)
			c.Close()
			return
		}
		// A DestinationRule's connectionPool.tcp.maxConnections caps this proxy's connections
		// to the destination: one more is closed at once.
		rel, ok := p.admitTCP(d)
		if !ok {
			p.log.Info("connection pool full; closing the connection", "dst", dst.String())
			c.Close()
			return
		}
		defer rel()
		authority = d.Name
	}
	if authority == "" {
		authority = dst.String()
	}
	labels := metrics.Labels{Direction: outbound, Authority: authority, TLS: p.tlsLabel()}
	var release discovery.Release
	if found {
		release = p.acquire(ep.Addr)
	}
	var upstream net.Conn
	var err error
	if ep.Meshed() && p.opts.TLS != nil {
		labels.TLS, labels.ServerID = metrics.TLSTrue, p.idString(ep.Identity)
		upstream, err = p.dialMeshTCP(ctx, ep)
	} else {
		upstream, err = p.dialTCP(ctx, ep.Addr)
	}
	release.Done(outcomeOf(ctx, err))
	src := p.metrics.TCP(metrics.TCPLabels{Labels: labels, Peer: "src"})
	src.Open()
	defer src.Close()
	if err != nil {
		p.log.Info("outbound connection failed", "dst", ep.Addr.String(), "err", err)
		c.Close()
		return
	}
	p.pipe(c, upstream, prefix, src, p.metrics.TCP(metrics.TCPLabels{Labels: labels, Peer: "dst"}))
}

// dialMeshTCP opens mTLS to the endpoint proxy's inbound port and writes the transport
// header naming the application port.
func (p *Proxy) dialMeshTCP(ctx context.Context, ep discovery.Endpoint) (net.Conn, error) {
	tc, err := p.dialMesh(ctx, netip.AddrPortFrom(ep.Addr.Addr(), p.opts.PeerInboundPort), ep.Identity, meshtls.ALPNTCP)
	if err != nil {
		return nil, err
	}
	hdr := [4]byte{'L', 'M'}
	binary.BigEndian.PutUint16(hdr[2:], ep.Addr.Port())
	if _, err := tc.Write(hdr[:]); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// inboundTCP copies a connection to the application at dst, once the inbound policy
// (PeerAuthentication, then AuthorizationPolicy) admits it; a refused one is closed before
// the application is even dialled.
func (p *Proxy) inboundTCP(ctx context.Context, c net.Conn, prefix []byte, ci *connInfo, dst netip.AddrPort) {
	if !p.admitInbound(ci, dst) {
		c.Close()
		return
	}
	labels := metrics.Labels{Direction: inbound, Authority: dst.String(), TLS: ci.tls, ClientID: ci.clientID}
	src := p.metrics.TCP(metrics.TCPLabels{Labels: labels, Peer: "src"})
	src.Open()
	defer src.Close()
	upstream, err := p.dialTCP(ctx, dst)
	if err != nil {
		p.log.Info("connection to the application failed", "dst", dst.String(), "err", err)
		c.Close()
		return
	}
	p.pipe(c, upstream, prefix, src, p.metrics.TCP(metrics.TCPLabels{Labels: labels, Peer: "dst"}))
}

// dialTCP opens a TCP connection within the connect timeout.
func (p *Proxy) dialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	return p.opts.Dial(ctx, "tcp", addr.String())
}

// dialMesh opens mTLS with the proxy of server at addr, offering alpn. The connection closes
// itself when a certificate of its handshake expires (an *expiringConn).
func (p *Proxy) dialMesh(ctx context.Context, addr netip.AddrPort, server identity.SpiffeID, alpn string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	c, err := p.opts.Dial(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	tc, err := p.opts.TLS.Client(ctx, c, server, alpn)
	if err != nil {
		if errors.Is(err, meshtls.ErrHandshake) {
			p.metrics.HandshakeError(outbound)
		}
		return nil, err
	}
	return p.expireAt(tc, tc.NotAfter, outbound), nil
}

// pipe copies between the accepted connection a and the opened one b, prefix (bytes already
// read from a) first, both directions at once; each direction's end is passed on as a
// half-close, and both connections are closed when both directions end.
func (p *Proxy) pipe(a, b net.Conn, prefix []byte, am, bm *metrics.TCP) {
	bm.Open()
	defer bm.Close()
	defer a.Close()
	defer b.Close()
	if len(prefix) > 0 {
		n, err := b.Write(prefix)
		am.Read(int64(len(prefix)))
		bm.Write(int64(n))
		if err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := copyHalf(b, a, am.Read, bm.Write); err != nil {
			a.Close()
			b.Close()
		}
	}()
	if err := copyHalf(a, b, bm.Read, am.Write); err != nil {
		a.Close()
		b.Close()
	}
	<-done
}

// copyHalf copies src to dst until src ends, then half-closes dst. Between two TCP
// connections the kernel splices; otherwise a pooled buffer carries the bytes.
func copyHalf(dst, src net.Conn, read, wrote func(int64)) error {
	var err error
	dt, dstTCP := dst.(*net.TCPConn)
	st, srcTCP := src.(*net.TCPConn)
	if dstTCP && srcTCP {
		for {
			var n int64
			n, err = io.CopyN(dt, st, spliceChunk)
			read(n)
			wrote(n)
			if err != nil {
				break
			}
		}
	} else {
		bufp := copyBuffers.Get().(*[]byte)
		buf := *bufp
		for {
			n, rerr := src.Read(buf)
			if n > 0 {
				read(int64(n))
				m, werr := dst.Write(buf[:n])
				wrote(int64(m))
				if werr != nil {
					err = werr
					break
				}
			}
			if rerr != nil {
				err = rerr
				break
			}
		}
		copyBuffers.Put(bufp)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
