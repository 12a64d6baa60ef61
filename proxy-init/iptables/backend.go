package iptables

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Mode selects the iptables backend: the nf_tables one (iptables-nft-*) or the legacy
// x_tables one (iptables-legacy-*). Rules written with one are invisible to the other, so we
// use the one the node already uses.
type Mode string

// The modes. ModeAuto is resolved with DetectMode before anything runs.
const (
	ModeAuto   Mode = "auto"
	ModeNFT    Mode = "nft"
	ModeLegacy Mode = "legacy"
)

// ParseMode parses "auto", "nft" or "legacy".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNFT, ModeLegacy:
		return m, nil
	}
	return "", fmt.Errorf("%q is not an iptables mode: use auto, nft or legacy", s)
}

// SaveBinary is the iptables-save program of mode and family, such as ip6tables-nft-save.
func SaveBinary(mode Mode, family Family) string { return binary(mode, family, "save") }

// RestoreBinary is the iptables-restore program of mode and family.
func RestoreBinary(mode Mode, family Family) string { return binary(mode, family, "restore") }

func binary(mode Mode, family Family, tool string) string {
	name := "iptables"
	if family == IPv6 {
		name = "ip6tables"
	}
	return name + "-" + string(mode) + "-" + tool
}

// detectTimeout bounds each save DetectMode runs (iptables-nft-save can hang on a broken
// nf_tables setup).
const detectTimeout = 5 * time.Second

// kubeletHintChains are chains kubelet creates in the mangle table with the backend it uses.
var kubeletHintChains = []string{":KUBE-IPTABLES-HINT", ":KUBE-KUBELET-CANARY"}

// DetectMode tells which backend this network namespace already uses, as Kubernetes'
// iptables-wrapper does: the backend with kubelet's hint chains wins; otherwise the one
// whose iptables-save and ip6tables-save print more rules; nft when neither has any (or on a
// tie). A save that fails counts as no rules.
func DetectMode(ctx context.Context, runner Runner) Mode {
	nft := saveAll(ctx, runner, ModeNFT)
	legacy := saveAll(ctx, runner, ModeLegacy)
	switch {
	case hasAny(nft, kubeletHintChains):
		return ModeNFT
	case hasAny(legacy, kubeletHintChains):
		return ModeLegacy
	case countRules(legacy) > countRules(nft):
		return ModeLegacy
	}
	return ModeNFT
}

// saveAll returns what the save programs of mode print for both families.
func saveAll(ctx context.Context, runner Runner, mode Mode) string {
	var all strings.Builder
	for _, family := range []Family{IPv4, IPv6} {
		ctx, cancel := context.WithTimeout(ctx, detectTimeout)
		out, _ := runner.Run(ctx, SaveBinary(mode, family), nil, "")
		cancel()
		all.WriteString(out)
	}
	return all.String()
}

// countRules counts the rule lines ("-A ...") of iptables-save output.
func countRules(save string) int {
	n := 0
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, "-") {
			n++
		}
	}
	return n
}

func hasAny(save string, chainPrefixes []string) bool {
	for _, line := range strings.Split(save, "\n") {
		for _, prefix := range chainPrefixes {
			if strings.HasPrefix(line, prefix+" ") {
				return true
			}
		}
	}
	return false
}
