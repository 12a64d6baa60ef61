package iptables

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	good := map[string]PortRange{
		"1":         {1, 1},
		"65535":     {65535, 65535},
		"8000-8100": {8000, 8100},
		"80-80":     {80, 80},
	}
	for in, want := range good {
		got, err := ParsePortRange(in)
		if err != nil || got != want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := []string{"", "0", "70000", "65536", "1-65536", "0-10", "10-5", "80 -j ACCEPT", " 80", "-1", "+80",
		"80-", "-80", "1-2-3", "0x50", "99999999999999999999", "８０"}
	for _, in := range bad {
		if got, err := ParsePortRange(in); err == nil {
			t.Errorf("ParsePortRange(%q) = %v, want an error", in, got)
		}
	}
}

func TestParsePortRangesSplitsAndTrims(t *testing.T) {
	got, err := ParsePortRanges([]string{"80, 443", "8000-8100"})
	want := []PortRange{{80, 80}, {443, 443}, {8000, 8100}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParsePortRanges() = %v, %v; want %v", got, err, want)
	}
	if _, err := ParsePortRanges([]string{"80", ""}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("ParsePortRanges with an empty item: error %v, want one about the empty item", err)
	}
}

func TestParseSubnets(t *testing.T) {
	got, err := ParseSubnets([]string{"10.1.2.3/8", "192.168.0.0/16", "fd00::/64"}, true)
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00::/64")}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSubnets() = %v, %v; want %v", got, err, want)
	}
	for _, tc := range []struct {
		in        string
		allowIPv6 bool
	}{
		{"10.0.0.0/33", false},
		{"10.0.0.1", false},
		{"10.0.0.0/8 -j ACCEPT", false},
		{"fd00::/64", false},
		{"fd00::/129", true},
		{"::ffff:10.0.0.0/104", true},
		{"fe80::/64%eth0", true},
		{"example.com/8", false},
	} {
		if got, err := ParseSubnets([]string{tc.in}, tc.allowIPv6); err == nil {
			t.Errorf("ParseSubnets(%q, ipv6=%v) = %v, want an error", tc.in, tc.allowIPv6, got)
		}
	}
	if _, err := ParseSubnets([]string{"fd00::/64"}, false); err == nil || !strings.Contains(err.Error(), "--ipv6") {
		t.Errorf("an IPv6 subnet without --ipv6: error %v, want one suggesting --ipv6", err)
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]uint32{"0": 0, "2102": 2102, "4294967294": 4294967294} {
		if got, err := ParseID(in); err != nil || got != want {
			t.Errorf("ParseID(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "4294967295", "4294967296", "2102 -j ACCEPT", "root", "1e3"} {
		if got, err := ParseID(in); err == nil {
			t.Errorf("ParseID(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, in := range []string{"auto", "nft", "legacy"} {
		if got, err := ParseMode(in); err != nil || string(got) != in {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("iptables"); err == nil {
		t.Error(`ParseMode("iptables") succeeded, want an error`)
	}
}
