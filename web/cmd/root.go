// Package cmd is the command line of mesh-web: it serves the dashboard.
package cmd

import (
	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

// NewRootCmd returns the mesh-web command with its subcommands.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh-web",
		Short: "the lightmesh dashboard",
	}
	root.AddCommand(cmdutil.NewVersionCmd("mesh-web"), newCmdServe())
	return root
}
