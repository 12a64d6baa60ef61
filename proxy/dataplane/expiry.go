package dataplane

import (
	"net"
	"time"
)

// Mesh connections never outlive the certificates of their handshake: each side closes a
// connection when the first of the two expires (the peer's leaf, or its own certificate as
// presented). The client side also stops sending new requests on a multiplexed connection
// expiryDrain before that moment (less for a connection opened close to it), so that the
// requests already on it can finish and new ones go over a connection made with the
// certificates renewed meanwhile.
const expiryDrain = 10 * time.Second

// expiringConn is a mesh connection that closes itself at notAfter.
type expiringConn struct {
	net.Conn
	notAfter time.Time
	// drainAt is when the client side stops putting new requests on it.
	drainAt time.Time
	timer   *time.Timer
}

// expireAt arms c to close at notAfter (counted in tls_expired_connections_total for
// direction); a zero notAfter arms nothing.
func (p *Proxy) expireAt(c net.Conn, notAfter time.Time, direction string) *expiringConn {
	ec := &expiringConn{Conn: c, notAfter: notAfter, drainAt: notAfter}
	if notAfter.IsZero() {
		return ec
	}
	left := time.Until(notAfter)
	ec.drainAt = notAfter.Add(-min(expiryDrain, left/2))
	ec.timer = time.AfterFunc(left, func() {
		p.metrics.ExpiredConnection(direction)
		p.log.Info("closing a mesh connection: a certificate of its handshake expired",
			"direction", direction, "remote", c.RemoteAddr().String(), "notAfter", notAfter.UTC())
		c.Close()
	})
	return ec
}

// draining reports whether new requests must no longer be sent on the connection.
func (c *expiringConn) draining(now time.Time) bool {
	return !c.notAfter.IsZero() && !now.Before(c.drainAt)
}

// Close stops the expiry timer and closes the connection.
func (c *expiringConn) Close() error {
	if c.timer != nil {
		c.timer.Stop()
	}
	return c.Conn.Close()
}

// CloseWrite half-closes the underlying connection when it can.
func (c *expiringConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
