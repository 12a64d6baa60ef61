// Package cmdutil holds the small pieces every lightmesh binary's command line shares: the
// version command and the entry point that turns a command's error into an exit status.
package cmdutil

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/version"
)

// VersionOptions are the flags of a `version` command.
type VersionOptions struct {
	// Short prints the version alone, without the binary's name.
	Short bool
}

// NewVersionCmd returns a `version` command for the binary called binary.
func NewVersionCmd(binary string) *cobra.Command {
	opts := VersionOptions{}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of " + binary,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunVersion(cmd.OutOrStdout(), binary, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Short, "short", false, "print the version number only")
	return cmd
}

// RunVersion writes the version of binary to out.
func RunVersion(out io.Writer, binary string, opts VersionOptions) error {
	if opts.Short {
		_, err := fmt.Fprintln(out, version.Version)
		return err
	}
	_, err := fmt.Fprintf(out, "%s %s\n", binary, version.Version)
	return err
}

// Main executes root with the process's arguments and exits non-zero, after printing the
// error to stderr, when it fails. Every binary's main calls it.
func Main(root *cobra.Command) {
	root.SilenceUsage = true
	root.SilenceErrors = true
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", root.Name(), err)
		os.Exit(1)
	}
}
