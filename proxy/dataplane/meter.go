package dataplane

import (
	"net"
	"sync/atomic"

	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// meteredConn counts an HTTP connection in the TCP metrics (tcp_open_total,
// tcp_open_connections, tcp_read_bytes_total, tcp_write_bytes_total, tcp_close_total), as
// opaque connections are, so that HTTP workloads show their connections and byte rates too.
type meteredConn struct {
	net.Conn
	m      *metrics.TCP
	closed atomic.Bool
}

// meter counts c, an accepted connection described by ci, from now until it is closed.
func (p *Proxy) meter(c net.Conn, ci *connInfo) net.Conn {
	m := p.metrics.TCP(metrics.TCPLabels{Labels: metrics.Labels{Direction: ci.direction, Authority: ci.origDst.String(), TLS: ci.tls, ClientID: ci.clientID}, Peer: "src"})
	m.Open()
	return &meteredConn{Conn: c, m: m}
}

func (c *meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.Read(int64(n))
	return n, err
}

func (c *meteredConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.Write(int64(n))
	return n, err
}

func (c *meteredConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.m.Close()
	}
	return c.Conn.Close()
}

// CloseWrite half-closes the underlying connection when it can.
func (c *meteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
