package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/install"
)

// edgesOptions are the arguments and flags of `mesh edges`.
type edgesOptions struct {
	resource              string
	namespace             string
	allNamespaces         bool
	window                time.Duration
	output                string
	controlPlaneNamespace string
	newClient             func() (rest.Interface, string, error)
}

func newEdgesOptions() *edgesOptions {
	return &edgesOptions{window: stats.DefaultWindow, output: statOutputTable, controlPlaneNamespace: install.DefaultValues().Namespace}
}

func newEdgesCmd(kube *kubeOptions) *cobra.Command {
	opts := newEdgesOptions()
	opts.newClient = func() (rest.Interface, string, error) { return statClient(kube) }
	return newEdgesCmdWith(opts)
}

func newEdgesCmdWith(opts *edgesOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "edges TYPE",
		Short: "Show which workloads send requests to which, and whether over mTLS",
		Long: `Show the edges between resources over a window: for each resource of TYPE that received
requests, each client identity that sent them, the resources that run as that identity, whether
the requests came over the mesh's mTLS, their rate and success. Clients in plain text have no
identity: SRC is "-" and SECURED "no".

TYPE is deployment (deploy), statefulset (sts), daemonset (ds), job or pod (po).`,
		Example: `  mesh edges deploy -n shop
  mesh edges deploy -A -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resource, ok := stats.Resources[strings.ToLower(args[0])]
			if !ok || resource == stats.ResourceNamespace {
				return fmt.Errorf("unknown resource type %q: use deployment, statefulset, daemonset, job or pod", args[0])
			}
			opts.resource = resource
			if err := opts.validate(); err != nil {
				return err
			}
			return runEdges(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVarP(&opts.namespace, "namespace", "n", opts.namespace, "the namespace of the destination resources (default: the kubeconfig's namespace)")
	flags.BoolVarP(&opts.allNamespaces, "all-namespaces", "A", opts.allNamespaces, "every namespace")
	flags.DurationVarP(&opts.window, "time-window", "t", opts.window, fmt.Sprintf("the window, from %s to %s", stats.MinWindow, stats.MaxWindow))
	flags.StringVarP(&opts.output, "output", "o", opts.output, "output format: table or json")
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace lightmesh is installed in")
	return cmd
}

func (o *edgesOptions) validate() error {
	if !slices.Contains([]string{statOutputTable, statOutputJSON}, o.output) {
		return fmt.Errorf("--output %q: use table or json", o.output)
	}
	if o.window < stats.MinWindow || o.window > stats.MaxWindow {
		return fmt.Errorf("--time-window %s: give a duration from %s to %s", o.window, stats.MinWindow, stats.MaxWindow)
	}
	if o.allNamespaces && o.namespace != "" {
		return fmt.Errorf("--namespace and --all-namespaces exclude each other: give one of them")
	}
	return nil
}

func runEdges(ctx context.Context, out, errOut io.Writer, opts *edgesOptions) error {
	client, kubeNamespace, err := opts.newClient()
	if err != nil {
		return err
	}
	namespace := opts.namespace
	if namespace == "" && !opts.allNamespaces {
		namespace = kubeNamespace
	}
	params := url.Values{"resource": {opts.resource}, "window": {opts.window.String()}}
	if namespace != "" {
		params.Set("namespace", namespace)
	}
	var resp stats.EdgesResponse
	if err := queryStats(ctx, client, opts.controlPlaneNamespace, stats.EdgesPath, params, "edges", &resp); err != nil {
		return err
	}
	if opts.output == statOutputJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	if len(resp.Edges) == 0 {
		_, err := fmt.Fprintln(errOut, "No edges found.")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	_, _ = fmt.Fprintln(tw, "SRC\tDST\tSRC_NS\tDST_NS\tSECURED\tRPS\tSUCCESS\tCLIENT_ID")
	for _, e := range resp.Edges {
		secured := "no"
		if e.Secured {
			secured = "yes"
		}
		_, _ = fmt.Fprintln(tw, strings.Join([]string{
			orDash(e.Src), e.Dst, orDash(e.SrcNamespace), e.DstNamespace, secured,
			format(e.RequestsPerSecond, func(v float64) string { return fmt.Sprintf("%.1frps", v) }),
			format(e.SuccessRate, func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }),
			orDash(e.ClientID),
		}, "\t"))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
