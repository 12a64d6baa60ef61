package iptables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Installer writes and removes our rules with one backend, for one or both families.
type Installer struct {
	Runner Runner
	// Mode is ModeNFT or ModeLegacy (resolve ModeAuto with DetectMode first).
	Mode Mode
	// Families are the IP versions to program: IPv4, and IPv6 too with --ipv6.
	Families []Family
	// WaitSeconds is how long iptables-restore waits for the xtables lock (-w); 0 does not
	// wait.
	WaitSeconds int
	// AssumeEmpty plans as if a nat table that cannot be read were empty, instead of failing
	// (for --simulate on a machine where iptables-save is missing or not allowed).
	AssumeEmpty bool
	// Log receives warnings; nil discards them.
	Log *slog.Logger
}

// Step is one iptables-restore run: all of one family's change, applied atomically.
type Step struct {
	Family Family
	Binary string
	Args   []string
	Input  string
	// before is the nat table as it was, for rolling this step back.
	before string
}

// Command renders the step's command line, without its input.
func (s Step) Command() string { return s.Binary + " " + strings.Join(s.Args, " ") }

// PlanInstall reads each family's nat table and returns the steps that install cfg.
func (in Installer) PlanInstall(ctx context.Context, cfg Config) ([]Step, error) {
	var steps []Step
	for _, family := range in.Families {
		before, err := in.readNAT(ctx, family)
		if err != nil {
			return nil, err
		}
		input := InstallInput(cfg, family, ParseNATState(before))
		steps = append(steps, in.step(family, input, before))
	}
	return steps, nil
}

// PlanCleanup reads each family's nat table and returns the steps that remove our chains and
// the jumps to them; a family with nothing of ours has no step.
func (in Installer) PlanCleanup(ctx context.Context) ([]Step, error) {
	var steps []Step
	for _, family := range in.Families {
		before, err := in.readNAT(ctx, family)
		if err != nil {
			return nil, err
		}
		if input, found := CleanupInput(ParseNATState(before)); found {
			steps = append(steps, in.step(family, input, before))
		}
	}
	return steps, nil
}

// Execute runs the steps in order. If one fails, the families already changed get their nat
// table back as it was, so a run changes everything or nothing.
func (in Installer) Execute(ctx context.Context, steps []Step) error {
	for i, step := range steps {
		if _, err := in.Runner.Run(ctx, step.Binary, step.Args, step.Input); err != nil {
			err = fmt.Errorf("write the %s rules (nothing of this family was changed): %w", step.Family, err)
			for j := i - 1; j >= 0; j-- {
				err = errors.Join(err, in.rollBack(ctx, steps[j]))
			}
			return err
		}
	}
	return nil
}

// ReadNAT returns what `iptables-save -t nat` prints for family.
func (in Installer) ReadNAT(ctx context.Context, family Family) (string, error) {
	return in.Runner.Run(ctx, SaveBinary(in.Mode, family), []string{"-t", "nat"}, "")
}

func (in Installer) readNAT(ctx context.Context, family Family) (string, error) {
	out, err := in.ReadNAT(ctx, family)
	if err == nil {
		return out, nil
	}
	if in.AssumeEmpty {
		in.logger().Warn("cannot read the nat table; planning as if it were empty", "family", family.String(), "error", err)
		return "", nil
	}
	return "", fmt.Errorf("read the %s nat table (run as root, or with NET_ADMIN and NET_RAW, and check that %s is installed): %w",
		family, SaveBinary(in.Mode, family), err)
}

// rollBack restores the nat table step changed to what it was before.
func (in Installer) rollBack(ctx context.Context, step Step) error {
	input := step.before
	if !strings.Contains(input, "*nat") {
		input = emptyNATInput
	}
	if _, err := in.Runner.Run(ctx, step.Binary, in.waitArgs(), input); err != nil {
		return fmt.Errorf("roll back the %s rules already written (remove them with --cleanup): %w", step.Family, err)
	}
	in.logger().Warn("rolled back the rules already written", "family", step.Family.String())
	return nil
}

func (in Installer) step(family Family, input, before string) Step {
	return Step{
		Family: family,
		Binary: RestoreBinary(in.Mode, family),
		Args:   append([]string{"--noflush"}, in.waitArgs()...),
		Input:  input,
		before: before,
	}
}

func (in Installer) waitArgs() []string {
	if in.WaitSeconds <= 0 {
		return nil
	}
	return []string{"-w", strconv.Itoa(in.WaitSeconds)}
}

func (in Installer) logger() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}
