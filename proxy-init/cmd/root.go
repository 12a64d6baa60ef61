// Package cmd is the command line of mesh-proxy-init: it writes the pod's interception rules.
package cmd

import (
	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

// NewRootCmd returns the mesh-proxy-init command with its subcommands.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh-proxy-init",
		Short: "sets up iptables so a pod's TCP goes through its proxy",
	}
	root.AddCommand(cmdutil.NewVersionCmd("mesh-proxy-init"))
	return root
}
