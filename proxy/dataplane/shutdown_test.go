package dataplane

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "finished")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	m := newMesh(t, meshConfig{})
	m.serve(t, ln.Addr().String(), serverSA)
	results := make(chan string, 2)
	for _, h2 := range []bool{false, true} {
		go func() {
			resp, err := m.httpClient(h2).Get("http://" + ln.Addr().String() + "/slow")
			if err != nil {
				results <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- string(body)
		}()
	}
	<-started
	<-started

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shutdown <- m.a.Shutdown(ctx)
	}()
	// New connections are refused once the listener is closed.
	waitFor(t, "the outbound listener to close", func() bool {
		c, err := net.DialTimeout("tcp", m.a.OutboundAddr().String(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-shutdown:
		t.Fatalf("shutdown returned %v with requests in flight", err)
	default:
	}
	close(release)
	for range 2 {
		if got := <-results; got != "finished" {
			t.Errorf("in-flight request ended with %q", got)
		}
	}
	if err := <-shutdown; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestShutdownCutsConnectionsAfterGrace(t *testing.T) {
	// An opaque connection that never ends is closed when the grace period is over.
	addr := tcpServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	m := newMesh(t, meshConfig{opaquePorts: []uint16{netipAddr(t, addr).Port()}})
	m.serve(t, addr, serverSA)
	c := m.openTCP(t, addr, 0)
	waitFor(t, "the connection to open", func() bool {
		return m.a.metrics.Sample("tcp_open_connections", map[string]string{"direction": "outbound", "peer": "dst"}) == 1
	})
	graceCtx, graceCancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer graceCancel()
	if err := m.a.Shutdown(graceCtx); err == nil {
		t.Error("shutdown reported no cut connections")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open")
	}
}
