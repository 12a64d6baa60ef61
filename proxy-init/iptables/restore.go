package iptables

import (
	"strings"
)

// NATState is what `iptables-save -t nat` printed: the chains it declares and its rules, as
// printed ("-A CHAIN ...").
type NATState struct {
	chains map[string]bool
	rules  []string
}

// ParseNATState reads the nat table out of iptables-save output. Other tables, comments and
// counters are ignored; empty output (no nat table yet) is an empty state.
func ParseNATState(save string) NATState {
	state := NATState{chains: map[string]bool{}}
	inNAT := false
	for _, line := range strings.Split(save, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			inNAT = line == "*nat"
		case !inNAT:
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			state.chains[name] = true
		case strings.HasPrefix(line, "-A "):
			state.rules = append(state.rules, line)
		}
	}
	return state
}

// HasChain reports whether the nat table has the chain.
func (s NATState) HasChain(name string) bool { return s.chains[name] }

// jumpsTo returns the rules of chains other than target that jump to target, in order.
func (s NATState) jumpsTo(target string) []string {
	var jumps []string
	for _, rule := range s.rules {
		fields := strings.Fields(rule)
		if len(fields) < 2 || fields[1] == target {
			continue
		}
		for i := 2; i+1 < len(fields); i++ {
			if (fields[i] == "-j" || fields[i] == "--jump" || fields[i] == "-g" || fields[i] == "--goto") && fields[i+1] == target {
				jumps = append(jumps, rule)
				break
			}
		}
	}
	return jumps
}

// jumpsFrom returns the rules of chain from that jump to target.
func (s NATState) jumpsFrom(from, target string) []string {
	var jumps []string
	for _, rule := range s.jumpsTo(target) {
		if strings.HasPrefix(rule, "-A "+from+" ") {
			jumps = append(jumps, rule)
		}
	}
	return jumps
}

// InstallInput returns the iptables-restore input (for --noflush) that installs the rules of
// cfg for family, given the nat table's current state. Declaring our chains creates them, or
// flushes them when they exist, so their rules are always exactly ours; a jump to them is only
// added when absent (and duplicates left by someone else are deleted), so running it twice
// gives the same table.
func InstallInput(cfg Config, family Family, current NATState) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	b.WriteString(":" + RedirectChain + " - [0:0]\n")
	b.WriteString(":" + OutputChain + " - [0:0]\n")
	for _, rule := range ChainRules(cfg, family) {
		b.WriteString(rule.String() + "\n")
	}
	for _, jump := range Jumps() {
		existing := current.jumpsFrom(jump.Chain, jump.Target)
		if len(existing) == 0 {
			b.WriteString(jump.String() + "\n")
		}
		for _, duplicate := range existing[min(1, len(existing)):] {
			b.WriteString(deleteLine(duplicate) + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// CleanupInput returns the iptables-restore input (for --noflush) that removes our chains
// and every rule jumping to them, and nothing else. It reports false when the nat table has
// nothing of ours.
func CleanupInput(current NATState) (string, bool) {
	var b strings.Builder
	b.WriteString("*nat\n")
	found := false
	for _, chain := range []string{RedirectChain, OutputChain} {
		for _, jump := range current.jumpsTo(chain) {
			b.WriteString(deleteLine(jump) + "\n")
			found = true
		}
	}
	for _, chain := range []string{RedirectChain, OutputChain} {
		if current.HasChain(chain) {
			b.WriteString("-F " + chain + "\n")
			found = true
		}
	}
	for _, chain := range []string{RedirectChain, OutputChain} {
		if current.HasChain(chain) {
			b.WriteString("-X " + chain + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String(), found
}

// deleteLine turns an "-A CHAIN spec" line from iptables-save into "-D CHAIN spec".
func deleteLine(appendLine string) string {
	return "-D " + strings.TrimPrefix(appendLine, "-A ")
}

// emptyNATInput is the restore input of a nat table with nothing in it, used to roll back a
// family whose nat table was empty (or absent) before we wrote to it.
const emptyNATInput = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
`
