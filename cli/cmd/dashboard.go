package cmd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck"
	"github.com/lightmesh/lightmesh/internal/version"
	webcmd "github.com/lightmesh/lightmesh/web/cmd"
	"github.com/lightmesh/lightmesh/web/dashboard"
)

// dashboardOptions are mesh dashboard's flags.
type dashboardOptions struct {
	address               string
	port                  int
	controlPlaneNamespace string
}

func newDashboardOptions() *dashboardOptions {
	return &dashboardOptions{address: "127.0.0.1", port: 50750, controlPlaneNamespace: "lightmesh"}
}

func (o *dashboardOptions) validate() error {
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--port %d: give a port from 0 (any free port) to 65535", o.port)
	}
	if net.ParseIP(o.address) == nil {
		return fmt.Errorf("--address %q: give an IP address, such as 127.0.0.1", o.address)
	}
	return nil
}

func newDashboardCmd(kube *kubeOptions) *cobra.Command {
	opts := newDashboardOptions()
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the dashboard on this machine and print its URL",
		Long: `Serve lightmesh's dashboard (mesh-web's pages) on this machine, reading the control plane's
stats service through the Kubernetes API server's service proxy, as mesh stat does: you need
get on services/proxy in the control plane's namespace. The routes section and the check page
read the cluster with your credentials too (read-only: get and list); what they may not read
is shown as not available or skipped. It runs until interrupted (Ctrl-C).`,
		Example: `  mesh dashboard
  mesh dashboard --port 8084 --control-plane-namespace lightmesh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			dash, err := dashboardSources(cmd.Context(), kube, opts)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDashboard(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), opts, dash)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.address, "address", opts.address, "the local address to serve on")
	flags.IntVar(&opts.port, "port", opts.port, "the local port to serve on (0: any free port)")
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace lightmesh is installed in")
	return cmd
}

// dashboardSources are the dashboard's sources, all with the kubeconfig's credentials: the
// stats service (stats, edges, tap) through the API server's service proxy, the route
// resources and the checks read from the API server. Nothing is written.
func dashboardSources(ctx context.Context, kube *kubeOptions, opts *dashboardOptions) (dashboard.Options, error) {
	client, _, err := statClient(kube)
	if err != nil {
		return dashboard.Options{}, err
	}
	cfg, err := kube.restConfig()
	if err != nil {
		return dashboard.Options{}, err
	}
	streamCfg := rest.CopyConfig(cfg)
	streamCfg.Timeout = 0 // a tap lasts its duration; the dashboard bounds it by its context
	stream, err := kubernetes.NewForConfig(streamCfg)
	if err != nil {
		return dashboard.Options{}, err
	}
	cluster, err := kube.cluster()
	if err != nil {
		return dashboard.Options{}, err
	}
	domain := install.DefaultValues().ClusterDomain
	valuesCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if v, err := kube.installedValues(valuesCtx, opts.controlPlaneNamespace); err == nil && v.ClusterDomain != "" {
		domain = v.ClusterDomain
	}
	return dashboard.Options{
		Stats:  &dashboard.KubeStats{Client: client, StreamClient: stream.CoreV1().RESTClient(), Namespace: opts.controlPlaneNamespace, Service: statService},
		Routes: &dashboard.KubeRoutes{Client: cluster.core, Dynamic: cluster.dynamic, DomainSuffix: domain},
		Checks: &dashboard.HealthChecks{Options: healthcheck.Options{
			ControlPlaneNamespace: opts.controlPlaneNamespace,
			Version:               version.Version,
			ClientGoVersion:       moduleVersion("k8s.io/client-go"),
			NewClient:             func() (kubernetes.Interface, error) { return cluster.core, nil },
			NewDynamicClient:      func() (dynamic.Interface, error) { return cluster.dynamic, nil },
		}},
	}, nil
}

// runDashboard serves the dashboard from the sources of dash until ctx ends; it prints the
// URL to out once it listens.
func runDashboard(ctx context.Context, out, errOut io.Writer, opts *dashboardOptions, dash dashboard.Options) error {
	server, err := dashboard.New(dash)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(opts.address, strconv.Itoa(opts.port)))
	if err != nil {
		return fmt.Errorf("listen on %s port %d: %w; give another --port", opts.address, opts.port, err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	host := opts.address
	if host == "127.0.0.1" || host == "::1" {
		host = "localhost"
	}
	fmt.Fprintf(out, "http://%s\n", net.JoinHostPort(host, strconv.Itoa(port)))
	fmt.Fprintln(errOut, "serving the dashboard; press Ctrl-C to stop")
	return webcmd.Serve(ctx, lis, server)
}
