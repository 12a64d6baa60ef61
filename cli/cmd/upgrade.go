package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/install"
)

// upgradeOptions are the flags of `mesh upgrade`: install's values flags on top of the
// values stored in the cluster.
type upgradeOptions struct {
	installOptions
	// controlPlaneNamespace is the installation to upgrade.
	controlPlaneNamespace string
}

func newUpgradeOptions() *upgradeOptions {
	return &upgradeOptions{installOptions: *newInstallOptions(), controlPlaneNamespace: install.DefaultValues().Namespace}
}

func newUpgradeCmd(kube *kubeOptions) *cobra.Command {
	opts := newUpgradeOptions()
	opts.cluster = kube.cluster
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Print the manifests of the installed control plane, upgraded to this CLI's version",
		Long: `Print the manifests of the lightmesh control plane installed in --control-plane-namespace,
rendered by this CLI with the values the installation stored (ConfigMap lightmesh-config)
changed by --ha, -f and --set, and the same trust anchors and issuer (read from the
cluster, unless all three --identity-* files are given). Pipe it into kubectl apply.

The CRDs the cluster has from someone else (Istio, the upstream Gateway API) are left out.`,
		Example: `  mesh upgrade | kubectl apply -f -

  # turn on Prometheus in the installation of namespace mesh-prod
  mesh upgrade --control-plane-namespace mesh-prod --set prometheus.enabled=true | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return runUpgrade(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace of the installation to upgrade")
	flags.StringVarP(&opts.output, "output", "o", opts.output, "output format: yaml or json (a v1 List)")
	flags.StringArrayVarP(&opts.valuesFiles, "values", "f", nil, "a values YAML file applied over the stored values (repeatable; later files win)")
	flags.StringArrayVar(&opts.set, "set", nil, "set a value over the stored values, like proxy.logLevel=debug (repeatable; applied after -f)")
	flags.BoolVar(&opts.ha, "ha", opts.ha, "turn on high availability (see mesh install --ha)")
	flags.BoolVar(&opts.ingress, "ingress", opts.ingress, "deploy the ingress gateway (see mesh install --ingress)")
	flags.BoolVar(&opts.showValues, "show-values", opts.showValues, "print the upgraded values instead of the manifests")
	flags.StringVar(&opts.trustAnchorsFile, "identity-trust-anchors-file", "", "PEM file of new trust anchors (default: the installed ones)")
	flags.StringVar(&opts.issuerCertificateFile, "identity-issuer-certificate-file", "", "PEM file of a new issuer certificate")
	flags.StringVar(&opts.issuerKeyFile, "identity-issuer-key-file", "", "PEM file of the new issuer's private key")
	return cmd
}

// runUpgrade renders the installation of opts.controlPlaneNamespace with its stored values
// and identity to out.
func runUpgrade(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *upgradeOptions) error {
	cluster, err := opts.cluster()
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	ns := opts.controlPlaneNamespace
	stored, err := cluster.values(ctx, ns)
	var notInstalled errNotInstalled
	if errors.As(err, &notInstalled) {
		return fmt.Errorf("%w: install it with mesh install, or name its namespace with --control-plane-namespace", err)
	}
	if err != nil {
		return err
	}
	// What install filled in is derived again from the identity below.
	stored.Identity.TrustAnchorsPEM = ""
	values, err := opts.valuesOver(stored)
	if err != nil {
		return err
	}
	if values.Namespace != ns {
		return fmt.Errorf("namespace %q: an upgrade keeps the installation in %q; to move it, uninstall it and install again", values.Namespace, ns)
	}
	if opts.showValues {
		data, err := values.YAML()
		if err != nil {
			return err
		}
		_, err = out.Write(data)
		return err
	}
	var id install.Identity
	if opts.trustAnchorsFile != "" {
		id, err = install.LoadIdentity(opts.trustAnchorsFile, opts.issuerCertificateFile, opts.issuerKeyFile, opts.clock)
	} else {
		id, err = cluster.identity(ctx, ns)
	}
	if err != nil {
		return err
	}
	return render(ctx, out, errOut, cluster, values, id, false, opts.output)
}
