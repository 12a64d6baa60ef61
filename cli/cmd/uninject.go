package cmd

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/inject"
)

// uninjectOptions are the flags of `mesh uninject`.
type uninjectOptions struct {
	// inputs are files, directories and "-" (stdin).
	inputs []string
	limits inject.Limits
}

func newUninjectOptions() *uninjectOptions {
	return &uninjectOptions{limits: inject.DefaultLimits()}
}

func newUninjectCmd() *cobra.Command {
	opts := newUninjectOptions()
	return &cobra.Command{
		Use:   "uninject FILE|DIR|- ...",
		Short: "Remove the lightmesh proxy from Kubernetes workloads in YAML or JSON",
		Long: `Remove what mesh inject added and print the manifests.

Reads files, directories (recursively: *.yaml, *.yml, *.json) and - (stdin); writes every
document to stdout in order, and on stderr what was uninjected. From an injected pod template
it removes the mesh-init and mesh-proxy containers, the mesh-identity-token volume, the
lightmesh.io/proxy-version and lightmesh.io/injected-by annotations and the
lightmesh.io/control-plane-ns label, so that uninject undoes inject exactly. From a pod
template or Namespace that is only annotated lightmesh.io/inject: enabled (mesh inject
--annotate-only) it removes that annotation.`,
		Example: `  # take the proxy out of what is running
  kubectl get deploy -n shop -o yaml | mesh uninject - | kubectl apply -f -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.inputs = args
			if err := opts.validate(); err != nil {
				return err
			}
			return runUninject(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
}

func (o *uninjectOptions) validate() error {
	if len(o.inputs) == 0 {
		return errors.New("no input: give files, directories, or - for stdin")
	}
	return nil
}

// runUninject reads every input, uninjects it in memory, then writes the report to errOut
// and the documents to out; on any error it writes nothing to out.
func runUninject(_ context.Context, in io.Reader, out, errOut io.Writer, opts *uninjectOptions) error {
	sources, err := inject.ReadSources(opts.inputs, in, opts.limits)
	if err != nil {
		return err
	}
	result, err := inject.Run(sources, inject.Options{Mode: inject.ModeUninject, Limits: opts.limits})
	if err != nil {
		return err
	}
	return writeResult(out, errOut, result)
}
