package dataplane

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
)

// shortLived gives proxy p's side of m a certificate for id that expires in lifetime, and
// returns the source (to renew it) and the expiry.
func shortLived(t *testing.T, m *mesh, p *Proxy, id string, lifetime time.Duration) (*testpki.Source, time.Time) {
	t.Helper()
	src := m.pki.Source(t, id)
	cert := m.pki.LeafAt(t, id, time.Now(), lifetime)
	src.SetCertificate(cert)
	tlsConf, err := newTLSFrom(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.opts.TLS = tlsConf
	return src, cert.Leaf.NotAfter
}

// A multiplexed connection between proxies is no longer used for new requests shortly before
// a certificate of its handshake expires, and is gone by then; the requests go on over a new
// connection made with the renewed certificate, none failing.
func TestPooledConnectionIsReplacedBeforeItsCertificateExpires(t *testing.T) {
	m := newMesh(t, meshConfig{})
	src, notAfter := shortLived(t, m, m.a, clientSA, 6*time.Second)
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	client := m.httpClient(true)
	inbound := map[string]string{"direction": "inbound", "peer": "src", "tls": "true", "client_id": clientSA}

	send := func(what string) {
		t.Helper()
		resp, body := get(t, client, "http://"+app.addr+"/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: answered %d %q (%s)", what, resp.StatusCode, body, resp.Header.Get(ProxyErrorHeader))
		}
	}
	send("first request")
	if n := m.b.metrics.Sample("tcp_open_total", inbound); n != 1 {
		t.Fatalf("B accepted %v mesh connections, want 1", n)
	}
	// The proxy renews (as the identity client does at 70 % of the lifetime).
	src.SetCertificate(m.pki.Leaf(t, clientSA))
	// Requests keep flowing until the old certificate has expired. A second before it does,
	// they are already on a new connection (the first drains from 3 s before: half of the
	// 6 s it had left when it was made).
	checkedDrain := false
	for time.Now().Before(notAfter.Add(500 * time.Millisecond)) {
		send("request while the first connection's certificate runs out")
		if !checkedDrain && time.Now().After(notAfter.Add(-time.Second)) {
			checkedDrain = true
			if n := m.b.metrics.Sample("tcp_open_total", inbound); n != 2 {
				t.Errorf("a second before the certificate expired, B had accepted %v mesh connections, want 2: the first was not drained", n)
			}
		}
		time.Sleep(50 * time.Millisecond) // request pacing, not synchronisation
	}
	if n := m.b.metrics.Sample("tcp_open_total", inbound); n != 2 {
		t.Errorf("B accepted %v mesh connections, want 2 (the first replaced once)", n)
	}
	if n := m.b.metrics.Sample("tcp_close_total", inbound); n != 1 {
		t.Errorf("B saw %v mesh connections closed, want the first one closed by its expiry", n)
	}
	if pc := m.a.clients.peers[peerKey{addr: netipAddr(t, app.addr), id: pkiID(t, serverSA)}]; pc == nil || len(pc.conns) != 1 {
		t.Errorf("A's pool holds %v, want the one new connection", pc)
	} else if got := pc.conns[0].conn.notAfter; !got.After(notAfter.Add(time.Hour)) {
		t.Errorf("the new connection ends at %s: it was not made with the renewed certificate", got)
	}
	if n := m.a.metrics.Sample("tls_handshake_errors_total", map[string]string{"direction": "outbound"}); n != 0 {
		t.Errorf("tls_handshake_errors_total{outbound} = %v", n)
	}
}

// A long-lived opaque connection is closed when the peer's certificate expires, by both
// proxies: the client's (its peer is the server) and the server's (its own certificate).
func TestOpaqueConnectionEndsWithThePeersCertificate(t *testing.T) {
	addr := tcpServer(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
	m := newMesh(t, meshConfig{opaquePorts: []uint16{netipAddr(t, addr).Port()}})
	_, notAfter := shortLived(t, m, m.b, serverSA, 4*time.Second)
	m.serve(t, addr, serverSA)
	c := m.openTCP(t, addr, 20*time.Second)
	buf := make([]byte, 5)
	if _, err := fmt.Fprint(c, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	// The application never closes: only the expiry can end the connection.
	_, err := io.ReadAll(c)
	ended := time.Now()
	if err != nil {
		t.Fatalf("the connection did not end cleanly: %v", err)
	}
	// Certificate times have a resolution of one second.
	if ended.Before(notAfter.Add(-time.Second)) || ended.After(notAfter.Add(2*time.Second)) {
		t.Errorf("the connection ended at %s, the server's certificate expired at %s", ended.UTC().Format(time.StampMilli), notAfter.UTC().Format(time.StampMilli))
	}
	expired := func(p *Proxy, direction string) float64 {
		return p.metrics.Sample("tls_expired_connections_total", map[string]string{"direction": direction})
	}
	waitFor(t, "the expiry to be counted", func() bool { return expired(m.a, "outbound")+expired(m.b, "inbound") >= 1 })
}

// A server proxy closes a connection whose client's certificate expired, even when the
// client (here a bare mesh TLS client, not a proxy) keeps it open.
func TestInboundConnectionEndsWithTheClientsCertificate(t *testing.T) {
	addr := tcpServer(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
	m := newMesh(t, meshConfig{})
	cert := m.pki.LeafAt(t, clientSA, time.Now(), 4*time.Second)
	src := m.pki.Source(t, clientSA)
	src.SetCertificate(cert)
	clientTLS, err := newTLSFrom(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := m.natB.dialVia(m.b.InboundAddr().String())(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientTLS.Client(ctx, raw, pkiID(t, serverSA), meshtls.ALPNTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	hdr := []byte{'L', 'M', 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], netipAddr(t, addr).Port())
	if _, err := c.Write(append(hdr, "hi"...)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	_, _ = io.ReadAll(c)
	ended := time.Now()
	notAfter := cert.Leaf.NotAfter
	if ended.Before(notAfter.Add(-time.Second)) || ended.After(notAfter.Add(2*time.Second)) {
		t.Errorf("the connection ended at %s, the client's certificate expired at %s", ended.UTC().Format(time.StampMilli), notAfter.UTC().Format(time.StampMilli))
	}
	waitFor(t, "B to count the expiry", func() bool {
		return m.b.metrics.Sample("tls_expired_connections_total", map[string]string{"direction": "inbound"}) == 1
	})
}
