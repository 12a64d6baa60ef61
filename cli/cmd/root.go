// Package cmd is the command line of mesh: one cobra command per file, each with an options struct, a validate() and a run function that tests call.
package cmd

import (
	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
)

// NewRootCmd returns the mesh command with its subcommands.
func NewRootCmd() *cobra.Command {
	kube := &kubeOptions{}
	root := &cobra.Command{
		Use:   "mesh",
		Short: "the lightmesh command line",
	}
	root.PersistentFlags().StringVar(&kube.kubeconfig, "kubeconfig", "", "the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	root.PersistentFlags().StringVar(&kube.context, "context", "", "the kubeconfig context (default: its current context)")
	root.AddCommand(
		cmdutil.NewVersionCmd("mesh"),
		newInstallCmd(kube),
		newUpgradeCmd(kube),
		newUninstallCmd(kube),
		newInjectCmd(kube),
		newUninjectCmd(),
		newCheckCmd(kube),
		newStatCmd(kube),
		newTapCmd(kube),
		newTopCmd(kube),
		newDashboardCmd(kube),
		newEdgesCmd(kube),
	)
	return root
}
