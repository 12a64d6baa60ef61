package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

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
	// ha applies the high-availability values before -f and --set.
	ha bool
	// ingress deploys the ingress gateway (ingress.enabled), before -f and --set.
	ingress bool
	// crds renders only the CustomResourceDefinitions.
	crds bool
	// clock is the time certificates are generated and checked at; nil is the system clock.
	clock identity.Clock
	// cluster connects to the cluster; tests give fake clientsets.
	cluster func() (*meshCluster, error)
}

func newInstallOptions() *installOptions {
	return &installOptions{output: "yaml"}
}

func newInstallCmd(kube *kubeOptions) *cobra.Command {
	opts := newInstallOptions()
	opts.cluster = kube.cluster
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests of the lightmesh control plane",
		Long: `Print the manifests of the lightmesh control plane, to pipe into kubectl apply.

The control plane is the CustomResourceDefinitions of the policy APIs lightmesh serves
(Istio's VirtualService, DestinationRule, Gateway, PeerAuthentication and
AuthorizationPolicy, Gateway API's HTTPRoute; --crds prints only them), a namespace
(lightmesh), the controller's ServiceAccount, ClusterRole and
ClusterRoleBinding, the lightmesh-config ConfigMap (the values below, read by mesh inject and
the webhook), the trust anchors (ConfigMap lightmesh-identity-trust-roots) and the issuer
(Secret lightmesh-identity-issuer), the Services identity, destination, webhook and stats,
and the controller Deployment; with --ha a PodDisruptionBudget too, and the add-ons
enabled in the values (prometheus, grafana, jaeger).

The trust anchor and issuer are generated unless all three of --identity-trust-anchors-file,
--identity-issuer-certificate-file and --identity-issuer-key-file are given; with them, the
output is the same every time. Values come from the defaults (see --show-values), then each
-f file, then each --set.

Unless --ignore-cluster is given, mesh install first checks that lightmesh is not installed
already (then run mesh upgrade), and leaves out the CRDs the cluster already has from
someone else (Istio, the upstream Gateway API), saying so on stderr.`,
		Example: `  mesh install | kubectl apply -f -

  # your own certificates, a registry mirror, and a chattier proxy
  mesh install --identity-trust-anchors-file ca.crt \
    --identity-issuer-certificate-file issuer.crt --identity-issuer-key-file issuer.key \
    --set imageRegistry=registry.example.com/lightmesh --set proxy.logLevel=debug

  # highly available, with Prometheus and Grafana
  mesh install --ha --set prometheus.enabled=true --set grafana.enabled=true

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
	flags.BoolVar(&opts.ha, "ha", opts.ha, "high availability: 3 controller replicas spread over nodes, a PodDisruptionBudget, webhook failurePolicy Fail")
	flags.BoolVar(&opts.ingress, "ingress", opts.ingress, "deploy the ingress gateway: pods labelled istio: ingressgateway serving the Istio Gateways that select them (HTTP, and HTTPS with tls.credentialName Secrets of the control plane namespace), behind a NodePort Service on ports 80 and 443 (ingress.enabled)")
	flags.BoolVar(&opts.crds, "crds", opts.crds, "print only the CustomResourceDefinitions")
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
	return o.valuesOver(install.DefaultValues())
}

// valuesOver applies --ha, then each -f file, then each --set to base.
func (o *installOptions) valuesOver(values install.Values) (install.Values, error) {
	if o.ha {
		install.HAValues(&values)
	}
	if o.ingress {
		values.Ingress.Enabled = true
	}
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

// runInstall renders the control plane to out; errOut gets what was generated and left
// out.
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
	var cluster *meshCluster
	if !opts.ignoreCluster {
		if cluster, err = opts.cluster(); err != nil {
			return fmt.Errorf("connect to the cluster: %w; pass --ignore-cluster to render without checking", err)
		}
		if !opts.crds {
			installed, err := cluster.isInstalled(ctx, values.Namespace)
			if err != nil {
				return fmt.Errorf("check the cluster for an existing installation: %w; pass --ignore-cluster to render without checking", err)
			}
			if installed {
				return fmt.Errorf("lightmesh is already installed in namespace %q: run mesh upgrade to change it (or pass --ignore-cluster to render anyway)", values.Namespace)
			}
		}
	}
	var id install.Identity
	if !opts.crds {
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
	}
	return render(ctx, out, errOut, cluster, values, id, opts.crds, opts.output)
}

// render writes the manifests of values and id (only the CRDs with crdsOnly) to out as
// yaml or json. With a cluster, the CRDs it has from someone else are left out and Istio
// running beside lightmesh is pointed out, on errOut.
func render(ctx context.Context, out, errOut io.Writer, cluster *meshCluster, values install.Values, id install.Identity, crdsOnly bool, output string) error {
	var renderOpts install.RenderOptions
	if cluster != nil {
		states, err := cluster.crds(ctx)
		if err != nil {
			return fmt.Errorf("%w; pass --ignore-cluster to render every CRD without checking", err)
		}
		renderOpts.SkipCRDs = foreignCRDs(states, func(format string, args ...any) { fmt.Fprintf(errOut, format, args...) })
		istio, err := cluster.istioInstalled(ctx)
		if err != nil {
			return err
		}
		if len(istio) > 0 {
			fmt.Fprintf(errOut, "Istio itself is installed (istiod in %s): its sidecars and lightmesh's must not run in the same pods; mesh check warns about it\n", strings.Join(istio, ", "))
		}
	}
	var objects []map[string]any
	var err error
	if crdsOnly {
		objects = install.CRDObjects(renderOpts.SkipCRDs)
	} else if objects, err = install.RenderWith(values, id, renderOpts); err != nil {
		return err
	}
	var data []byte
	if output == "json" {
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
