package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// A DestinationRule's maxConnections caps the opaque TCP connections of the client proxy to
// the destination: beyond it a connection is closed before any byte reaches the server, and
// a slot freed lets the next one through.
func TestOpaqueMaxConnections(t *testing.T) {
	served := make(chan struct{}, 8)
	addr := tcpServer(t, func(c net.Conn) {
		served <- struct{}{}
		fmt.Fprint(c, "220 ready\r\n")
		_, _ = io.Copy(io.Discard, c) // hold the connection until the client closes it
	})
	port := netipAddr(t, addr).Port()
	pol := discovery.NewStaticPolicy()
	host, _ := splitServiceName(addr)
	pol.SetOutbound(addr, &policy.OutboundPolicy{Authority: addr, Destinations: []policy.Destination{{
		Host: host, TrafficPolicy: policy.TrafficPolicy{ConnectionPool: &policy.ConnectionPool{MaxConnections: 1}},
	}}})
	m := newMesh(t, meshConfig{opaquePorts: []uint16{port}, plaintext: true, tweakA: func(o *Options) { o.Policy = pol }})
	m.serve(t, addr, "")

	open := func() (net.Conn, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := m.dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return c, "closed: " + err.Error()
		}
		return c, line
	}
	first, line := open()
	if line != "220 ready\r\n" {
		t.Fatalf("the first connection: %q", line)
	}
	second, line := open()
	second.Close()
	if line == "220 ready\r\n" {
		t.Fatal("a second connection got through maxConnections: 1")
	}
	if len(served) != 1 {
		t.Fatalf("the server accepted %d connections, want 1", len(served))
	}
	first.Close()
	// The slot is freed once the proxy has finished the first connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		third, line := open()
		third.Close()
		if line == "220 ready\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection got through after the first closed: %q", line)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline
	}
}
