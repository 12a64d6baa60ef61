// Package iptables holds mesh-proxy-init's interception rules as data: it builds them from a
// validated Config, renders them as iptables-restore input that installs them atomically and
// idempotently (or removes them), and runs iptables-save/iptables-restore through a Runner,
// which tests replace with a FakeRunner.
//
// Everything lives in the nat table, in two chains of our own: RedirectChain, jumped to from
// PREROUTING, sends inbound TCP to the proxy's incoming port; OutputChain, jumped to from
// OUTPUT, sends the pod's outbound TCP to the proxy's outgoing port, except the proxy's own.
package iptables

import (
	"net/netip"
	"strconv"
	"strings"
)

// Our chains in the nat table, and the built-in chains that jump to them.
const (
	RedirectChain   = "MESH_INIT_REDIRECT"
	OutputChain     = "MESH_INIT_OUTPUT"
	preroutingChain = "PREROUTING"
	outputChain     = "OUTPUT"
)

// CommentPrefix starts the comment of every rule we write, so `iptables-save` shows whose
// rules they are.
const CommentPrefix = "lightmesh/"

// MultiportLimit is how many ports one multiport match holds; a range takes two.
const MultiportLimit = 15

// Family is an IP version: IPv4 rules go to iptables, IPv6 rules to ip6tables.
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// localhost is the loopback address of the family, whose traffic is never redirected.
func (f Family) localhost() netip.Prefix {
	if f == IPv6 {
		return netip.PrefixFrom(netip.IPv6Loopback(), 128)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 32)
}

// Rule is one rule of the nat table. Zero fields match everything.
type Rule struct {
	Chain        string
	Source       netip.Prefix // -s
	Destination  netip.Prefix // -d
	OutInterface string       // -o
	Protocol     string       // -p, "tcp" or "" for every protocol
	UIDOwner     *uint32      // -m owner --uid-owner
	GIDOwner     *uint32      // -m owner --gid-owner
	DestPorts    []PortRange  // -m multiport --dports, at most MultiportLimit slots
	Comment      string       // -m comment --comment, without CommentPrefix
	Target       string       // -j: RETURN, REDIRECT, or a chain
	ToPort       uint16       // --to-ports, for REDIRECT
}

// String renders r as an iptables-restore line appending it to its chain. The order of the
// options is the one iptables-save prints, so what we write reads back the same.
func (r Rule) String() string {
	return "-A " + r.Chain + " " + r.spec()
}

// spec renders r's matches and target, without the chain.
func (r Rule) spec() string {
	var parts []string
	add := func(p ...string) { parts = append(parts, p...) }
	if r.Source.IsValid() {
		add("-s", r.Source.String())
	}
	if r.Destination.IsValid() {
		add("-d", r.Destination.String())
	}
	if r.OutInterface != "" {
		add("-o", r.OutInterface)
	}
	if r.Protocol != "" {
		add("-p", r.Protocol)
	}
	if r.UIDOwner != nil || r.GIDOwner != nil {
		add("-m", "owner")
		if r.UIDOwner != nil {
			add("--uid-owner", strconv.FormatUint(uint64(*r.UIDOwner), 10))
		}
		if r.GIDOwner != nil {
			add("--gid-owner", strconv.FormatUint(uint64(*r.GIDOwner), 10))
		}
	}
	if len(r.DestPorts) > 0 {
		ports := make([]string, len(r.DestPorts))
		for i, p := range r.DestPorts {
			ports[i] = p.String()
		}
		add("-m", "multiport", "--dports", strings.Join(ports, ","))
	}
	add("-m", "comment", "--comment", strconv.Quote(CommentPrefix+r.Comment))
	add("-j", r.Target)
	if r.Target == "REDIRECT" {
		add("--to-ports", strconv.Itoa(int(r.ToPort)))
	}
	return strings.Join(parts, " ")
}

// ChainRules returns the rules of RedirectChain and OutputChain for family, in order.
func ChainRules(cfg Config, family Family) []Rule {
	return append(inboundRules(cfg, family), outboundRules(cfg, family)...)
}

// Jumps returns the rules that send PREROUTING and OUTPUT through our chains.
func Jumps() []Rule {
	return []Rule{
		{Chain: preroutingChain, Comment: "install-inbound", Target: RedirectChain},
		{Chain: outputChain, Comment: "install-outbound", Target: OutputChain},
	}
}

// inboundRules: ignored ports and subnets return to PREROUTING (the connection goes straight
// to the application), the rest of TCP (or only PortsToRedirect) goes to the incoming port.
func inboundRules(cfg Config, family Family) []Rule {
	var rules []Rule
	for _, ports := range splitPorts(cfg.InboundPortsToIgnore) {
		rules = append(rules, Rule{Chain: RedirectChain, Protocol: "tcp", DestPorts: ports,
			Comment: "ignore-inbound-ports", Target: "RETURN"})
	}
	for _, subnet := range subnetsOf(cfg.SubnetsToIgnore, family) {
		rules = append(rules, Rule{Chain: RedirectChain, Source: subnet,
			Comment: "ignore-inbound-subnet", Target: "RETURN"})
	}
	if len(cfg.PortsToRedirect) == 0 {
		return append(rules, Rule{Chain: RedirectChain, Protocol: "tcp",
			Comment: "redirect-inbound", Target: "REDIRECT", ToPort: cfg.IncomingProxyPort})
	}
	for _, ports := range splitPorts(cfg.PortsToRedirect) {
		rules = append(rules, Rule{Chain: RedirectChain, Protocol: "tcp", DestPorts: ports,
			Comment: "redirect-inbound-ports", Target: "REDIRECT", ToPort: cfg.IncomingProxyPort})
	}
	return rules
}

// outboundRules: the proxy's own connections, loopback traffic, ignored subnets and ports
// return to OUTPUT; the rest of TCP goes to the outgoing port.
func outboundRules(cfg Config, family Family) []Rule {
	uid := cfg.ProxyUID
	rules := []Rule{{Chain: OutputChain, UIDOwner: &uid, Comment: "ignore-proxy-uid", Target: "RETURN"}}
	if cfg.ProxyGID != nil {
		gid := *cfg.ProxyGID
		rules = append(rules, Rule{Chain: OutputChain, GIDOwner: &gid, Comment: "ignore-proxy-gid", Target: "RETURN"})
	}
	rules = append(rules,
		Rule{Chain: OutputChain, OutInterface: "lo", Comment: "ignore-loopback", Target: "RETURN"},
		Rule{Chain: OutputChain, Destination: family.localhost(), Comment: "ignore-localhost", Target: "RETURN"},
	)
	for _, subnet := range subnetsOf(cfg.SubnetsToIgnore, family) {
		rules = append(rules, Rule{Chain: OutputChain, Destination: subnet,
			Comment: "ignore-outbound-subnet", Target: "RETURN"})
	}
	for _, ports := range splitPorts(cfg.OutboundPortsToIgnore) {
		rules = append(rules, Rule{Chain: OutputChain, Protocol: "tcp", DestPorts: ports,
			Comment: "ignore-outbound-ports", Target: "RETURN"})
	}
	return append(rules, Rule{Chain: OutputChain, Protocol: "tcp",
		Comment: "redirect-outbound", Target: "REDIRECT", ToPort: cfg.OutgoingProxyPort})
}

// splitPorts cuts ports into groups that each fit one multiport match (MultiportLimit slots,
// a range taking two), keeping their order.
func splitPorts(ports []PortRange) [][]PortRange {
	var groups [][]PortRange
	var group []PortRange
	used := 0
	for _, p := range ports {
		if used+p.weight() > MultiportLimit {
			groups = append(groups, group)
			group, used = nil, 0
		}
		group = append(group, p)
		used += p.weight()
	}
	if len(group) > 0 {
		groups = append(groups, group)
	}
	return groups
}

// subnetsOf returns the subnets of family.
func subnetsOf(subnets []netip.Prefix, family Family) []netip.Prefix {
	var matching []netip.Prefix
	for _, s := range subnets {
		if s.Addr().Is6() == (family == IPv6) {
			matching = append(matching, s)
		}
	}
	return matching
}
