package cmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/lightmesh/lightmesh/controller/admin"
	"github.com/lightmesh/lightmesh/internal/version"
)

// runUntilSignal validates a service's flags, then runs it until SIGTERM or an interrupt.
func runUntilSignal(cmd *cobra.Command, validate func() error, run func(ctx context.Context, out, errOut io.Writer) error) error {
	if err := validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr())
}

// newLogger returns the text logger of one controller service, at the level named by
// logLevel (--log-level).
func newLogger(errOut io.Writer, logLevel, service string) (*slog.Logger, error) {
	level, err := parseLogLevel(logLevel)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})).With("service", service), nil
}

// newRegistry returns a metrics registry with the Go and process collectors, which the
// service's own metrics join and the admin server's /metrics serves.
func newRegistry() *prometheus.Registry {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return registry
}

// server is one controller service as serveWithAdmin runs it.
type server struct {
	name            string // for errors: "identity service"
	addr, adminAddr string // --addr, --admin-addr
	registry        *prometheus.Registry
	ready           func() bool // the admin server's /ready
	// serve serves the service on lis until ctx ends (then returns nil) or it fails.
	serve func(ctx context.Context, lis net.Listener) error
}

// serveWithAdmin listens on the service's and the admin server's addresses and serves both
// until ctx ends or the service stops; then it stops the admin server too and returns the
// first error, naming which server failed.
func serveWithAdmin(ctx context.Context, log *slog.Logger, s server) error {
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on --addr %s: %w", s.addr, err)
	}
	adminLis, err := net.Listen("tcp", s.adminAddr)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("listen on --admin-addr %s: %w", s.adminAddr, err)
	}
	log.Info("admin server listening", "addr", adminLis.Addr().String())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	adminDone := make(chan error, 1)
	go func() { adminDone <- admin.Serve(ctx, adminLis, admin.NewHandler(s.registry, s.ready)) }()
	serveErr := s.serve(ctx, lis)
	cancel()
	adminErr := <-adminDone
	if serveErr != nil {
		return fmt.Errorf("%s: %w", s.name, serveErr)
	}
	if adminErr != nil {
		return fmt.Errorf("admin server: %w", adminErr)
	}
	log.Info("stopped")
	return nil
}

// kubeClient returns a Kubernetes client from --kubeconfig (in-cluster when empty) whose
// user agent names the service.
func kubeClient(kubeconfig, service string) (*kubernetes.Clientset, error) {
	config, err := kubeConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	config.UserAgent = "mesh-controller-" + service + "/" + version.Version
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}
