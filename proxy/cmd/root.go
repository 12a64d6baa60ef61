// Package cmd is the command line of mesh-proxy: it starts the proxy.
package cmd

import (
	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

// NewRootCmd returns the mesh-proxy command with its subcommands.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh-proxy",
		Short: "the lightmesh sidecar and gateway proxy",
	}
	root.AddCommand(cmdutil.NewVersionCmd("mesh-proxy"))
	return root
}
