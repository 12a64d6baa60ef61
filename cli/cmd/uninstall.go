package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/identity"
)

// uninstallOptions are the flags of `mesh uninstall`.
type uninstallOptions struct {
	// controlPlaneNamespace is the installation to remove.
	controlPlaneNamespace string
	// force removes it even while meshed pods use it.
	force bool
	// forceCRDs deletes our CRDs even while custom resources of their kinds exist.
	forceCRDs bool
	// output is yaml or json.
	output string
	// cluster connects to the cluster; tests give fake clientsets.
	cluster func() (*meshCluster, error)
}

func newUninstallOptions() *uninstallOptions {
	return &uninstallOptions{controlPlaneNamespace: install.DefaultValues().Namespace, output: "yaml"}
}

func newUninstallCmd(kube *kubeOptions) *cobra.Command {
	opts := newUninstallOptions()
	opts.cluster = kube.cluster
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Print what to delete to remove lightmesh, for kubectl delete",
		Long: `Print the objects of the lightmesh installation in --control-plane-namespace (names only),
in the reverse of install's order, to pipe into kubectl delete: the webhook configuration
first, the namespace last, and every cluster-scoped object of the installation (its
ClusterRoles, ClusterRoleBindings, webhook configuration) that exists.

The CRDs are shared by every installation in the cluster: they are printed only when no
other lightmesh installation remains, only those lightmesh created (not Istio's, not the
upstream Gateway API's), and only when no resources of their kinds exist (deleting a CRD
deletes every resource of its kind) unless --force-crds is given. What is kept, and why, is
said on stderr.

mesh uninstall refuses while meshed pods use the installation's proxies (they would lose
their certificates); uninject them first, or pass --force.`,
		Example: `  mesh uninstall | kubectl delete -f -

  mesh uninstall --control-plane-namespace mesh-test --force | kubectl delete -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			return runUninstall(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace of the installation to remove")
	flags.BoolVar(&opts.force, "force", opts.force, "remove the installation even while meshed pods use it")
	flags.BoolVar(&opts.forceCRDs, "force-crds", opts.forceCRDs, "delete lightmesh's CRDs even while resources of their kinds exist (they go with them); never while another installation remains")
	flags.StringVarP(&opts.output, "output", "o", opts.output, "output format: yaml or json (a v1 List)")
	return cmd
}

func (o *uninstallOptions) validate() error {
	switch o.output {
	case "yaml", "json":
	default:
		return fmt.Errorf("--output %q: use yaml or json", o.output)
	}
	if errs := validation.IsDNS1123Label(o.controlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("--control-plane-namespace %q: %s", o.controlPlaneNamespace, strings.Join(errs, "; "))
	}
	return nil
}

// runUninstall writes what to delete to out; errOut says what is kept and why.
func runUninstall(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *uninstallOptions) error {
	cluster, err := opts.cluster()
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	ns := opts.controlPlaneNamespace
	values, err := cluster.values(ctx, ns)
	var notInstalled errNotInstalled
	if errors.As(err, &notInstalled) {
		return fmt.Errorf("%w: nothing to uninstall; name the installation's namespace with --control-plane-namespace", err)
	}
	if err != nil {
		return err
	}
	pods, err := cluster.meshedPods(ctx, ns)
	if err != nil {
		return err
	}
	if len(pods) > 0 {
		if !opts.force {
			return fmt.Errorf("%d meshed pods use the control plane in %q (%s): uninject and restart them first (mesh uninject ... | kubectl apply -f -), or pass --force",
				len(pods), ns, summarize(pods, 5))
		}
		fmt.Fprintf(errOut, "--force: %d meshed pods use this control plane and lose it (%s)\n", len(pods), summarize(pods, 5))
	}
	others, err := cluster.otherInstallations(ctx, ns)
	if err != nil {
		return err
	}
	states, err := cluster.crds(ctx)
	if err != nil {
		return err
	}
	skip := map[string]bool{}
	for name, s := range states {
		if !s.exists || !s.ours || len(others) > 0 {
			skip[name] = true
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(errOut, "the CustomResourceDefinitions are kept: lightmesh is also installed in %s\n", strings.Join(others, ", "))
	} else if !opts.forceCRDs {
		var names []string
		for name := range states {
			if !skip[name] {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		used, err := cluster.customResources(ctx, names)
		if err != nil {
			return err
		}
		if len(used) > 0 {
			for _, name := range names {
				skip[name] = true
			}
			fmt.Fprintf(errOut, "the CustomResourceDefinitions are kept: %d resources of their kinds exist (%s); delete them first, or pass --force-crds to delete them with the CRDs\n",
				len(used), summarize(used, 5))
		}
	}
	// The names are what matter: throwaway identity material renders the same objects.
	id, err := install.GenerateIdentity(values.Identity.TrustDomain, identity.SystemClock{})
	if err != nil {
		return err
	}
	objects, err := install.RenderWith(values, id, install.RenderOptions{SkipCRDs: skip})
	if err != nil {
		return err
	}
	var deletions []map[string]any
	for _, o := range slices.Backward(objects) {
		apiVersion, _ := o["apiVersion"].(string)
		kind, _ := o["kind"].(string)
		meta, _ := o["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		namespace, _ := meta["namespace"].(string)
		if namespace == "" {
			exists, err := cluster.exists(ctx, apiVersion, kind, name)
			if err != nil {
				return err
			}
			if !exists {
				continue
			}
		}
		m := map[string]any{"name": name}
		if namespace != "" {
			m["namespace"] = namespace
		}
		deletions = append(deletions, map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": m})
	}
	var data []byte
	if opts.output == "json" {
		data, err = install.WriteJSON(deletions)
	} else {
		data, err = install.WriteYAML(deletions)
	}
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}

// summarize lists up to n items and how many more there are.
func summarize(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
