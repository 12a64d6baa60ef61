package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck"
	"github.com/lightmesh/lightmesh/internal/version"
)

// checkOptions are the flags of `mesh check`.
type checkOptions struct {
	// pre checks that lightmesh can be installed, instead of checking an installation.
	pre bool
	// proxy adds the data-plane checks, in namespace (empty: every namespace).
	proxy     bool
	namespace string
	// controlPlaneNamespace is where lightmesh is, or will be, installed.
	controlPlaneNamespace string
	// wait re-runs failing checks until they pass or it has passed.
	wait time.Duration
	// output is table, json or short.
	output string
	// clock is the time and the retry ticker; nil is the system clock.
	clock check.Clock
	// newClient makes the Kubernetes client, newDynamicClient the one for CRDs and custom
	// resources; tests give fake clientsets.
	newClient        func() (kubernetes.Interface, error)
	newDynamicClient func() (dynamic.Interface, error)
	// version is the CLI's version, clientGoVersion the client-go module's.
	version         string
	clientGoVersion string
}

func newCheckOptions() *checkOptions {
	return &checkOptions{
		controlPlaneNamespace: install.DefaultValues().Namespace,
		output:                check.OutputTable,
		version:               version.Version,
		clientGoVersion:       moduleVersion("k8s.io/client-go"),
	}
}

func newCheckCmd(kube *kubeOptions) *cobra.Command {
	opts := newCheckOptions()
	opts.newClient = func() (kubernetes.Interface, error) { return checkClientset(kube) }
	opts.newDynamicClient = func() (dynamic.Interface, error) {
		cfg, err := kube.restConfig()
		if err != nil {
			return nil, err
		}
		return dynamic.NewForConfig(cfg)
	}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that lightmesh is installed and working, or can be installed",
		Long: `Check that the cluster can run lightmesh (--pre), or that an installation is healthy: its
configuration, the controller, the identity certificates and, with --proxy, the meshed pods.

Each check prints √ when it passes, ‼ for a warning and × when it fails, with what to do and a
link under each warning and failure. The exit status is non-zero when a check fails; warnings
do not fail. A failing check that the rest depend on (the API cannot be reached, the
control-plane namespace does not exist) stops the run.

Categories: kubernetes-api, kubernetes-version, then with --pre: pre-install; otherwise
lightmesh-config, control-plane, identity, policy (the policy CRDs, the upstream Gateway API
version, Istio installed beside lightmesh, resources whose status says they use fields
lightmesh does not support) and, with --proxy, data-plane (proxies ready, their versions,
their certificates chaining to the current trust anchors, read from each proxy's admin
server through the API server's pod proxy).`,
		Example: `  # before installing
  mesh check --pre

  # after installing, waiting up to 5 minutes for the controller to come up
  mesh check --wait 5m

  # and the meshed pods of namespace shop
  mesh check --proxy -n shop -o short`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return runCheck(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.BoolVar(&opts.pre, "pre", opts.pre, "check that lightmesh can be installed: the namespace is free, you may create what mesh install renders, the clocks agree")
	flags.BoolVar(&opts.proxy, "proxy", opts.proxy, "also check the meshed pods (in --namespace, or every namespace)")
	flags.StringVarP(&opts.namespace, "namespace", "n", opts.namespace, "the namespace of the meshed pods --proxy checks (default: every namespace)")
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace lightmesh is (or will be) installed in")
	flags.DurationVar(&opts.wait, "wait", opts.wait, "re-run failing checks until they pass or this much time has passed (e.g. 5m)")
	flags.StringVarP(&opts.output, "output", "o", opts.output, "output format: "+strings.Join(check.Outputs, ", "))
	return cmd
}

func (o *checkOptions) validate() error {
	if !slices.Contains(check.Outputs, o.output) {
		return fmt.Errorf("--output %q: use one of %s", o.output, strings.Join(check.Outputs, ", "))
	}
	if o.wait < 0 {
		return fmt.Errorf("--wait %s: give a duration of zero or more", o.wait)
	}
	if o.pre && o.proxy {
		return errors.New("--pre checks a cluster before installing, --proxy the meshed pods of an installation: give one of them")
	}
	if o.namespace != "" && !o.proxy {
		return errors.New("--namespace chooses the pods --proxy checks: add --proxy (the control plane's namespace is --control-plane-namespace)")
	}
	if errs := validation.IsDNS1123Label(o.controlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("--control-plane-namespace %q: %s", o.controlPlaneNamespace, strings.Join(errs, "; "))
	}
	return nil
}

// errChecksFailed is returned when a check failed, for the exit status; the output says which.
var errChecksFailed = errors.New("some checks failed: fix them as their hints say, then run mesh check again")

// runCheck runs the checks and writes their results to out; errOut gets what is waited for.
func runCheck(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *checkOptions) error {
	checker := healthcheck.New(healthcheck.Options{
		ControlPlaneNamespace: opts.controlPlaneNamespace,
		DataPlaneNamespace:    opts.namespace,
		Pre:                   opts.pre,
		Proxy:                 opts.proxy,
		Version:               opts.version,
		ClientGoVersion:       opts.clientGoVersion,
		Clock:                 opts.clock,
		NewClient:             opts.newClient,
		NewDynamicClient:      opts.newDynamicClient,
	})
	categories, err := checker.Categories()
	if err != nil {
		return err
	}
	table := &check.TableWriter{Out: out, Short: opts.output == check.OutputShort}
	runner := &check.Runner{
		Wait:  opts.wait,
		Clock: opts.clock,
		OnRetry: func(c check.Check, err error) {
			fmt.Fprintf(errOut, "waiting for %q (up to %s): %v\n", c.Description, opts.wait, err)
		},
	}
	if opts.output != check.OutputJSON {
		runner.OnResult = table.Write
	}
	results, err := runner.Run(ctx, categories)
	if err != nil {
		return err
	}
	if opts.output == check.OutputJSON {
		if err := check.WriteJSON(out, results); err != nil {
			return err
		}
	} else {
		table.Summary(results)
	}
	if !results.Success() {
		return errChecksFailed
	}
	return nil
}

// checkClientset makes the full client-go clientset from the global kubeconfig flags.
func checkClientset(k *kubeOptions) (kubernetes.Interface, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// moduleVersion returns the version of module path the binary was built with, or "".
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, dep := range info.Deps {
		if dep.Path == path {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return ""
}
