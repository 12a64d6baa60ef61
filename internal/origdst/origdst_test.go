package origdst

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// connectPair returns the server side of a loopback TCP connection on network ("tcp4" or
// "tcp6") and the listener's address.
func connectPair(t *testing.T, network, address string) (*net.TCPConn, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Skipf("cannot listen on %s %s here: %v", network, address, err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err := net.DialTimeout(network, ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { client.Close() })
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	return server.(*net.TCPConn), ln.Addr().(*net.TCPAddr).AddrPort()
}

// TestGetOnUnredirectedConnection checks the socket option plumbing without iptables: a
// connection conntrack tracks but nobody redirected has its own local address as original
// destination. Without conntrack in this network namespace the kernel has no answer.
// Redirected connections are covered by proxy-init's integration tests.
func TestGetOnUnredirectedConnection(t *testing.T) {
	for _, tc := range []struct{ network, address string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			server, listening := connectPair(t, tc.network, tc.address)
			got, err := Get(server)
			if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOPROTOOPT) {
				t.Skipf("conntrack does not track loopback connections here: %v", err)
			}
			if err != nil {
				t.Fatalf("Get() error: %v", err)
			}
			if got != listening {
				t.Errorf("Get() = %v, want the listener's address %v", got, listening)
			}
		})
	}
}

func TestGetRejectsNil(t *testing.T) {
	if _, err := Get(nil); err == nil {
		t.Error("Get(nil) succeeded, want an error")
	}
}

func TestGetOnClosedConnectionFails(t *testing.T) {
	server, _ := connectPair(t, "tcp4", "127.0.0.1:0")
	server.Close()
	if _, err := Get(server); err == nil {
		t.Error("Get() on a closed connection succeeded, want an error")
	}
}
