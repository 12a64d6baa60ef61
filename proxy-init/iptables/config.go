package iptables

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// MaxID is the largest UID or GID iptables' owner match accepts: 2^32-2, as 2^32-1 is the
// kernel's "no ID" value.
const MaxID = math.MaxUint32 - 1

// Config is a validated interception configuration: what to redirect where, and what to leave
// alone. Build one with the Parse functions of this package; the rules assume it is valid.
type Config struct {
	// IncomingProxyPort is the proxy's inbound listener; inbound TCP is redirected to it.
	IncomingProxyPort uint16
	// OutgoingProxyPort is the proxy's outbound listener; outbound TCP is redirected to it.
	OutgoingProxyPort uint16
	// ProxyUID is the proxy's user: its own connections are never redirected.
	ProxyUID uint32
	// ProxyGID, when set, is a group whose connections are never redirected either.
	ProxyGID *uint32
	// InboundPortsToIgnore are destination ports of inbound connections left alone.
	InboundPortsToIgnore []PortRange
	// OutboundPortsToIgnore are destination ports of outbound connections left alone.
	OutboundPortsToIgnore []PortRange
	// SubnetsToIgnore are networks whose traffic is left alone: inbound connections from them
	// and outbound connections to them. IPv6 subnets only apply to ip6tables.
	SubnetsToIgnore []netip.Prefix
	// PortsToRedirect, when not empty, are the only inbound destination ports redirected to
	// the proxy; other inbound connections go straight to the application.
	PortsToRedirect []PortRange
}

// PortRange is one TCP port (First == Last) or an inclusive range of ports.
type PortRange struct {
	First, Last uint16
}

// String formats r as iptables' multiport match wants it: "80" or "8000:8100".
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d:%d", r.First, r.Last)
}

// weight is how many of a multiport match's 15 port slots r takes.
func (r PortRange) weight() int {
	if r.First == r.Last {
		return 1
	}
	return 2
}

// ParsePort parses a TCP port number, 1 to 65535.
func ParsePort(s string) (uint16, error) {
	if !isDecimal(s) {
		return 0, fmt.Errorf("%q is not a port number: use a number from 1 to 65535", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > math.MaxUint16 {
		return 0, fmt.Errorf("port %s is out of range: use a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// ParsePortRange parses a port ("8080") or an inclusive range of ports ("8000-8100", first
// not above last).
func ParsePortRange(s string) (PortRange, error) {
	firstText, lastText, isRange := strings.Cut(s, "-")
	first, err := ParsePort(firstText)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{First: first, Last: first}, nil
	}
	last, err := ParsePort(lastText)
	if err != nil {
		return PortRange{}, err
	}
	if first > last {
		return PortRange{}, fmt.Errorf("port range %s is backwards: write the lower port first (%d-%d)", s, last, first)
	}
	return PortRange{First: first, Last: last}, nil
}

// ParsePortRanges parses a list of ports and port ranges. Each item may itself be a
// comma-separated list; surrounding spaces are ignored, empty items are errors.
func ParsePortRanges(items []string) ([]PortRange, error) {
	var ranges []PortRange
	for _, item := range splitItems(items) {
		if item == "" {
			return nil, fmt.Errorf("empty port in the list: remove the extra comma")
		}
		r, err := ParsePortRange(item)
		if err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}

// ParseSubnets parses a list of CIDRs ("10.0.0.0/8", "fd00::/64"). Host bits are cleared
// ("10.1.2.3/8" is 10.0.0.0/8), as iptables would. IPv6 subnets are errors unless allowIPv6.
func ParseSubnets(items []string, allowIPv6 bool) ([]netip.Prefix, error) {
	var subnets []netip.Prefix
	for _, item := range splitItems(items) {
		if item == "" {
			return nil, fmt.Errorf("empty subnet in the list: remove the extra comma")
		}
		prefix, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: write an address and a prefix length, such as 10.0.0.0/8 or fd00::/64", item)
		}
		if prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 subnet: write it as an IPv4 CIDR", item)
		}
		if prefix.Addr().Is6() && !allowIPv6 {
			return nil, fmt.Errorf("%q is an IPv6 subnet: add --ipv6 to program ip6tables too, or remove it", item)
		}
		subnets = append(subnets, prefix.Masked())
	}
	return subnets, nil
}

// ParseID parses a UID or GID, 0 to MaxID.
func ParseID(s string) (uint32, error) {
	if !isDecimal(s) {
		return 0, fmt.Errorf("%q is not a user or group ID: use a number from 0 to %d", s, uint32(MaxID))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxID {
		return 0, fmt.Errorf("ID %s is out of range: use a number from 0 to %d", s, uint32(MaxID))
	}
	return uint32(n), nil
}

// splitItems splits each comma-separated item and trims spaces around the parts.
func splitItems(items []string) []string {
	var parts []string
	for _, item := range items {
		for _, part := range strings.Split(item, ",") {
			parts = append(parts, strings.TrimSpace(part))
		}
	}
	return parts
}

// isDecimal reports whether s is a non-empty run of ASCII digits, no sign and no spaces.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
