// Package origdst reads the original destination of a TCP connection that iptables
// redirected (REDIRECT or DNAT in the nat table) to a local listener, such as the proxy's
// inbound and outbound ports. The kernel keeps it in the connection's conntrack entry and
// answers it through the SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6) socket options.
package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// The socket options from linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h.
const (
	soOriginalDst     = 80 // SO_ORIGINAL_DST, level SOL_IP: answers a struct sockaddr_in
	ip6tSoOriginalDst = 80 // IP6T_SO_ORIGINAL_DST, level SOL_IPV6: answers a struct sockaddr_in6
)

// Get returns the destination the peer of c originally dialled, before iptables redirected
// the connection. For a connection that was not redirected but is tracked by conntrack it
// returns c's local address; without conntrack it fails.
func Get(c *net.TCPConn) (netip.AddrPort, error) {
	if c == nil {
		return netip.AddrPort{}, errors.New("origdst: nil connection; pass the accepted *net.TCPConn")
	}
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok || local == nil {
		return netip.AddrPort{}, errors.New("origdst: connection has no local TCP address; is it closed?")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: get the connection's socket: %w", err)
	}

	var dst netip.AddrPort
	var sockErr error
	controlErr := raw.Control(func(fd uintptr) {
		localIP, _ := netip.AddrFromSlice(local.IP)
		if localIP.Unmap().Is4() {
			// IPv4, or IPv4 on a dual-stack IPv6 socket (::ffff:a.b.c.d).
			dst, sockErr = getIPv4(int(fd))
			if sockErr == nil || localIP.Is4() {
				return
			}
		}
		dst, sockErr = getIPv6(int(fd))
	})
	if controlErr != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: use the connection's socket: %w", controlErr)
	}
	if sockErr != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: read the original destination of %s: %w (is the connection redirected by iptables, and is conntrack loaded?)", c.LocalAddr(), sockErr)
	}
	return dst, nil
}

// getIPv4 asks for SO_ORIGINAL_DST. The kernel writes a sockaddr_in (16 bytes: family, port
// in network order, address, padding); IPv6Mreq is the stdlib's 20-byte buffer that fits it.
func getIPv4(fd int) (netip.AddrPort, error) {
	buf, err := syscall.GetsockoptIPv6Mreq(fd, syscall.SOL_IP, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	sa := buf.Multiaddr // the first 16 bytes of the answer
	if family := binary.NativeEndian.Uint16(sa[0:2]); family != syscall.AF_INET {
		return netip.AddrPort{}, fmt.Errorf("kernel answered address family %d, want AF_INET", family)
	}
	port := binary.BigEndian.Uint16(sa[2:4])
	addr := netip.AddrFrom4([4]byte(sa[4:8]))
	return netip.AddrPortFrom(addr, port), nil
}

// getIPv6 asks for IP6T_SO_ORIGINAL_DST. The kernel writes a sockaddr_in6 (28 bytes);
// IPv6MTUInfo is the stdlib's 32-byte buffer that starts with one.
func getIPv6(fd int) (netip.AddrPort, error) {
	buf, err := syscall.GetsockoptIPv6MTUInfo(fd, syscall.SOL_IPV6, ip6tSoOriginalDst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	sa := buf.Addr
	if sa.Family != syscall.AF_INET6 {
		return netip.AddrPort{}, fmt.Errorf("kernel answered address family %d, want AF_INET6", sa.Family)
	}
	// sa.Port holds the port's bytes in network order; read them back as such.
	var portBytes [2]byte
	binary.NativeEndian.PutUint16(portBytes[:], sa.Port)
	port := binary.BigEndian.Uint16(portBytes[:])
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port), nil
}
