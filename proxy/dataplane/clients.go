package dataplane

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/h1"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
)

// clients are the proxy's upstream HTTP clients: HTTP/1.1 and HTTP/2 with prior knowledge to
// plaintext servers, and the pool of multiplexed HTTP/2 connections to peer proxies.
type clients struct {
	p *Proxy
	// app sends HTTP/1.1 requests whose body is absent or in memory on the handler's
	// goroutine; h1 the others (it streams a body while it reads the response).
	app  *h1.Client
	h1   *http.Transport
	h2c  *http.Transport
	mesh *http.Transport

	mu    sync.Mutex
	peers map[peerKey]*peerConns
}

// peerKey names a peer proxy: where it is and who it must be.
type peerKey struct {
	addr netip.AddrPort
	id   identity.SpiffeID
}

type peerConns struct {
	mu    sync.Mutex
	conns []pooledConn
}

// pooledConn is one HTTP/2 connection to a peer proxy and the mesh connection under it.
type pooledConn struct {
	cc   *http.ClientConn
	conn *expiringConn
}

type preDialedKey struct{}

// connectTimeoutKey carries a destination's connect timeout (DestinationRule
// connectionPool.tcp.connectTimeout) in a request's context to the dialers.
type connectTimeoutKey struct{}

// connectTimeout is the connect timeout of the request whose context ctx is.
func (p *Proxy) connectTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
		return d
	}
	return p.opts.ConnectTimeout
}

func newClients(p *Proxy) *clients {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, p.connectTimeout(ctx))
		defer cancel()
		return p.opts.Dial(ctx, network, addr)
	}
	h2cfg := &http.HTTP2Config{
		MaxReceiveBufferPerConnection: 4 << 20,
		MaxReceiveBufferPerStream:     1 << 20,
		SendPingTimeout:               30 * time.Second,
		PingTimeout:                   15 * time.Second,
	}
	c := &clients{p: p, peers: map[peerKey]*peerConns{}}
	var h1p, h2p http.Protocols
	h1p.SetHTTP1(true)
	h2p.SetUnencryptedHTTP2(true)
	c.h1 = &http.Transport{
		DialContext:         dial,
		Protocols:           &h1p,
		DisableCompression:  true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}
	// Options were validated: the client's cannot be refused.
	c.app, _ = h1.NewClient(h1.ClientOptions{
		Dial:                dial,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleTimeout:         90 * time.Second,
	})
	c.h2c = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err == nil && p.opts.CoalesceWrites {
				conn = newCoalescingConn(conn)
			}
			return conn, err
		},
		Protocols:          &h2p,
		DisableCompression: true,
		HTTP2:              h2cfg,
		IdleConnTimeout:    90 * time.Second,
	}
	c.mesh = &http.Transport{
		// The pool dials (with mTLS) and hands the connection over in the context.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if conn, ok := ctx.Value(preDialedKey{}).(net.Conn); ok {
				return conn, nil
			}
			return nil, errors.New("mesh connections are opened by the peer pool only")
		},
		Protocols:          &h2p,
		DisableCompression: true,
		HTTP2:              h2cfg,
	}
	return c
}

// meshRoundTrip sends r on the HTTP/2 connection to the peer proxy of id at addr, opening
// it when there is none with room.
func (c *clients) meshRoundTrip(r *http.Request, addr netip.AddrPort, id identity.SpiffeID) (*http.Response, error) {
	cc, err := c.meshConn(r.Context(), peerKey{addr: addr, id: id})
	if err != nil {
		return nil, err
	}
	return cc.RoundTrip(r)
}

// meshConn returns a connection to the peer with a reserved request slot.
func (c *clients) meshConn(ctx context.Context, key peerKey) (*http.ClientConn, error) {
	c.mu.Lock()
	pc := c.peers[key]
	if pc == nil {
		pc = &peerConns{}
		c.peers[key] = pc
	}
	c.mu.Unlock()

	pc.mu.Lock()
	defer pc.mu.Unlock()
	kept := pc.conns[:0]
	var found *http.ClientConn
	now := time.Now()
	for _, pooled := range pc.conns {
		cc := pooled.cc
		if cc.Err() != nil {
			cc.Close()
			continue
		}
		if pooled.conn.draining(now) {
			// A certificate of its handshake expires soon: no new requests on it. It is
			// closed now when idle, else when the certificate expires.
			if cc.InFlight() == 0 {
				cc.Close()
			}
			continue
		}
		kept = append(kept, pooled)
		if found == nil && cc.Reserve() == nil {
			found = cc
		}
	}
	clear(pc.conns[len(kept):])
	pc.conns = kept
	if found != nil {
		return found, nil
	}
	dialCtx := ctx
	if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
		var cancel context.CancelFunc
		dialCtx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	conn, err := c.p.dialMesh(dialCtx, key.addr, key.id, meshtls.ALPNHTTP2)
	if err != nil {
		return nil, err
	}
	mc := conn.(*expiringConn)
	if c.p.opts.CoalesceWrites {
		conn = newCoalescingConn(conn)
	}
	// The connection outlives the request that opened it.
	cc, err := c.mesh.NewClientConn(context.WithValue(context.WithoutCancel(ctx), preDialedKey{}, conn), "http", key.addr.String())
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := cc.Reserve(); err != nil {
		cc.Close()
		return nil, err
	}
	pc.conns = append(pc.conns, pooledConn{cc: cc, conn: mc})
	return cc, nil
}

// close closes every pooled connection.
func (c *clients) close() {
	c.app.Close()
	c.h1.CloseIdleConnections()
	c.h2c.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, pc := range c.peers {
		pc.mu.Lock()
		for _, pooled := range pc.conns {
			pooled.cc.Close()
		}
		pc.conns = nil
		pc.mu.Unlock()
		delete(c.peers, key)
	}
}
