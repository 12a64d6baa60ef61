package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck"
	"github.com/lightmesh/lightmesh/internal/version"
	"github.com/lightmesh/lightmesh/web/dashboard"
)

// serveOptions are mesh-web serve's flags.
type serveOptions struct {
	addr                  string
	statsURL              string
	kubeconfig            string
	controlPlaneNamespace string
	allowedHosts          []string
	window                time.Duration
}

func newServeOptions() *serveOptions {
	return &serveOptions{addr: ":8084", controlPlaneNamespace: "lightmesh", window: stats.DefaultWindow}
}

func (o *serveOptions) validate() error {
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return fmt.Errorf("--addr %q: %w; write host:port or :port", o.addr, err)
	}
	if o.statsURL != "" && !strings.HasPrefix(o.statsURL, "http://") && !strings.HasPrefix(o.statsURL, "https://") {
		return fmt.Errorf("--stats-url %q: give an http:// URL, such as http://stats.lightmesh.svc:8085", o.statsURL)
	}
	return nil
}

func newCmdServe() *cobra.Command {
	opts := newServeOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "serve the dashboard",
		Long: `Serve the dashboard: namespaces, workloads with their golden metrics (success rate,
requests per second, latency percentiles, TCP connections), live, from the controller's stats
API.

The stats API is reached at --stats-url when given (mesh-web in the cluster), else through the
Kubernetes API server's service proxy with --kubeconfig (in-cluster configuration when empty),
so RBAC decides who may read it.`,
		Example: `  # in the cluster, next to the stats service
  mesh-web serve --stats-url http://stats.lightmesh.svc:8085 --allowed-hosts mesh-web.lightmesh.svc

  # on a workstation, through the API server
  mesh-web serve --addr 127.0.0.1:50750 --kubeconfig ~/.kube/config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.addr, "addr", opts.addr, "the address to serve on")
	flags.StringVar(&opts.statsURL, "stats-url", opts.statsURL, "the stats API's base URL; empty: through the API server")
	flags.StringVar(&opts.kubeconfig, "kubeconfig", opts.kubeconfig, "the kubeconfig to reach the API server (in-cluster configuration when empty)")
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace of the stats service")
	flags.StringSliceVar(&opts.allowedHosts, "allowed-hosts", nil, "host names the dashboard may be reached by, besides localhost")
	flags.DurationVar(&opts.window, "window", opts.window, "the stats window the pages show")
	return cmd
}

// runServe serves the dashboard until ctx ends.
func runServe(ctx context.Context, errOut io.Writer, opts *serveOptions) error {
	logger := slog.New(slog.NewJSONHandler(errOut, nil))
	dash := dashboard.Options{AllowedHosts: opts.allowedHosts, Window: opts.window, Logger: logger}
	cfg, cfgErr := kubeConfig(opts.kubeconfig)
	if opts.statsURL != "" {
		dash.Stats = &dashboard.HTTPStats{Base: opts.statsURL}
	} else {
		if cfgErr != nil {
			return cfgErr
		}
		client, err := corev1client.NewForConfig(cfg)
		if err != nil {
			return err
		}
		streamCfg := rest.CopyConfig(cfg)
		streamCfg.Timeout = 0 // a tap lasts its duration, bounded by the request's context
		stream, err := corev1client.NewForConfig(streamCfg)
		if err != nil {
			return err
		}
		dash.Stats = &dashboard.KubeStats{Client: client.RESTClient(), StreamClient: stream.RESTClient(), Namespace: opts.controlPlaneNamespace, Service: "stats:8085"}
	}
	// Routes and checks read the API server (read-only) when a configuration is at hand.
	if cfgErr == nil {
		core, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return err
		}
		dash.Routes = &dashboard.KubeRoutes{Client: core, Dynamic: dyn}
		dash.Checks = &dashboard.HealthChecks{Options: healthcheck.Options{
			ControlPlaneNamespace: opts.controlPlaneNamespace,
			Version:               version.Version,
			NewClient:             func() (kubernetes.Interface, error) { return core, nil },
			NewDynamicClient:      func() (dynamic.Interface, error) { return dyn, nil },
		}}
	} else {
		logger.Warn("no Kubernetes configuration: the routes section and the check page are not available", "err", cfgErr)
	}
	server, err := dashboard.New(dash)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w; pick another --addr", opts.addr, err)
	}
	logger.Info("serving the dashboard", "addr", lis.Addr().String())
	return Serve(ctx, lis, server)
}

// Serve serves h on lis until ctx ends, then shuts down within 5 s.
func Serve(ctx context.Context, lis net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// kubeConfig is the client configuration from kubeconfig (in-cluster when empty).
func kubeConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("load the Kubernetes client configuration: %w; give --kubeconfig or --stats-url", err)
	}
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}
