// Package cmd is the command line of mesh-proxy-init: it writes the pod's interception rules.
package cmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
	"github.com/lightmesh/lightmesh/proxy-init/iptables"
)

// runTimeout bounds a whole run, on top of the xtables lock wait.
const runTimeout = time.Minute

// options are mesh-proxy-init's flags, as typed. validate parses them into config and mode.
type options struct {
	incomingProxyPort     string
	outgoingProxyPort     string
	proxyUID              string
	proxyGID              string
	inboundPortsToIgnore  []string
	outboundPortsToIgnore []string
	subnetsToIgnore       []string
	portsToRedirect       []string
	iptablesMode          string
	ipv6                  bool
	simulate              bool
	cleanup               bool
	waitSeconds           int

	// runner runs the iptables programs; tests replace it.
	runner iptables.Runner

	// Set by validate.
	config iptables.Config
	mode   iptables.Mode
}

// newOptions returns the defaults, which are Linkerd's: the proxy listens on 4143 (inbound)
// and 4140 (outbound), runs as UID 2102, and its own ports 4190 and 4191 (admin: probes and
// metrics) are never redirected.
func newOptions(runner iptables.Runner) *options {
	return &options{
		incomingProxyPort:    "4143",
		outgoingProxyPort:    "4140",
		proxyUID:             "2102",
		inboundPortsToIgnore: []string{"4190", "4191"},
		iptablesMode:         string(iptables.ModeAuto),
		waitSeconds:          10,
		runner:               runner,
	}
}

// NewRootCmd returns the mesh-proxy-init command with its subcommands.
func NewRootCmd() *cobra.Command { return newRootCmd(iptables.ExecRunner{}) }

func newRootCmd(runner iptables.Runner) *cobra.Command {
	opts := newOptions(runner)
	root := &cobra.Command{
		Use:   "mesh-proxy-init",
		Short: "sets up iptables so a pod's TCP goes through its proxy",
		Long: `mesh-proxy-init runs as the first init container of a meshed pod. In the pod's network
namespace it writes nat rules that redirect inbound TCP to the proxy's incoming port and
outbound TCP to its outgoing port, except the proxy's own traffic, loopback, and the ports and
subnets you ignore. All rules are written at once with iptables-restore, or none are; running it
again gives the same rules. It needs the NET_ADMIN and NET_RAW capabilities.

Lists are comma-separated (the flags may also be repeated); ports may be ranges such as 8000-8100.`,
		Example: `  # print the rules for the defaults without changing anything
  mesh-proxy-init --simulate

  # skip a database port outbound, and the node's network both ways
  mesh-proxy-init --outbound-ports-to-ignore 5432 --subnets-to-ignore 10.0.0.0/8

  # remove the rules again
  mesh-proxy-init --cleanup`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := root.Flags()
	flags.StringVar(&opts.incomingProxyPort, "incoming-proxy-port", opts.incomingProxyPort, "the proxy's inbound `port`: inbound TCP is redirected to it")
	flags.StringVar(&opts.outgoingProxyPort, "outgoing-proxy-port", opts.outgoingProxyPort, "the proxy's outbound `port`: outbound TCP is redirected to it")
	flags.StringVar(&opts.proxyUID, "proxy-uid", opts.proxyUID, "the proxy's user `ID`: its connections are not redirected")
	flags.StringVar(&opts.proxyGID, "proxy-gid", opts.proxyGID, "a group `ID` whose connections are not redirected either (default: none)")
	flags.StringSliceVar(&opts.inboundPortsToIgnore, "inbound-ports-to-ignore", opts.inboundPortsToIgnore, "inbound destination `ports` that go straight to the application; setting it replaces the default, so keep 4190,4191")
	flags.StringSliceVar(&opts.outboundPortsToIgnore, "outbound-ports-to-ignore", opts.outboundPortsToIgnore, "outbound destination `ports` that bypass the proxy")
	flags.StringSliceVar(&opts.subnetsToIgnore, "subnets-to-ignore", opts.subnetsToIgnore, "`CIDRs` whose traffic bypasses the proxy: inbound from them and outbound to them")
	flags.StringSliceVar(&opts.portsToRedirect, "ports-to-redirect", opts.portsToRedirect, "only redirect these inbound destination `ports` (default: all inbound TCP)")
	flags.StringVar(&opts.iptablesMode, "iptables-mode", opts.iptablesMode, "iptables backend: auto (the one the node uses), nft or legacy")
	flags.BoolVar(&opts.ipv6, "ipv6", opts.ipv6, "program ip6tables too")
	flags.BoolVar(&opts.simulate, "simulate", opts.simulate, "print the iptables-restore input and change nothing")
	flags.BoolVar(&opts.cleanup, "cleanup", opts.cleanup, "remove our chains and the jumps to them, and nothing else")
	flags.IntVar(&opts.waitSeconds, "wait", opts.waitSeconds, "`seconds` to wait for the xtables lock (iptables-restore -w); 0 does not wait")

	root.AddCommand(cmdutil.NewVersionCmd("mesh-proxy-init"))
	return root
}

// validate checks every flag before anything is written, and keeps the parsed config and mode.
func (o *options) validate() error {
	var cfg iptables.Config
	var err error
	if cfg.IncomingProxyPort, err = iptables.ParsePort(o.incomingProxyPort); err != nil {
		return invalid("incoming-proxy-port", o.incomingProxyPort, err)
	}
	if cfg.OutgoingProxyPort, err = iptables.ParsePort(o.outgoingProxyPort); err != nil {
		return invalid("outgoing-proxy-port", o.outgoingProxyPort, err)
	}
	if cfg.ProxyUID, err = iptables.ParseID(o.proxyUID); err != nil {
		return invalid("proxy-uid", o.proxyUID, err)
	}
	if o.proxyGID != "" {
		gid, err := iptables.ParseID(o.proxyGID)
		if err != nil {
			return invalid("proxy-gid", o.proxyGID, err)
		}
		cfg.ProxyGID = &gid
	}
	if cfg.InboundPortsToIgnore, err = iptables.ParsePortRanges(o.inboundPortsToIgnore); err != nil {
		return invalid("inbound-ports-to-ignore", strings.Join(o.inboundPortsToIgnore, ","), err)
	}
	if cfg.OutboundPortsToIgnore, err = iptables.ParsePortRanges(o.outboundPortsToIgnore); err != nil {
		return invalid("outbound-ports-to-ignore", strings.Join(o.outboundPortsToIgnore, ","), err)
	}
	if cfg.PortsToRedirect, err = iptables.ParsePortRanges(o.portsToRedirect); err != nil {
		return invalid("ports-to-redirect", strings.Join(o.portsToRedirect, ","), err)
	}
	if cfg.SubnetsToIgnore, err = iptables.ParseSubnets(o.subnetsToIgnore, o.ipv6); err != nil {
		return invalid("subnets-to-ignore", strings.Join(o.subnetsToIgnore, ","), err)
	}
	mode, err := iptables.ParseMode(o.iptablesMode)
	if err != nil {
		return invalid("iptables-mode", o.iptablesMode, err)
	}
	if o.waitSeconds < 0 {
		return invalid("wait", fmt.Sprint(o.waitSeconds), fmt.Errorf("use 0 (do not wait) or more seconds"))
	}
	if o.runner == nil {
		return fmt.Errorf("no runner for the iptables programs; build the command with NewRootCmd")
	}
	o.config, o.mode = cfg, mode
	return nil
}

func invalid(flag, value string, err error) error {
	return fmt.Errorf("invalid --%s %q: %w", flag, value, err)
}

// run validates opts, then installs the rules (or removes them with --cleanup, or prints them
// with --simulate). stdout gets only the --simulate output; logs go to errOut.
func run(ctx context.Context, out, errOut io.Writer, opts *options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(errOut, nil))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(opts.waitSeconds)*time.Second+runTimeout)
	defer cancel()

	mode := opts.mode
	if mode == iptables.ModeAuto {
		mode = iptables.DetectMode(ctx, opts.runner)
		log.Info("detected the iptables backend in use", "mode", string(mode))
	}
	families := []iptables.Family{iptables.IPv4}
	if opts.ipv6 {
		families = append(families, iptables.IPv6)
	}
	installer := iptables.Installer{
		Runner:      opts.runner,
		Mode:        mode,
		Families:    families,
		WaitSeconds: opts.waitSeconds,
		AssumeEmpty: opts.simulate,
		Log:         log,
	}

	var steps []iptables.Step
	var err error
	if opts.cleanup {
		steps, err = installer.PlanCleanup(ctx)
	} else {
		steps, err = installer.PlanInstall(ctx, opts.config)
	}
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		log.Info("nothing of ours in the nat table; nothing to clean up")
		return nil
	}

	if opts.simulate {
		for i, step := range steps {
			if i > 0 {
				fmt.Fprintln(out)
			}
			if _, err := fmt.Fprintf(out, "# %s\n%s", step.Command(), step.Input); err != nil {
				return err
			}
		}
		return nil
	}

	if err := installer.Execute(ctx, steps); err != nil {
		return err
	}
	for _, step := range steps {
		action := "installed the interception rules"
		if opts.cleanup {
			action = "removed the interception rules"
		}
		log.Info(action, "family", step.Family.String(), "command", step.Command())
		if now, err := installer.ReadNAT(ctx, step.Family); err == nil {
			fmt.Fprintf(errOut, "%s nat table now:\n%s", step.Family, now)
		}
	}
	return nil
}
