package iptables

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func ports(ps ...uint16) []PortRange {
	var ranges []PortRange
	for _, p := range ps {
		ranges = append(ranges, PortRange{p, p})
	}
	return ranges
}

func TestSplitPortsHoldsAtMost15Slots(t *testing.T) {
	fifteen := ports(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
	sevenRanges := []PortRange{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}, {11, 12}, {13, 14}}
	for _, tc := range []struct {
		name  string
		in    []PortRange
		sizes []int // ports per group
	}{
		{"none", nil, nil},
		{"one", ports(80), []int{1}},
		{"fifteen ports fit one rule", fifteen, []int{15}},
		{"the sixteenth port starts a new rule", append(append([]PortRange{}, fifteen...), PortRange{16, 16}), []int{15, 1}},
		{"seven ranges and a port fill one rule", append(append([]PortRange{}, sevenRanges...), PortRange{20, 20}), []int{8}},
		{"a range that does not fit moves on", append(append([]PortRange{}, sevenRanges...), PortRange{20, 30}), []int{7, 1}},
		{"forty ports", ports(seq(1, 40)...), []int{15, 15, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			groups := splitPorts(tc.in)
			var sizes []int
			var flattened []PortRange
			for _, g := range groups {
				sizes = append(sizes, len(g))
				slots := 0
				for _, p := range g {
					slots += p.weight()
				}
				if slots > MultiportLimit {
					t.Errorf("group %v takes %d slots, more than %d", g, slots, MultiportLimit)
				}
				flattened = append(flattened, g...)
			}
			if !reflect.DeepEqual(sizes, tc.sizes) {
				t.Errorf("group sizes = %v, want %v", sizes, tc.sizes)
			}
			if len(tc.in) > 0 && !reflect.DeepEqual(flattened, tc.in) {
				t.Errorf("groups %v lose or reorder ports of %v", groups, tc.in)
			}
		})
	}
}

func seq(first, last uint16) []uint16 {
	var s []uint16
	for p := first; p <= last; p++ {
		s = append(s, p)
	}
	return s
}

func TestChainRulesAsData(t *testing.T) {
	gid := uint32(3000)
	cfg := Config{
		IncomingProxyPort:     4143,
		OutgoingProxyPort:     4140,
		ProxyUID:              2102,
		ProxyGID:              &gid,
		InboundPortsToIgnore:  ports(4190, 4191),
		OutboundPortsToIgnore: []PortRange{{5432, 5432}, {6000, 6010}},
		SubnetsToIgnore:       []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/64")},
		PortsToRedirect:       ports(8080),
	}
	uid := uint32(2102)
	v4 := netip.MustParsePrefix("10.0.0.0/8")
	want := []Rule{
		{Chain: RedirectChain, Protocol: "tcp", DestPorts: ports(4190, 4191), Comment: "ignore-inbound-ports", Target: "RETURN"},
		{Chain: RedirectChain, Source: v4, Comment: "ignore-inbound-subnet", Target: "RETURN"},
		{Chain: RedirectChain, Protocol: "tcp", DestPorts: ports(8080), Comment: "redirect-inbound-ports", Target: "REDIRECT", ToPort: 4143},
		{Chain: OutputChain, UIDOwner: &uid, Comment: "ignore-proxy-uid", Target: "RETURN"},
		{Chain: OutputChain, GIDOwner: &gid, Comment: "ignore-proxy-gid", Target: "RETURN"},
		{Chain: OutputChain, OutInterface: "lo", Comment: "ignore-loopback", Target: "RETURN"},
		{Chain: OutputChain, Destination: netip.MustParsePrefix("127.0.0.1/32"), Comment: "ignore-localhost", Target: "RETURN"},
		{Chain: OutputChain, Destination: v4, Comment: "ignore-outbound-subnet", Target: "RETURN"},
		{Chain: OutputChain, Protocol: "tcp", DestPorts: []PortRange{{5432, 5432}, {6000, 6010}}, Comment: "ignore-outbound-ports", Target: "RETURN"},
		{Chain: OutputChain, Protocol: "tcp", Comment: "redirect-outbound", Target: "REDIRECT", ToPort: 4140},
	}
	if got := ChainRules(cfg, IPv4); !reflect.DeepEqual(got, want) {
		t.Errorf("ChainRules(IPv4) =\n%s\nwant\n%s", dump(got), dump(want))
	}

	v6 := ChainRules(cfg, IPv6)
	text := dump(v6)
	for _, wantLine := range []string{
		`-A MESH_INIT_REDIRECT -s fd00::/64 -m comment --comment "lightmesh/ignore-inbound-subnet" -j RETURN`,
		`-A MESH_INIT_OUTPUT -d ::1/128 -m comment --comment "lightmesh/ignore-localhost" -j RETURN`,
		`-A MESH_INIT_OUTPUT -d fd00::/64 -m comment --comment "lightmesh/ignore-outbound-subnet" -j RETURN`,
	} {
		if !strings.Contains(text, wantLine+"\n") {
			t.Errorf("IPv6 rules lack %s:\n%s", wantLine, text)
		}
	}
	if strings.Contains(text, "10.0.0.0") || strings.Contains(text, "127.0.0.1") {
		t.Errorf("IPv6 rules mention IPv4 addresses:\n%s", text)
	}
}

func TestChainRulesRedirectAllInboundByDefault(t *testing.T) {
	rules := ChainRules(Config{IncomingProxyPort: 4143, OutgoingProxyPort: 4140}, IPv4)
	want := Rule{Chain: RedirectChain, Protocol: "tcp", Comment: "redirect-inbound", Target: "REDIRECT", ToPort: 4143}
	if !reflect.DeepEqual(rules[0], want) {
		t.Errorf("first rule = %+v, want %+v", rules[0], want)
	}
}

func TestEveryRuleHasOurComment(t *testing.T) {
	gid := uint32(1)
	cfg := Config{IncomingProxyPort: 1, OutgoingProxyPort: 2, ProxyGID: &gid, InboundPortsToIgnore: ports(seq(1, 20)...),
		OutboundPortsToIgnore: ports(3), PortsToRedirect: ports(4), SubnetsToIgnore: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, r := range append(ChainRules(cfg, IPv4), Jumps()...) {
		if !strings.Contains(r.String(), ` -m comment --comment "lightmesh/`) {
			t.Errorf("rule without our comment: %s", r)
		}
	}
}

func TestRuleString(t *testing.T) {
	uid := uint32(2102)
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Rule{Chain: OutputChain, UIDOwner: &uid, Comment: "x", Target: "RETURN"},
			`-A MESH_INIT_OUTPUT -m owner --uid-owner 2102 -m comment --comment "lightmesh/x" -j RETURN`},
		{Rule{Chain: RedirectChain, Protocol: "tcp", DestPorts: []PortRange{{80, 80}, {8000, 8100}}, Comment: "y", Target: "REDIRECT", ToPort: 4143},
			`-A MESH_INIT_REDIRECT -p tcp -m multiport --dports 80,8000:8100 -m comment --comment "lightmesh/y" -j REDIRECT --to-ports 4143`},
		{Rule{Chain: "PREROUTING", Comment: "install-inbound", Target: RedirectChain},
			`-A PREROUTING -m comment --comment "lightmesh/install-inbound" -j MESH_INIT_REDIRECT`},
	} {
		if got := tc.rule.String(); got != tc.want {
			t.Errorf("String() =\n%s\nwant\n%s", got, tc.want)
		}
	}
}

func dump(rules []Rule) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintln(&b, r)
	}
	return b.String()
}
