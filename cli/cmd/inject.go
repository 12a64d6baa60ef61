package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/inject"
)

// injectOptions are the flags of `mesh inject`.
type injectOptions struct {
	// inputs are files, directories and "-" (stdin).
	inputs []string
	// annotateOnly adds lightmesh.io/inject: enabled and leaves the sidecar to the webhook.
	annotateOnly bool
	// ignoreCluster uses the default installation's values instead of the cluster's.
	ignoreCluster bool
	// trustAnchorsFile replaces the installation's trust anchors.
	trustAnchorsFile string
	// controlPlaneNamespace is where the installation's lightmesh-config lives.
	controlPlaneNamespace string
	// overrides are the config flags given (key without prefix -> value).
	overrides map[string]string
	limits    inject.Limits
	// installedValues reads the installation's values; tests replace it.
	installedValues func(ctx context.Context, namespace string) (install.Values, error)
}

func newInjectOptions() *injectOptions {
	return &injectOptions{
		controlPlaneNamespace: install.DefaultValues().Namespace,
		overrides:             map[string]string{},
		limits:                inject.DefaultLimits(),
	}
}

// overrideFlagUsage documents each config flag (and its config.lightmesh.io/ annotation).
var overrideFlagUsage = map[string]string{
	inject.KeySkipInboundPorts:   "inbound ports (and ranges) that bypass the proxy, comma-separated",
	inject.KeySkipOutboundPorts:  "outbound ports (and ranges) that bypass the proxy, comma-separated",
	inject.KeySkipSubnets:        "CIDRs whose traffic bypasses the proxy, comma-separated",
	inject.KeyOpaquePorts:        "inbound ports (and ranges) proxied as opaque TCP, without protocol detection",
	inject.KeyProxyCPURequest:    "the proxy's CPU request (e.g. 100m)",
	inject.KeyProxyCPULimit:      "the proxy's CPU limit (e.g. 1)",
	inject.KeyProxyMemoryRequest: "the proxy's memory request (e.g. 64Mi)",
	inject.KeyProxyMemoryLimit:   "the proxy's memory limit (e.g. 256Mi)",
	inject.KeyProxyLogLevel:      "the proxy's log level: " + strings.Join(inject.LogLevels, ", "),
	inject.KeyProxyLogFormat:     "the proxy's log format: " + strings.Join(inject.LogFormats, ", "),
	inject.KeyProxyImage:         "the proxy's image",
	inject.KeyProxyInitImage:     "the proxy-init image",
	inject.KeyProxySchedulerPoll: "whether the proxy's Go runtime monitor keeps polling: " + strings.Join(inject.SchedulerPollValues, ", ") + " (default: the proxy's, true; false for mostly idle workloads)",
	inject.KeyProxyMaxInFlightRequests: fmt.Sprintf("most HTTP requests the proxy serves at once, %d-%d; the excess is answered 503 (default: the proxy's, 1000)",
		inject.MinMaxInFlightRequests, inject.MaxMaxInFlightRequests),
}

func newInjectCmd(kube *kubeOptions) *cobra.Command {
	opts := newInjectOptions()
	opts.installedValues = kube.installedValues
	flagValues := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "inject FILE|DIR|- ...",
		Short: "Add the lightmesh proxy to Kubernetes workloads in YAML or JSON",
		Long: `Add the lightmesh proxy to the workloads of Kubernetes manifests and print them.

Reads files, directories (recursively: *.yaml, *.yml, *.json) and - (stdin); writes every
document to stdout in order, and on stderr what was injected, skipped and why. Pods and the
pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,
Jobs and CronJobs get the mesh-init init container and the mesh-proxy native sidecar;
Namespaces get lightmesh.io/inject: enabled; other kinds pass through unchanged.

The configuration comes from the installation (ConfigMap lightmesh-config), then each pod
template's config.lightmesh.io/<key> annotations, then the flags below. Nothing is written
unless every document could be transformed.`,
		Example: `  # inject a directory and apply it
  mesh inject k8s/ | kubectl apply -f -

  # inject without a cluster, with the installation's trust anchors
  mesh inject --ignore-cluster --trust-anchors-file ca.crt deploy.yaml

  # only annotate, and let the webhook inject when the pods are created
  kubectl get deploy -o yaml | mesh inject --annotate-only - | kubectl apply -f -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.inputs = args
			for key, value := range flagValues {
				if cmd.Flags().Changed(key) {
					opts.overrides[key] = *value
				}
			}
			if err := opts.validate(); err != nil {
				return err
			}
			return runInject(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.BoolVar(&opts.annotateOnly, "annotate-only", opts.annotateOnly, "only add lightmesh.io/inject: enabled (and the config flags given, as config.lightmesh.io/ annotations); the webhook injects the pods")
	flags.BoolVar(&opts.ignoreCluster, "ignore-cluster", opts.ignoreCluster, "do not read the installation's configuration from the cluster; use the defaults (a full injection then needs --trust-anchors-file)")
	flags.StringVar(&opts.trustAnchorsFile, "trust-anchors-file", opts.trustAnchorsFile, "PEM file of the trust anchors the proxies trust (default: the installation's)")
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace lightmesh is installed in")
	for _, key := range inject.OverrideKeys {
		flagValues[key] = flags.String(key, "", overrideFlagUsage[key]+"; annotation "+inject.ConfigAnnotationPrefix+key)
	}
	return cmd
}

func (o *injectOptions) validate() error {
	if len(o.inputs) == 0 {
		return errors.New("no input: give files, directories, or - for stdin")
	}
	if errs := validation.IsDNS1123Label(o.controlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("--control-plane-namespace %q: %s", o.controlPlaneNamespace, strings.Join(errs, "; "))
	}
	if err := inject.ValidateOverrides(o.overrides); err != nil {
		var ke *inject.KeyError
		if errors.As(err, &ke) {
			return fmt.Errorf("--%s: %w", ke.Key, err)
		}
		return err
	}
	if o.annotateOnly && o.trustAnchorsFile != "" {
		return errors.New("--trust-anchors-file has no effect with --annotate-only (the webhook gives the proxy its anchors); drop one of them")
	}
	if !o.annotateOnly && o.ignoreCluster && o.trustAnchorsFile == "" {
		return errors.New("--ignore-cluster needs --trust-anchors-file to give the proxies their trust anchors (or use --annotate-only, which needs none)")
	}
	return nil
}

// injectConfig is the configuration a full injection starts from: the installation's (or
// the defaults with --ignore-cluster), with --trust-anchors-file's anchors.
func (o *injectOptions) injectConfig(ctx context.Context) (inject.Config, error) {
	values := install.DefaultValues()
	values.Namespace = o.controlPlaneNamespace
	if !o.ignoreCluster {
		var err error
		values, err = o.installedValues(ctx, o.controlPlaneNamespace)
		if err != nil {
			return inject.Config{}, fmt.Errorf("read the installation's configuration: %w; pass --control-plane-namespace if lightmesh is installed elsewhere, or --ignore-cluster --trust-anchors-file FILE to inject without a cluster", err)
		}
	}
	cfg, err := values.InjectConfig()
	if err != nil {
		return inject.Config{}, fmt.Errorf("the installation's configuration: %w", err)
	}
	if o.trustAnchorsFile != "" {
		anchors, err := identity.ReadTrustAnchorsFile(o.trustAnchorsFile)
		if err != nil {
			return inject.Config{}, fmt.Errorf("--trust-anchors-file: %w", err)
		}
		cfg.TrustAnchorsPEM = string(identity.EncodeCertificatesPEM(anchors...))
	}
	if cfg.TrustAnchorsPEM == "" {
		return inject.Config{}, errors.New("the installation's configuration has no trust anchors; reinstall lightmesh, or pass --trust-anchors-file")
	}
	return cfg, nil
}

// runInject reads every input, injects it in memory, then writes the report to errOut and
// the documents to out; on any error it writes nothing to out.
func runInject(ctx context.Context, in io.Reader, out, errOut io.Writer, opts *injectOptions) error {
	sources, err := inject.ReadSources(opts.inputs, in, opts.limits)
	if err != nil {
		return err
	}
	runOpts := inject.Options{Mode: inject.ModeAnnotateOnly, Config: inject.DefaultConfig(), Overrides: opts.overrides, Limits: opts.limits}
	if !opts.annotateOnly {
		runOpts.Mode = inject.ModeInject
		if runOpts.Config, err = opts.injectConfig(ctx); err != nil {
			return err
		}
	}
	result, err := inject.Run(sources, runOpts)
	if err != nil {
		return err
	}
	return writeResult(out, errOut, result)
}

func writeResult(out, errOut io.Writer, result *inject.Result) error {
	if err := result.WriteReport(errOut); err != nil {
		return err
	}
	_, err := out.Write(result.Output)
	return err
}
