// Package cmd is the command line of mesh-controller: it starts the control-plane services.
package cmd

import (
	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

// NewRootCmd returns the mesh-controller command with its subcommands.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh-controller",
		Short: "the lightmesh control plane (identity, destination, injector, policy, stats)",
	}
	root.AddCommand(cmdutil.NewVersionCmd("mesh-controller"), newCmdIdentity(), newCmdDestination())
	root.AddCommand(newCmdInjector())
	root.AddCommand(newCmdStats())
	return root
}
