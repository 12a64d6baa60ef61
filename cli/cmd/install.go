package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/identity"
)

// maxValuesFileBytes bounds a -f values file.
const maxValuesFileBytes = 1 << 20

// installOptions are the flags of `mesh install`.
type installOptions struct {
	// ignoreCluster renders without checking the cluster for an existing installation.
	ignoreCluster bool
	// output is yaml or json.
	output string
	// valuesFiles (-f) are merged in order, then set (--set key=value) applied in order.
	valuesFiles []string
	set         []string
	// showValues prints the values instead of the manifests.
	showValues bool
	// trustAnchorsFile, issuerCertificateFile and issuerKeyFile give the identity material;
	// all three or none (then it is generated).
	trustAnchorsFile      string
	issuerCertificateFile string
	issuerKeyFile         string
	// clock is the time certificates are generated and checked at; nil is the system clock.
	clock identity.Clock
	// isInstalled checks the cluster for an installation; tests replace it.
	isInstalled func(ctx context.Context, namespace string) (bool, error)
}

func newInstallOptions() *installOptions {
	return &installOptions{output: "yaml"}
}

func newInstallCmd(kube *kubeOptions) *cobra.Command {
	opts := newInstallOptions()
	opts.isInstalled = kube.isInstalled
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests of the lightmesh control plane",
		Long: `Print the manifests of the lightmesh control plane, to pipe into kubectl apply.

The control plane is a namespace (lightmesh), the controller's ServiceAccount, ClusterRole and
ClusterRoleBinding, the lightmesh-config ConfigMap (the values below, read by mesh inject and
the webhook), the trust anchors (ConfigMap lightmesh-identity-trust-roots) and the issuer
(Secret lightmesh-identity-issuer), the Services identity, destination, webhook and stats,
and the controller Deployment.

The trust anchor and issuer are generated unless all three of --identity-trust-anchors-file,
--identity-issuer-certificate-file and --identity-issuer-key-file are given; with them, the
output is the same every time. Values come from the defaults (see --show-values), then each
-f file, then each --set.

Unless --ignore-cluster is given, mesh install first checks that lightmesh is not installed
already.`,
		Example: `  mesh install | kubectl apply -f -

  # your own certificates, a registry mirror, and a chattier proxy
  mesh install --identity-trust-anchors-file ca.crt \
    --identity-issuer-certificate-file issuer.crt --identity-issuer-key-file issuer.key \
    --set imageRegistry=registry.example.com/lightmesh --set proxy.logLevel=debug

  # the values and their defaults
  mesh install --show-values`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return runInstall(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.BoolVar(&opts.ignoreCluster, "ignore-cluster", opts.ignoreCluster, "do not check the cluster for an existing installation")
	flags.StringVarP(&opts.output, "output", "o", opts.output, "output format: yaml or json (a v1 List)")
	flags.StringArrayVarP(&opts.valuesFiles, "values", "f", nil, "a values YAML file (repeatable; later files win)")
	flags.StringArrayVar(&opts.set, "set", nil, "set a value, like proxy.logLevel=debug (repeatable; applied after -f)")
	flags.BoolVar(&opts.showValues, "show-values", opts.showValues, "print the values (defaults, -f, --set) as YAML instead of the manifests; empty images follow imageRegistry and the version")
	flags.StringVar(&opts.trustAnchorsFile, "identity-trust-anchors-file", "", "PEM file of the trust anchors (root CAs)")
	flags.StringVar(&opts.issuerCertificateFile, "identity-issuer-certificate-file", "", "PEM file of the issuer certificate, signed by a trust anchor")
	flags.StringVar(&opts.issuerKeyFile, "identity-issuer-key-file", "", "PEM file of the issuer's private key")
	return cmd
}

func (o *installOptions) validate() error {
	switch o.output {
	case "yaml", "json":
	default:
		return fmt.Errorf("--output %q: use yaml or json", o.output)
	}
	given := 0
	for _, f := range []string{o.trustAnchorsFile, o.issuerCertificateFile, o.issuerKeyFile} {
		if f != "" {
			given++
		}
	}
	if given != 0 && given != 3 {
		return errors.New("give all three of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none to generate them")
	}
	return nil
}

// values are the defaults, then each -f file, then each --set; images left empty are
// resolved from imageRegistry when rendering.
func (o *installOptions) values() (install.Values, error) {
	values := install.DefaultValues()
	for _, file := range o.valuesFiles {
		data, err := readBounded(file, maxValuesFileBytes)
		if err != nil {
			return values, fmt.Errorf("-f %s: %w", file, err)
		}
		if err := install.MergeValues(&values, data); err != nil {
			return values, fmt.Errorf("-f %s: %w", file, err)
		}
	}
	for _, assignment := range o.set {
		if err := values.Set(assignment); err != nil {
			return values, fmt.Errorf("--set %w", err)
		}
	}
	if err := values.Validate(); err != nil {
		return values, fmt.Errorf("values: %w", err)
	}
	return values, nil
}

func readBounded(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("the file is over %d bytes; is it a values file?", limit)
	}
	return data, nil
}

// runInstall renders the control plane to out; errOut gets what was generated.
func runInstall(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *installOptions) error {
	values, err := opts.values()
	if err != nil {
		return err
	}
	if opts.showValues {
		data, err := values.YAML()
		if err != nil {
			return err
		}
		_, err = out.Write(data)
		return err
	}
	if !opts.ignoreCluster {
		installed, err := opts.isInstalled(ctx, values.Namespace)
		if err != nil {
			return fmt.Errorf("check the cluster for an existing installation: %w; pass --ignore-cluster to render without checking", err)
		}
		if installed {
			return fmt.Errorf("lightmesh is already installed in namespace %q; upgrades are not built yet: uninstall it first, or pass --ignore-cluster to render anyway", values.Namespace)
		}
	}
	var id install.Identity
	if opts.trustAnchorsFile != "" {
		id, err = install.LoadIdentity(opts.trustAnchorsFile, opts.issuerCertificateFile, opts.issuerKeyFile, opts.clock)
	} else {
		id, err = install.GenerateIdentity(values.Identity.TrustDomain, opts.clock)
		if err == nil {
			fmt.Fprintf(errOut, "generated a trust anchor and an issuer for trust domain %s; the trust anchor's key is not kept\n", values.Identity.TrustDomain)
		}
	}
	if err != nil {
		return err
	}
	objects, err := install.Render(values, id)
	if err != nil {
		return err
	}
	var data []byte
	if opts.output == "json" {
		data, err = install.WriteJSON(objects)
	} else {
		data, err = install.WriteYAML(objects)
	}
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}
